"""The page through Streamlit's AppTest: drawings are injected as the canvas would send them."""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from samdash import checkpoints
from samdash.canvas import EXCLUDE_COLOR, INCLUDE_COLOR
from samdash.encode_queue import URGENT, shared
from samdash.engine import EmbeddingCache
from samdash.sam_engine import SamEngine
from samdash.errors import Cancelled
from samdash.prompts import EXCLUDE, INCLUDE
from samdash.ui.objects import table_edits
from samdash.ui.sessions import engine_pool
from tests.page_driver import APP, RECT, canvas_state, circle, draw, open_app, settle


@pytest.fixture
def app(tiny_page_env) -> AppTest:
    return open_app()


def _button(at: AppTest, startswith: str):
    return next(b for b in at.button if b.label.startswith(startswith))


def test_a_box_makes_an_object_with_candidates_and_the_best_picked(app):
    draw(app, RECT)
    (segment,) = app.session_state["samdash"].workspace.segments
    assert segment.prompt.box == pytest.approx((80, 40, 320, 240))
    assert len(segment.candidates) == 3 and segment.pick == segment.candidates.best
    assert segment.mask.shape == (300, 451)
    labels = [b.label for b in app.button if "IoU" in b.label]
    assert len(labels) == 3 and sum(label.startswith("✓") for label in labels) == 1
    assert "**Objects (1)**" in [m.value for m in app.markdown]
    assert not app.warning  # SAM is in use: no fallback banner


def test_the_pick_persists_across_reruns(app):
    draw(app, RECT)
    segment = app.session_state["samdash"].workspace.segments[0]
    other = (segment.pick + 1) % 3
    _button(app, f"#{other + 1} ").click().run()
    assert app.session_state["samdash"].workspace.segments[0].pick == other
    app.run()
    assert app.session_state["samdash"].workspace.segments[0].pick == other
    assert _button(app, f"✓ #{other + 1} ")


def test_points_refine_the_active_object_with_its_previous_logits(app, tiny_sam):
    draw(app, RECT)
    draw(app, RECT, circle(100, 60, INCLUDE_COLOR))
    draw(app, RECT, circle(100, 60, INCLUDE_COLOR), circle(60, 100, EXCLUDE_COLOR))
    data = app.session_state["samdash"]
    (segment,) = data.workspace.segments
    assert segment.prompt.labels.tolist() == [INCLUDE, EXCLUDE]
    assert segment.prompt.points.tolist() == [[200.0, 120.0], [120.0, 200.0]]
    assert [entry.segment_id for entry in data.workspace.applied] == [segment.id] * 3
    # The exclude point was decoded with the object's previous logits as SAM's mask input.
    before = data.workspace.applied[2].before
    engine = SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20))
    embedding = engine.embed(data.image.rgb, data.image.content_hash)
    fed_back = engine.predict(embedding, before.prompt.refined((120.0, 200.0), EXCLUDE, before.candidates.logits_of(before.pick)[None]))
    without = engine.predict(embedding, before.prompt.refined((120.0, 200.0), EXCLUDE, None))
    np.testing.assert_allclose(segment.candidates.logits, fed_back.logits, atol=1e-3)
    assert np.abs(segment.candidates.logits - without.logits).max() > 1e-2


def test_each_box_is_a_new_object_in_the_table_and_a_deleted_one_leaves_the_canvas(app):
    second = dict(RECT, left=170, top=60)
    draw(app, RECT, second)
    workspace = app.session_state["samdash"].workspace
    assert [s.name for s in workspace.segments] == ["object 1", "object 2"] and workspace.active_id == 2
    [table] = app.dataframe
    assert list(table.value["Name"]) == ["object 1", "object 2"]
    assert list(table.value["Select"]) == ["Select", "✓ Active"]
    assert list(table.value["Area"]) == [s.area for s in workspace.segments]
    generation = workspace.generation
    workspace.remove(1)  # what the row's Delete button does (clicked in the browser tests)
    app.run()
    workspace = app.session_state["samdash"].workspace
    assert [s.name for s in workspace.segments] == ["object 2"]
    assert list(app.dataframe[0].value["Name"]) == ["object 2"]
    # The canvas is remounted with only the remaining object's drawing, already applied.
    assert workspace.generation == generation + 1 and workspace.drawing == {"objects": [second]}
    assert [entry.segment_id for entry in workspace.applied] == [2]
    _button(app, "Clear all").click().run()
    assert app.session_state["samdash"].workspace.segments == []
    assert not app.dataframe


def test_undo_on_the_canvas_takes_back_a_box_and_redo_brings_it_back(app):
    second = dict(RECT, left=170, top=60)
    draw(app, RECT, second)
    draw(app, RECT)  # the canvas's undo
    workspace = app.session_state["samdash"].workspace
    assert [s.name for s in workspace.segments] == ["object 1"] and workspace.active_id == 1
    draw(app, RECT, second)  # and its redo
    workspace = app.session_state["samdash"].workspace
    assert [s.name for s in workspace.segments] == ["object 1", "object 2"] and workspace.active_id == 2
    draw(app)  # the canvas's reset
    assert app.session_state["samdash"].workspace.segments == []


def test_undo_on_the_canvas_takes_back_a_refinement(app):
    draw(app, RECT)
    (segment,) = app.session_state["samdash"].workspace.segments
    candidates, pick, mask = segment.candidates, segment.pick, segment.mask.copy()
    draw(app, RECT, circle(100, 60, INCLUDE_COLOR))
    assert len(segment.prompt.points) == 1 and segment.candidates is not candidates
    draw(app, RECT)
    assert app.session_state["samdash"].workspace.segments == [segment]
    assert len(segment.prompt.points) == 0 and segment.pick == pick
    np.testing.assert_array_equal(segment.mask, mask)
    np.testing.assert_array_equal(segment.candidates.logits_of(pick), candidates.logits_of(pick))


def test_a_box_moved_on_the_canvas_is_segmented_where_it_now_is(app):
    draw(app, RECT)
    draw(app, dict(RECT, left=100))
    (segment,) = app.session_state["samdash"].workspace.segments
    assert segment.name == "object 1" and segment.prompt.box == pytest.approx((200, 40, 440, 240))


def test_a_refused_drawing_is_not_retried_on_every_rerun(app):
    draw(app, circle(100, 60, EXCLUDE_COLOR))
    assert len(app.error) == 1
    app.run()
    assert not app.error and app.session_state["samdash"].workspace.segments == []
    draw(app, circle(100, 60, EXCLUDE_COLOR), RECT)
    assert not app.error and len(app.session_state["samdash"].workspace.segments) == 1


def test_a_prompt_does_not_wait_for_another_sessions_encode(app):
    # The page's module as the app imported it (importing it outside a running app fails).
    release = threading.Event()
    shared.submit(URGENT, object(), lambda: release.wait(300))  # another session's image holds the encoder
    try:
        workspace = app.session_state["samdash"].workspace
        app.session_state[workspace.canvas_key] = canvas_state(RECT)
        app.run(timeout=30)  # this image is encoded already: no need to queue behind the other one
        assert not app.exception and len(app.session_state["samdash"].workspace.segments) == 1
    finally:
        release.set()


def test_leaving_an_image_before_its_encode_starts_cancels_that_encode(app):
    release = threading.Event()
    shared.submit(URGENT, object(), lambda: release.wait(300))  # another session's image holds the encoder
    try:
        app.selectbox(key="sample").select("Coffee cup").run(timeout=30)  # the run ends; the coffee cup waits
        coffee = app.session_state["samdash"].encode[1]
        assert not coffee.done() and "Waiting for the encoder" in _status_line(app)
        app.selectbox(key="sample").select("Astronaut").run(timeout=30)
        assert coffee.cancelled() and not app.session_state["samdash"].encode[1].cancelled()
    finally:
        release.set()


def test_a_box_drawn_while_the_image_is_encoded_is_segmented_once_it_is(app):
    release = threading.Event()
    shared.submit(URGENT, object(), lambda: release.wait(300))  # another session's image holds the encoder
    try:
        app.selectbox(key="sample").select("Coffee cup").run(timeout=30)
        assert app.session_state["samdash"].encode is not None and "You can draw now" in _status_line(app)
        workspace = app.session_state["samdash"].workspace
        app.session_state[workspace.canvas_key] = canvas_state(RECT)
        app.run(timeout=30)  # the drawing's run: nothing to segment with yet, and the canvas keeps the box
        assert not app.exception and workspace.segments == []
    finally:
        release.set()
    settle(app)  # the run the browser makes once the encode is done
    assert len(workspace.segments) == 1 and _status_line(app).startswith("Image encoded in")


def test_a_model_loads_once_the_page_has_shown_its_canvas(tiny_page_env):
    """Importing PyTorch beside the page's first runs would slow them down: the load waits for the canvas."""
    app = AppTest.from_file(APP, default_timeout=120)
    app.run(timeout=30)
    data = app.session_state["samdash"]
    assert data.held_model is not None and not app.session_state["model_load"][1].done()
    assert _find(app.main, "canvas") is not None and app.session_state["samdash"].workspace is not None
    settle(app)  # the canvas reports how it fits the image: the model loads, and the page runs again
    assert data.held_model is None and "model_load" not in app.session_state
    assert _status_line(app).startswith("Image encoded in")


def test_the_page_shows_the_image_and_takes_drawings_while_the_model_loads(tiny_page_env):
    release = threading.Event()
    # Another model holds the loader: this page's model waits its turn.
    engine_pool().acquire("someone else", "another model", lambda: release.wait(300) and None)
    try:
        app = AppTest.from_file(APP, default_timeout=120)
        app.run(timeout=30)
        assert not app.exception and app.session_state["model_load"][1].running() is False
        assert "Loading SAM" in _status_line(app) or "Loading tiny" in _status_line(app), _status_line(app)
        assert _find(app.main, "canvas") is not None and not app.warning  # no fallback banner while SAM loads
        workspace = app.session_state["samdash"].workspace
        app.session_state[workspace.canvas_key] = canvas_state(RECT)
        app.run(timeout=30)
        assert not app.exception and workspace.segments == []
    finally:
        release.set()
    settle(app)
    assert len(app.session_state["samdash"].workspace.segments) == 1 and "model_load" not in app.session_state


def _layout(node) -> object:
    """The kinds of blocks and elements a run lays out, in order."""
    children = getattr(node, "children", None)
    if children is None:
        return type(node).__name__
    return type(node).__name__, tuple(_layout(child) for _, child in sorted(children.items()))


def _find(node, key: str):
    if getattr(node, "key", None) == key:
        return node
    for child in (getattr(node, "children", None) or {}).values():
        if (found := _find(child, key)) is not None:
            return found
    return None


def test_the_working_area_keeps_its_layout_while_an_image_is_encoded(app):
    """The encoder's progress goes on the status line, which is always there: everything stays at its place,
    or a browser holding one run's layout fails on the next run's messages, and a moved canvas loses its drawing."""
    shared.submit(URGENT, object(), lambda: time.sleep(1.5))  # another session's image holds the encoder a while
    app.selectbox(key="sample").select("Coffee cup").run(timeout=60)
    assert not app.exception and "Waiting for the encoder" in _status_line(app)
    waiting = _layout(app.main)
    settle(app)
    assert _status_line(app).startswith("Image encoded in")
    assert _layout(app.main) == waiting


def _status_line(app) -> str:
    """The status line's one caption (in a block of its own, whichever run wrote it)."""
    (inner,) = _find(app.main, "status-line").children.values()
    (caption,) = inner.children.values()
    return caption.value


def test_an_exclude_point_with_no_object_is_explained(app):
    draw(app, circle(100, 60, EXCLUDE_COLOR))
    assert app.session_state["samdash"].workspace.segments == []
    assert any("exclude point needs an object" in e.value for e in app.error)


def test_a_degenerate_box_is_refused_and_earlier_objects_stay(app):
    draw(app, RECT)
    flat = dict(RECT, left=300, width=0)
    draw(app, RECT, flat)
    assert len(app.session_state["samdash"].workspace.segments) == 1
    assert any("no area" in e.value for e in app.error)


def test_rename_recolour_hide(app):
    draw(app, RECT)
    workspace = app.session_state["samdash"].workspace
    ids = tuple(s.id for s in workspace.segments)
    table_edits(workspace, ids, {0: {"Name": "cat", "Visible": False}})  # the table's edits, as it reports them
    app.color_picker(key=next(k for k in _keys(app) if k.startswith("color-"))).set_value("#ff0000").run()
    segment = app.session_state["samdash"].workspace.segments[0]
    assert (segment.name, segment.visible, segment.color) == ("cat", False, (255, 0, 0))
    [table] = app.dataframe
    assert (table.value["Name"][0], bool(table.value["Visible"][0])) == ("cat", False)
    assert "%23ff0000" in table.value["Colour"][0]  # the row's swatch
    assert any(m.value.startswith("**Candidates for cat**") for m in app.markdown)


def test_table_edits_skip_objects_gone_and_keep_a_name_left_empty(app):
    draw(app, RECT, dict(RECT, left=170, top=60))
    workspace = app.session_state["samdash"].workspace
    ids = tuple(s.id for s in workspace.segments)
    workspace.remove(ids[0])  # deleted (in another run) after the table was shown
    table_edits(workspace, ids, {0: {"Name": "gone"}, 1: {"Name": "  "}, 2: {"Name": "no such row"}})
    assert [s.name for s in workspace.segments] == ["object 2"]


def _keys(app: AppTest) -> list[str]:
    return [w.key for w in [*app.text_input, *app.checkbox, *app.color_picker] if w.key]


def test_a_new_image_starts_a_new_set_of_objects(app):
    draw(app, RECT)
    app.selectbox(key="sample").select("Coffee cup").run()
    workspace = app.session_state["samdash"].workspace
    assert workspace.segments == [] and app.session_state["samdash"].image.width == 600


def test_without_a_checkpoint_the_page_says_so_and_uses_grabcut(monkeypatch, tmp_path):
    monkeypatch.delenv("SAMDASH_CHECKPOINT", raising=False)
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    assert any("SAM is not available" in w.value and "GrabCut" in w.value for w in at.warning)
    assert any(b.label.startswith("Download") for b in at.button)
    draw(at, RECT)
    (segment,) = at.session_state["samdash"].workspace.segments
    assert segment.area > 0 and np.isnan(segment.score)
    assert _status_line(at).startswith("Segmenting with GrabCut") and "outlined in" in _status_line(at)


_FALLBACK_PAGE = """
import sys
from streamlit.testing.v1 import AppTest
from tests.page_driver import APP, RECT, draw

at = AppTest.from_file(APP, default_timeout=120)
at.run()
draw(at, RECT)
assert not at.exception and at.session_state["samdash"].workspace.segments[0].area > 0
print(sorted(name for name in ("torch", "torchvision", "segment_anything") if name in sys.modules))
"""


def test_without_a_model_the_page_never_imports_pytorch(tmp_path):
    """PyTorch and torchvision cost hundreds of MB and seconds to import: a server on the GrabCut fallback never
    pays them (a fresh interpreter: this one has them loaded by other tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMDASH_")}
    env.update(SAMDASH_MODEL_DIR=str(tmp_path / "models"), SAMDASH_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-c", _FALLBACK_PAGE], cwd=Path(APP).parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_corrupt_checkpoint_is_an_error_not_a_traceback(monkeypatch, tmp_path):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint at all")
    monkeypatch.setenv("SAMDASH_CHECKPOINT", str(broken))
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    settle(at)  # the load fails on its own thread; the run after it shows why
    assert any("broken.pth" in e.value for e in at.error)
    assert any("GrabCut" in w.value for w in at.warning)
    at.run()  # the session does not load the same file again on every run
    assert "model_load" not in at.session_state and any("broken.pth" in e.value for e in at.error)


def test_a_damaged_official_checkpoint_is_named_with_how_to_fix_it(monkeypatch, tmp_path, tiny_checkpoint):
    data = bytearray(tiny_checkpoint.read_bytes())
    spec = replace(checkpoints.CATALOGUE["vit_b"], size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(checkpoints.CATALOGUE, "vit_b", spec)
    data[len(data) // 2] ^= 0x01  # still loads, with one wrong weight
    (tmp_path / spec.filename).write_bytes(data)
    for name in ("SAMDASH_CHECKPOINT", "SAMDASH_MODEL_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SAMDASH_DEVICE", "cpu")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    settle(at)
    (error,) = at.error
    assert error.value.startswith(f"Checkpoint {tmp_path / spec.filename} is damaged: its SHA-256 is ")
    assert "python -m samdash download --model vit_b" in error.value
    assert any("GrabCut" in w.value for w in at.warning)


def _find_all_objects(app: AppTest) -> None:
    """Open segment everything with thresholds a random tiny model passes, and press Find."""
    sliders = {s.label: s for s in app.slider}
    sliders["Points per side"].set_value(4)
    sliders["Predicted IoU threshold"].set_value(0.0)
    sliders["Stability score threshold"].set_value(0.0)
    _button(app, "Find all objects").click().run()
    assert not app.exception


def test_segment_everything_adds_its_objects_when_the_run_ends(app):
    draw(app, RECT)
    _find_all_objects(app)
    deadline = time.monotonic() + 120
    while app.session_state["samdash"].everything is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        app.run()  # what the progress fragment's timer does in the browser
    workspace = app.session_state["samdash"].workspace
    assert len(workspace.segments) > 1 and workspace.segments[0].prompt.box is not None
    assert all(s.candidates.logits.shape == (1, 256, 256) for s in workspace.segments[1:])
    assert f"**Objects ({len(workspace.segments)})**" in [m.value for m in app.markdown]


def test_a_cancelled_segment_everything_adds_nothing(app):
    panel = importlib.import_module("samdash.ui.everything_panel")
    release = threading.Event()
    blocker = panel._pool.submit(release.wait, 300)  # another session's run holds the pool: this one waits
    try:
        draw(app, RECT)
        (segment,) = app.session_state["samdash"].workspace.segments
        _find_all_objects(app)
        run = app.session_state["samdash"].everything
        assert any("Waiting for another" in p.proto.text for p in app.get("progress"))
        app.button(key="everything-cancel").click().run()
        assert any(i.value == "Cancelled: no objects were added." for i in app.info)
    finally:
        release.set()
    blocker.result()
    with pytest.raises(Cancelled):
        run.future.result(timeout=60)  # the run, once started, stopped before its first batch
    app.run()
    assert app.session_state["samdash"].workspace.segments == [segment] and app.session_state["samdash"].everything is None


def test_zooming_moves_the_drawings_keeps_the_objects_and_maps_new_points_into_the_view(tiny_page_env):
    from samdash.canvas import INCLUDE_COLOR
    from tests.page_driver import circle

    at = open_app()
    draw(at, RECT)
    workspace = at.session_state["samdash"].workspace
    [segment] = workspace.segments
    state = segment.state
    at.button_group(key="zoom").set_value("4×").run()
    assert not at.exception
    image_hash, view = at.session_state["samdash-view"]
    assert view.zoom == pytest.approx(4, rel=0.02) and image_hash == workspace.image_hash
    assert any(m.value.startswith("**Result** · 4×") for m in at.markdown)
    [moved] = workspace.drawing["objects"]
    size = view.canvas_size(560, 720)
    # The box, 240 image px wide (120 canvas px at the whole view's scale of 0.5), at the view's scale.
    assert moved["width"] == pytest.approx(RECT["width"] / 0.5 * size[0] / view.width)
    assert segment.state is state  # moved, not segmented again
    # The canvas remounted for the view reports its drawings and a point drawn at this zoom.
    fit = {"naturalWidth": size[0], "naturalHeight": size[1], "scaleX": 1, "scaleY": 1, "offsetX": 0, "offsetY": 0}
    at.session_state[workspace.canvas_key] = {"drawing": {"raw": {"objects": [moved, circle(100, 80, INCLUDE_COLOR)]},
                                                         "data": None}, "backgroundFit": fit}
    at.run()
    assert not at.exception and workspace.segments == [segment]
    expected = (view.x + 100 * view.width / size[0], view.y + 80 * view.height / size[1])
    assert segment.prompt.points.tolist()[-1] == pytest.approx(expected, abs=0.01)
    at.button_group(key="zoom").set_value("Whole image").run()
    assert at.session_state["samdash-view"][1].is_whole and len(workspace.drawing["objects"]) == 2


def test_brush_mode_offers_a_width_and_a_stroke_needs_an_object(tiny_page_env):
    from samdash.canvas import BRUSH_COLOR

    at = open_app()
    at.segmented_control(key="mode").set_value("Brush").run()
    assert at.slider(key="brush-px").value == 16
    stroke = {"type": "path", "path": [["M", 50, 50], ["L", 120, 60]], "left": 42, "top": 42, "width": 70,
              "height": 10, "strokeWidth": 16, "stroke": BRUSH_COLOR}
    draw(at, stroke)
    assert any("The brush paints on the selected object" in e.value for e in at.error)
    draw(at, stroke, RECT)
    assert len(at.session_state["samdash"].workspace.segments) == 1
