"""Two tabs (two teammates) on the same image of one project: neither loses the other's objects, nor its own."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samdash.imaging import load_image, thumbnail_jpeg
from samdash.store import Store
from tests.browser.conftest import app_tracebacks, open_page, serve_app
from tests.browser.harness import draw_box, object_cells, wait_for_canvas, wait_for_objects, wait_for_run

pytestmark = pytest.mark.browser

SIZE = (600, 400)  # width, height


def _png() -> bytes:
    rng = np.random.default_rng(3)
    image = rng.integers(110, 150, size=(SIZE[1], SIZE[0], 3), dtype=np.uint8)
    cv2.circle(image, (160, 200), 90, (220, 40, 40), -1)
    cv2.rectangle(image, (380, 120), (540, 320), (40, 60, 200), -1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _project(data_dir: Path) -> tuple[str, int]:
    """A project with one image, made the way the page makes one; its id and the image's."""
    store = Store(data_dir)
    data = _png()
    image = load_image(data, "shared.png")
    project = store.create_project("Shared")
    info, _ = store.add_image(project.id, data, image.name, image.content_hash, (image.width, image.height), thumbnail_jpeg(image.rgb))
    store.close()
    return project.id, info.id


def _stored(data_dir: Path, image_id: int):
    """The image's objects and drawings as a fresh reader of the data directory sees them."""
    store = Store(data_dir)
    try:
        workspace, saved = store.load_workspace(store.image(image_id))
        return workspace, saved
    finally:
        store.close()


def _assert_whole(workspace) -> None:
    ids = [segment.id for segment in workspace.segments]
    assert len(ids) == len(set(ids)), f"duplicate object ids {ids}"
    assert workspace.next_id > max(ids, default=0)
    for segment in workspace.segments:
        assert segment.area > 0, f"{segment.name} has an empty mask"
        assert segment.mask.shape == (SIZE[1], SIZE[0])
        assert segment.prompt.box is not None, f"{segment.name} lost the box that made it"
    # Every drawing kept names an object that is there.
    assert {entry.segment_id for entry in workspace.applied} <= set(ids)
    assert len(workspace.applied) == len(ids)  # one box each, no point


def _object_names(page) -> list[str]:
    """The names in the object table, once it is drawn."""
    page.wait_for_function("() => document.querySelector('.st-key-objects [data-testid^=glide-cell-1-]')", timeout=30_000)
    return sorted(object_cells(page, "Name"))


def test_two_tabs_on_one_image_keep_each_others_objects(browser, tiny_checkpoint, tmp_path, artifacts):
    data_dir = tmp_path / "data"
    project, image_id = _project(data_dir)
    env = {"SAMDASH_CHECKPOINT": str(tiny_checkpoint), "SAMDASH_MODEL_DIR": str(tmp_path / "models"),
           "SAMDASH_DATA_DIR": str(data_dir)}
    with serve_app(env, tmp_path / "server.log") as served:
        url = f"{served.url}/?project={project}&image=1"
        with open_page(browser, url) as a, open_page(browser, url) as b:
            for page in (a, b):
                page.get_by_text("Image 1 of 1", exact=False).wait_for(timeout=60_000)
                wait_for_run(page)
                wait_for_canvas(page)

            def box_saved(page, start, end, objects: int, shot: str):
                """Draw a box in ``page``; once its object is listed there, what the store holds (checked whole)."""
                draw_box(page, start, end, image_size=SIZE)
                wait_for_objects(page, objects, timeout=60)
                wait_for_run(page)
                page.screenshot(path=artifacts / shot, full_page=True)
                stored, _ = _stored(data_dir, image_id)
                _assert_whole(stored)
                assert len(stored.segments) == objects
                return stored

            # Tab A makes an object: it is saved at once.
            box_saved(a, (60, 100), (260, 300), 1, "two-tabs-a-after-its-box.png")

            # Tab B, which still shows the image without it, draws its own box: it gets A's object and keeps its own.
            stored = box_saved(b, (370, 110), (550, 330), 2, "two-tabs-b-after-its-box.png")
            boxes = sorted(tuple(np.round(s.prompt.box).astype(int)) for s in stored.segments)
            assert boxes[0][0] < 100 and boxes[1][0] > 300, boxes  # A's box on the left, B's on the right

            # Back in A, which now lags behind: its next drawing lands on top of both.
            stored = box_saved(a, (20, 20), (120, 90), 3, "two-tabs-a-after-its-second-box.png")
            names = sorted(segment.name for segment in stored.segments)

            # A reload of either tab shows what the store holds.
            for page in (a, b):
                page.reload()
                wait_for_objects(page, 3, timeout=60)
                wait_for_run(page)
                assert _object_names(page) == names
            settled, saved = _stored(data_dir, image_id)
            assert [s.id for s in settled.segments] == [s.id for s in stored.segments]
    assert app_tracebacks((tmp_path / "server.log").read_text()) == []
