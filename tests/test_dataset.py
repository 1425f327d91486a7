"""Whole-project datasets: real projects in a store, objects made by the tiny SAM, read back by pycocotools."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from samdash.canvas import BackgroundFit, shapes_from_canvas
from samdash.dataset import MIN_SIMPLIFIED_IOU, UNLABELLED, export_bytes, export_project
from samdash.errors import SamdashError
from samdash.export import read_yolo_seg
from samdash.imaging import LoadedImage
from samdash.store import LabelInfo, Store
from tests.test_cli import _run

SAME_SIZE = BackgroundFit(1.0, 1.0, 0.0, 0.0)
BOXES = [
    {"type": "rect", "left": 120, "top": 100, "width": 200, "height": 200, "strokeWidth": 0},
    {"type": "rect", "left": 400, "top": 280, "width": 180, "height": 160, "strokeWidth": 0},
]


def survey_project(data_dir: Path, scene: np.ndarray, engine) -> tuple[Store, str, LabelInfo]:
    """Three images (two named alike, from two folders), two objects each: a "car", and one without a label."""
    store = Store(data_dir)
    project = store.create_project("Survey")
    car = store.add_label(project.id, "car", (255, 0, 0))
    store.add_label(project.id, "unused", (0, 255, 0))
    for number, name in enumerate(["a/IMG_1.png", "b/IMG_1.png", "street.png"]):
        rgb = np.roll(scene, 40 * number, axis=1)
        image = LoadedImage.from_array(rgb, name)
        png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
        info, _ = store.add_image(project.id, png, Path(name).name, image.content_hash, (image.width, image.height))
        workspace, saved = store.load_workspace(info)
        embedding = engine.embed(rgb, image.content_hash)
        assert workspace.sync(shapes_from_canvas({"objects": BOXES}, SAME_SIZE), engine, embedding, (image.width, image.height)) == []
        workspace.segments[0].label_id = car.id
        store.save_workspace(workspace, saved)
    return store, project.id, car


@pytest.fixture
def project(tmp_path, scene, tiny_engine):
    return survey_project(tmp_path / "data", scene, tiny_engine)


def _holes_filled(mask: np.ndarray) -> np.ndarray:
    """The mask with every hole filled: what a polygon format can express (background not reachable from outside)."""
    outside = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)
    return (outside != 2)[1:-1, 1:-1]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def _stored_masks(store: Store, project_id: str) -> dict[int, list[np.ndarray]]:
    return {info.id: [s.mask for s in store.load_workspace(info)[0].segments] for info in store.images(project_id)}


def test_coco_holds_every_image_and_object_and_pycocotools_decodes_the_stored_masks(project, tmp_path):
    store, project_id, car = project
    target = tmp_path / "coco.zip"
    report = export_project(store, project_id, "coco", target)
    assert (report.images, report.objects, report.skipped) == (3, 6, [])
    with zipfile.ZipFile(target) as archive:
        names = sorted(archive.namelist())
        (tmp_path / "annotations.json").write_bytes(archive.read("annotations.json"))
    coco = COCO(str(tmp_path / "annotations.json"))
    files = [image["file_name"] for image in coco.dataset["images"]]
    assert files == ["img-1.png", "img-1-2.png", "street.png"]  # two IMG_1.png from two folders stay apart
    assert names == ["annotations.json"] + sorted(f"images/{name}" for name in files)
    unlabelled = car.id + 2  # after the highest label id; never 0, which loaders take for the background
    assert {c["id"]: c["name"] for c in coco.dataset["categories"]} == {car.id: "car", car.id + 1: "unused", unlabelled: UNLABELLED}
    masks = _stored_masks(store, project_id)
    for image_id, stored in masks.items():
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert [a["category_id"] for a in annotations] == [car.id, unlabelled]
        for annotation, mask in zip(annotations, stored):
            np.testing.assert_array_equal(coco.annToMask(annotation).astype(bool), mask)
            assert 0 < annotation["score"] <= 1 and annotation["area"] == mask.sum() and annotation["iscrowd"] == 0


def test_coco_polygons_and_the_annotations_alone(project, tmp_path):
    store, project_id, _ = project
    export_project(store, project_id, "coco", tmp_path / "only.json", polygons=True)
    coco = COCO(str(tmp_path / "only.json"))  # a .json path: the annotations without the images, under their own names
    assert [image["file_name"] for image in coco.dataset["images"]] == ["IMG_1.png", "IMG_1.png", "street.png"]
    assert not list(tmp_path.glob("*.part"))
    for image_id, stored in _stored_masks(store, project_id).items():
        for annotation, mask in zip(coco.loadAnns(coco.getAnnIds(imgIds=[image_id])), stored):
            assert _iou(coco.annToMask(annotation).astype(bool), _holes_filled(mask)) > 0.99  # polygons have no holes


def test_yolo_labels_parse_back_to_the_masks_with_a_fixed_split(project, tmp_path):
    store, project_id, car = project
    data, report = export_bytes(store, project_id, "yolo", val_fraction=0.34, seed=3)
    assert report.points_written < report.points_traced  # simplified
    archive = zipfile.ZipFile(io.BytesIO(data))
    yaml = archive.read("data.yaml").decode()
    assert yaml == 'train: images/train\nval: images/val\nnames:\n  0: "car"\n  1: "unused"\n  2: "object"\n'
    val = [n for n in archive.namelist() if n.startswith("images/val/")]
    assert len(val) == 1 and len([n for n in archive.namelist() if n.startswith("images/train/")]) == 2
    assert export_bytes(store, project_id, "yolo", val_fraction=0.34, seed=3)[0] == data  # the same seed, the same split
    infos = store.images(project_id)
    masks = _stored_masks(store, project_id)
    for info, name in zip(infos, ["img-1", "img-1-2", "street"]):
        split = "val" if f"images/val/{name}.png" in val else "train"
        objects = read_yolo_seg(archive.read(f"labels/{split}/{name}.txt").decode(), (info.width, info.height))
        assert [class_id for class_id, _ in objects] == [0, 2]
        for (_, polygon), mask in zip(objects, masks[info.id]):
            filled = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([polygon.ravel().tolist()], info.height, info.width))).astype(bool)
            assert _iou(filled, _holes_filled(mask)) >= MIN_SIMPLIFIED_IOU - 0.01  # the bridges between parts aside


def test_masks_zip_has_a_label_map_and_a_mask_per_object(project):
    store, project_id, _ = project
    data, _ = export_bytes(store, project_id, "masks")
    archive = zipfile.ZipFile(io.BytesIO(data))
    info = store.images(project_id)[2]
    stored = _stored_masks(store, project_id)[info.id]
    labels = cv2.imdecode(np.frombuffer(archive.read("label_maps/street.png"), np.uint8), cv2.IMREAD_UNCHANGED)
    for number, mask in enumerate(stored, start=1):
        single = cv2.imdecode(np.frombuffer(archive.read(f"masks/street/object-{number}.png"), np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(single > 0, mask)
        assert (labels == number).sum() > 0
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_a_missing_image_file_is_reported_and_the_rest_exported(project, tmp_path):
    store, project_id, _ = project
    gone = store.images(project_id)[1]
    store.image_path(gone).unlink()
    report = export_project(store, project_id, "coco", tmp_path / "out.json")
    assert report.images == 2 and report.skipped == ["IMG_1.png: its file is missing from the data directory"]
    assert len(json.loads((tmp_path / "out.json").read_text())["images"]) == 2
    with pytest.raises(SamdashError, match="format"):
        export_project(store, project_id, "voc", tmp_path / "out.zip")


def test_the_cli_exports_a_project_by_name_and_says_what_it_wrote(project, tmp_path, monkeypatch):
    store, project_id, _ = project
    monkeypatch.setenv("SAMDASH_DATA_DIR", str(store.data_dir))
    code, out, err = _run("export", "Survey", "--format", "yolo", "--out", str(tmp_path / "survey.zip"))
    assert code == 0, err
    assert out.startswith(f"{tmp_path / 'survey.zip'}: 3 images, 6 objects; polygons simplified from ")
    assert "3/3 images" in err
    assert len([n for n in zipfile.ZipFile(tmp_path / "survey.zip").namelist() if n.startswith("labels/")]) == 3
    code, out, err = _run("export", "No such project", "--format", "coco", "--out", str(tmp_path / "x.zip"))
    assert code == 2 and err.count("\n") == 1 and "no project 'No such project'" in err
