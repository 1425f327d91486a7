"""COCO into a project: a samdash export read back, other tools' files, and what is left out and why."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from samdash.coco_import import IMPORT_SOURCE, import_coco
from samdash.dataset import coco_document, export_project
from samdash.errors import SamdashError
from samdash.imaging import load_image_file
from samdash.prompts import INCLUDE
from samdash.store import Store
from tests.test_cli import _run
from tests.test_dataset import survey_project

MAX_PIXELS = 50_000_000


@pytest.fixture
def exported(tmp_path, scene, tiny_engine) -> tuple[Path, Path, dict]:
    """A samdash project exported as COCO and unpacked: (annotations file, images folder, the document)."""
    store, project_id, _ = survey_project(tmp_path / "first", scene, tiny_engine)
    export_project(store, project_id, "coco", tmp_path / "survey.zip")
    with zipfile.ZipFile(tmp_path / "survey.zip") as archive:
        archive.extractall(tmp_path / "unpacked")
    annotations = tmp_path / "unpacked" / "annotations.json"
    return annotations, tmp_path / "unpacked" / "images", json.loads(annotations.read_text())


def _by_file(document: dict) -> dict[str, list[tuple[str, str, float]]]:
    """Per image file: (category name, RLE counts, score) of each annotation, in order."""
    names = {c["id"]: c["name"] for c in document["categories"]}
    files = {image["id"]: image["file_name"] for image in document["images"]}
    out: dict[str, list] = {name: [] for name in files.values()}
    for a in document["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], a["segmentation"]["counts"], round(a["score"], 6)))
    return out


def test_an_exported_project_imported_again_exports_the_same_masks(exported, tmp_path):
    annotations, images, document = exported
    store = Store(tmp_path / "second")
    project = store.create_project("Again")
    report = import_coco(store, annotations, images, project, MAX_PIXELS)
    assert (report.images, report.objects, report.skipped) == (3, 6, [])
    assert report.labels_added == ["car", "unused", "object"]
    again = coco_document(store, project.id)
    assert _by_file(again) == _by_file(document)  # identical RLE, categories and scores, image by image


def test_an_imported_object_is_refined_from_its_box_and_the_new_point(exported, tmp_path, tiny_engine):
    annotations, images, _ = exported
    store = Store(tmp_path / "second")
    project = store.create_project("Again")
    import_coco(store, annotations, images, project, MAX_PIXELS)
    info = store.images(project.id)[2]
    workspace, _ = store.load_workspace(info)
    segment = workspace.segments[0]
    assert segment.candidates.source == IMPORT_SOURCE and len(segment.candidates) == 1
    x, y, w, h = segment.compact_mask.bbox
    assert segment.prompt.box == (x, y, x + w, y + h)
    image = load_image_file(images / info.name, max_pixels=MAX_PIXELS)
    embedding = tiny_engine.embed(image.rgb, image.content_hash)
    segment.refine(tiny_engine, embedding, (x + w / 2, y + h / 2), INCLUDE)
    assert segment.prompt.box == (x, y, x + w, y + h) and segment.prompt.points.tolist() == [[x + w / 2, y + h / 2]]
    assert segment.prompt.mask_input is None and segment.candidates.source == tiny_engine.cache_id


def test_what_cannot_be_imported_is_reported_with_the_reason(exported, tmp_path):
    annotations, images, document = exported
    first, second = document["images"][:2]
    (images / second["file_name"]).unlink()  # an image missing from the folder
    document["annotations"] += [
        {"id": 900, "image_id": 12345, "category_id": document["categories"][0]["id"], "segmentation": [[0, 0, 9, 0, 9, 9]]},
        {"id": 901, "image_id": first["id"], "category_id": 777, "segmentation": [[0, 0, 9, 0, 9, 9]]},
        {"id": 902, "image_id": first["id"], "category_id": document["categories"][0]["id"], "segmentation": "oops"},
        {"id": 903, "image_id": first["id"], "category_id": document["categories"][0]["id"],
         "segmentation": {"size": [5, 5], "counts": "abc"}},
        # Another tool's polygon, without a score: imported.
        {"id": 904, "image_id": first["id"], "category_id": document["categories"][0]["id"],
         "segmentation": [[10, 10, 60, 10, 60, 50, 10, 50]]},
    ]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(document))
    store = Store(tmp_path / "second")
    project = store.create_project("Partial")
    report = import_coco(store, edited, images, project, MAX_PIXELS)
    assert report.images == 2 and report.objects == 5
    assert report.skipped == [
        "annotation 900: no image 12345 in the file",
        f"image {second['file_name']}: not in the images given (2 annotations left out)",
        f"annotation 901 on {first['file_name']}: no category 777 in the file",
        f"annotation 902 on {first['file_name']}: its segmentation is neither polygons nor RLE",
        f"annotation 903 on {first['file_name']}: its RLE is [5, 5], the image 480×640",
    ]
    workspace, _ = store.load_workspace(store.images(project.id)[0])
    polygon = workspace.segments[-1]
    assert np.isnan(polygon.score) and polygon.area == 50 * 40


@pytest.mark.parametrize(
    ("segmentation", "reason"),
    [
        ({"size": [480, 640], "counts": [-5, 3]}, "not whole numbers"),
        ({"size": [480, 640], "counts": [1, 2]}, "covers 3 pixels"),  # short runs: pycocotools would read memory
        ({"size": [480, 640], "counts": "P0"}, "covers"),
        ([[0, 0, 5e8, 0, 5e8, 5e8]], "far outside"),  # coordinates like these crash pycocotools
        ([[0, 0, "a", 0, 9, 9]], "not numbers"),
        ([[0, 0, 9, 0, 9]], "three x, y pairs"),
    ],
)
def test_a_malformed_segmentation_is_reported_not_decoded(exported, tmp_path, segmentation, reason):
    annotations, images, document = exported
    first = document["images"][0]
    document["annotations"] = [{"id": 1, "image_id": first["id"], "category_id": document["categories"][0]["id"], "segmentation": segmentation}]
    store = Store(tmp_path / "second")
    report = import_coco(store, json.dumps(document).encode(), images, store.create_project("Bad"), MAX_PIXELS)
    [skipped] = report.skipped
    assert reason in skipped and report.objects == 0


def test_odd_ids_a_wrong_size_and_names_outside_the_folder_are_reported(exported, tmp_path):
    annotations, images, document = exported
    first, second, third = document["images"]
    (tmp_path / "secret.png").write_bytes((images / first["file_name"]).read_bytes())
    second["width"] = 3000  # the file is 640 wide
    third["file_name"] = "../secret.png"  # outside the images given
    document["images"].append({"id": [1], "file_name": "x.png"})
    document["annotations"].append({"id": 950, "image_id": [first["id"]], "category_id": 1, "segmentation": []})
    store = Store(tmp_path / "second")
    report = import_coco(store, json.dumps(document).encode(), images, store.create_project("Odd"), MAX_PIXELS)
    assert report.images == 1
    assert report.skipped == [
        "annotation 950: no image None in the file",
        "image ../secret.png: not in the images given (2 annotations left out)",
        f"image {second['file_name']}: the file says 3000×480, the image is 640×480 (2 annotations left out)",
    ]


def test_the_cli_imports_into_a_project_and_a_broken_file_is_one_line(exported, tmp_path, monkeypatch):
    annotations, images, _ = exported
    monkeypatch.setenv("SAMDASH_DATA_DIR", str(tmp_path / "cli"))
    code, out, err = _run("import", str(annotations), "--images", str(images), "--project", "Imported")
    assert code == 0, err
    assert out.startswith("3 images, 6 objects imported; new labels: car, unused, object; open it at ?project=")
    assert err.split("\r")[-1] == f"Imported [{'#' * 30}] 3/3 images\n"  # the bar, redrawn after each image
    assert err.count("\r") == 3
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    code, out, err = _run("import", str(broken), "--images", str(images), "--project", "Imported")
    assert code == 2 and err.count("\n") == 1 and "not a COCO file" in err
    with pytest.raises(SamdashError, match="instances"):
        import_coco(Store(tmp_path / "x"), b'{"images": []}', images, Store(tmp_path / "x").create_project("p"), MAX_PIXELS)
