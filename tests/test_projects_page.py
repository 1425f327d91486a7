"""Projects on the page (AppTest): autosave, the URL, moving through images, two sessions, a failed save."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from samdash.imaging import LoadedImage, thumbnail_jpeg
from samdash.render import rgb_to_hex
from samdash.store import Store
from samdash.ui.objects import table_edits
from samdash.canvas import BackgroundFit, shapes_from_canvas
from samdash.ui.display import MAX_CANVAS_HEIGHT
from samdash.view import View
from tests.page_driver import RECT, draw, open_app


def _png(seed: int, size=(320, 240)) -> tuple[bytes, LoadedImage]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    rgb[60:180, 80:240] = (200, 40, 40)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue(), LoadedImage.from_array(rgb, f"image-{seed}.png")


def _project_with_images(data_dir: Path, count: int) -> tuple[Store, str]:
    store = Store(data_dir)
    project = store.create_project("Survey")
    for seed in range(count):
        data, image = _png(seed)
        store.add_image(project.id, data, image.name, image.content_hash, (image.width, image.height), thumbnail_jpeg(image.rgb))
    return store, project.id


def _segments(at: AppTest):
    return at.session_state["samdash"].workspace.segments


def test_the_first_object_on_a_sample_starts_a_project_and_a_reload_shows_it(tiny_page_env):
    at = open_app()
    assert "project" not in at.query_params  # looking costs nothing: no project until something is made
    draw(at, RECT)
    project, image = at.query_params["project"], at.query_params["image"]
    assert image == "1"
    [made] = _segments(at)
    again = open_app({"project": project, "image": image})  # a reload: a new session with the same URL
    [shown] = _segments(again)
    assert (shown.id, shown.name, shown.compact_mask.counts) == (made.id, made.name, made.compact_mask.counts)
    assert again.session_state["samdash"].image.content_hash == at.session_state["samdash"].image.content_hash


def test_every_kind_of_change_is_saved_as_it_is_made(tiny_page_env):
    at = open_app()
    draw(at, RECT)
    workspace = at.session_state["samdash"].workspace
    table_edits(workspace, (workspace.segments[0].id,), {0: {"Name": "cat", "Visible": False}})  # the table's callback
    at.run()
    at.color_picker(key=next(w.key for w in at.color_picker if w.key and w.key.startswith("color-"))).set_value("#ff0000").run()
    next(b for b in at.button if b.label.startswith("#") and "✓" not in b.label).click().run()
    made = _segments(at)[0]
    store = Store(tiny_page_env)
    [info] = store.images(at.query_params["project"])
    [saved] = store.load_workspace(info)[0].segments
    assert (saved.name, saved.visible, saved.color, saved.pick) == ("cat", False, (255, 0, 0), made.pick)
    assert saved.compact_mask.counts == made.compact_mask.counts
    at.session_state["samdash"].workspace.remove(made.id)  # the row's Delete button
    at.run()
    assert store.load_workspace(store.image(info.id))[0].segments == []


def test_the_url_opens_a_project_at_an_image_and_next_moves_on(tiny_page_env):
    store, project = _project_with_images(tiny_page_env, 3)
    at = open_app({"project": project, "image": "2"})
    assert at.session_state["samdash"].image.name == "image-1.png"
    next(b for b in at.button if b.key == "image-next").click().run()
    assert at.query_params["image"] == "3" and at.session_state["samdash"].image.name == "image-2.png"
    at.checkbox(key=next(w.key for w in at.checkbox if w.key and w.key.startswith("done-"))).check().run()
    assert [i.done for i in store.images(project)] == [False, False, True]
    next(b for b in at.button if b.key == "image-prev").click().run()
    assert at.query_params["image"] == "2"


def test_an_unknown_project_is_explained_not_a_traceback(tiny_page_env):
    at = open_app({"project": "no-such-project"})
    assert any("no project" in w.value for w in at.warning)
    assert at.session_state["samdash"].image is not None  # the sample, to start again


def test_a_change_in_another_session_shows_on_the_next_run(tiny_page_env):
    store, project = _project_with_images(tiny_page_env, 1)
    first = open_app({"project": project, "image": "1"})
    second = open_app({"project": project, "image": "1"})
    draw(first, RECT)
    second.run()
    assert [s.compact_mask.counts for s in _segments(second)] == [s.compact_mask.counts for s in _segments(first)]


def test_a_drawing_made_while_another_session_saved_is_kept_on_top(tiny_page_env):
    store, project = _project_with_images(tiny_page_env, 1)
    first = open_app({"project": project, "image": "1"})
    second = open_app({"project": project, "image": "1"})
    draw(first, RECT)
    other = {**RECT, "left": 200, "top": 120, "width": 60, "height": 50}
    draw(second, other)  # the second tab had not seen the first one's object when it drew its own box
    workspace = second.session_state["samdash"].workspace
    assert len(workspace.segments) == 1  # the first tab's object, as saved
    # The canvas is remounted with both drawings, laid out for the canvas the page draws (560 px wide here) ...
    image = second.session_state["samdash"].image
    size = View.whole((image.width, image.height)).canvas_size(560, MAX_CANVAS_HEIGHT)
    laid_out = {"naturalWidth": size[0], "naturalHeight": size[1], "scaleX": 1, "scaleY": 1, "offsetX": 0, "offsetY": 0}
    mounted = shapes_from_canvas(workspace.drawing, BackgroundFit.from_result(
        {"scale_x": size[0] / image.width, "scale_y": size[1] / image.height, "offset_x": 0, "offset_y": 0}))
    as_drawn = BackgroundFit(0.5 * 451 / image.width, 0.5 * 300 / image.height, 0, 0)  # page_driver's FIT, as the page reads it
    drawn = shapes_from_canvas({"objects": [RECT, other]}, as_drawn)
    assert [m.same_as(d) for m, d in zip(mounted, drawn, strict=True)] == [True, True]
    # ... which it sends back once mounted: the box is applied now.
    second.session_state[workspace.canvas_key] = {"drawing": {"raw": workspace.drawing, "data": None}, "backgroundFit": laid_out}
    second.run()
    saved = store.load_workspace(store.images(project)[0])[0]
    assert [s.id for s in saved.segments] == [1, 2]
    assert [s.compact_mask.counts for s in saved.segments] == [s.compact_mask.counts for s in _segments(second)]
    first.run()
    assert len(_segments(first)) == 2


def test_a_save_that_fails_says_so_and_keeps_the_work(tiny_page_env, monkeypatch):
    store, project = _project_with_images(tiny_page_env, 1)
    monkeypatch.setattr("samdash.store.BUSY_TIMEOUT_S", 0.2)
    at = open_app({"project": project, "image": "1"})
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        draw(at, RECT)
        assert len(_segments(at)) == 1
        assert any("not saved" in e.value for e in at.error)
    finally:
        locker.execute("ROLLBACK")
    at.run()  # the next run saves what was kept
    assert not any("not saved" in e.value for e in at.error)
    assert len(store.load_workspace(store.images(project)[0])[0].segments) == 1


def test_an_image_whose_file_is_gone_is_explained_and_the_others_open(tiny_page_env):
    store, project = _project_with_images(tiny_page_env, 2)
    store.image_path(store.images(project)[1]).unlink()
    at = open_app({"project": project, "image": "2"})
    assert any("The file of image-1.png is missing" in e.value for e in at.error)
    at = open_app({"project": project, "image": "1"})
    assert at.session_state["samdash"].image.name == "image-0.png" and not at.error


def test_labels_from_the_sidebar_go_on_new_objects_and_a_merge_relabels_them(tiny_page_env):
    at = open_app()
    assert any("your first object starts one" in c.value for c in at.sidebar.caption)
    draw(at, RECT)  # the first object starts a project
    project = at.query_params["project"]
    for name in ("car", "truck"):
        next(t for t in at.sidebar.text_input if t.label == "New label").input(name)
        next(b for b in at.sidebar.button if b.label == "Add label").click().run()
    store = Store(tiny_page_env)
    car, truck = store.labels(project)
    assert (car.name, truck.name) == ("car", "truck") and car.color != truck.color
    assert not at.exception

    at.selectbox(key=f"new-label-{project}").select(truck.id).run()
    draw(at, RECT, dict(RECT, left=200, top=60))
    workspace = at.session_state["samdash"].workspace
    first, second = workspace.segments
    assert (first.label_id, second.label_id, second.color) == (None, truck.id, truck.color)
    [table] = at.dataframe
    assert list(table.value["Label"].fillna("")) == ["", "truck"]
    assert any(c.value == "On this image: truck 1 · no label 1 · in the project: truck 1 · no label 1" for c in at.caption)
    table_edits(workspace, (first.id, second.id), {0: {"Label": "car"}}, store.labels(project))  # the table's callback
    at.run()
    assert (first.label_id, first.color) == (car.id, car.color)

    # Merge "truck" into "car" from the sidebar: the image shown now has two cars, also in the store.
    at.selectbox(key="label-manage").select(truck).run()
    at.selectbox(key=f"label-becomes-{truck.id}").select(car.id).run()
    next(b for b in at.button if b.label == "Merge into car").click().run()
    assert [label.name for label in store.labels(project)] == ["car"]
    shown = at.session_state["samdash"].workspace.segments
    assert [(s.label_id, s.color) for s in shown] == [(car.id, car.color), (car.id, car.color)]
    [info] = store.images(project)
    assert [s.label_id for s in store.load_workspace(info)[0].segments] == [car.id, car.id]
    assert any(c.value.startswith("On this image: car 2 · in the project: car 2") for c in at.caption)
    assert [m.value for m in at.sidebar.markdown if "●" in m.value] == [f"<span style='color:{rgb_to_hex(car.color)}'>●</span> car"]
    assert not at.exception


def test_a_coco_file_and_its_images_uploaded_in_the_sidebar_become_a_project(tiny_page_env, tmp_path):
    """The file uploads are what a browser sends; the import itself is tested on its own in test_coco_import."""
    data, image = _png(5)
    document = {
        "images": [{"id": 7, "file_name": "field.png", "width": 320, "height": 240}],
        "categories": [{"id": 3, "name": "rock"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "segmentation": [[10, 10, 110, 10, 110, 90, 10, 90]]},
                        {"id": 2, "image_id": 8, "category_id": 3, "segmentation": [[0, 0, 5, 0, 5, 5]]}],
    }
    at = open_app()
    _import(at, document, {"field.png": data})
    assert not at.exception
    assert any("1 images, 1 objects imported; new labels: rock; 1 left out: annotation 2: no image 8 in the file" == w.value
               for w in at.warning)
    [segment] = _segments(at)
    assert segment.area == 100 * 80 and at.session_state["samdash"].image.content_hash == image.content_hash
    [label] = Store(tiny_page_env).labels(at.query_params["project"])
    assert segment.label_id == label.id and label.name == "rock"
    assert any("Imported with its mask" in c.value for c in at.caption)


def test_a_coco_file_can_take_its_images_from_a_server_folder_and_nothing_outside_it(tiny_page_env, tmp_path, monkeypatch):
    field = tmp_path / "shared" / "field"
    field.mkdir(parents=True)
    data, image = _png(6)
    (field / "plot.png").write_bytes(data)
    (tmp_path / "secret.png").write_bytes(_png(7)[0])
    monkeypatch.setenv("SAMDASH_IMAGE_ROOTS", str(tmp_path / "shared"))
    document = {
        "images": [{"id": 1, "file_name": "plot.png"}, {"id": 2, "file_name": "../../secret.png"}],
        "categories": [{"id": 1, "name": "weed"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[20, 20, 60, 20, 60, 50, 20, 50]]},
                        {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[0, 0, 9, 0, 9, 9]]}],
    }
    at = open_app()
    _import(at, document, folder="shared/field")
    assert not at.exception
    assert any(w.value == "1 images, 1 objects imported; new labels: weed; 1 left out: image ../../secret.png: not in "
               "the images given (1 annotations left out)" for w in at.warning)
    [segment] = _segments(at)
    assert segment.area == 40 * 30 and at.session_state["samdash"].image.content_hash == image.content_hash


def _import(at: AppTest, document: dict, images: dict[str, bytes] | None = None, folder: str | None = None) -> None:
    """Upload the file in the sidebar's import panel with its images (or pick their server folder) and press Import."""
    from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec

    def uploaded(name: str, data: bytes, kind: str) -> UploadedFile:
        return UploadedFile(UploadedFileRec(file_id=name, name=name, type=kind, data=data), None)

    at.session_state["import-json"] = uploaded("coco.json", json.dumps(document).encode(), "application/json")
    if folder is None:
        at.session_state["import-images"] = [uploaded(name, data, "image/png") for name, data in (images or {}).items()]
        at.run()
    else:
        at.run()
        at.radio(key="import-from").set_value("In a server folder").run()
        picker = at.selectbox(key="import-folder")
        picker.select_index(picker.options.index(folder)).run()
    next(b for b in at.button if b.label == "Import").click().run()
