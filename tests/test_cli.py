"""``python -m samdash`` end to end: real files in, real files out, exit codes and one-line errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from segment_anything import SamAutomaticMaskGenerator

from samdash import checkpoints
from samdash.cli import main
from samdash.imaging import load_image_file
from samdash.store import Store

ROOT = Path(__file__).resolve().parents[1]
# Every format for two objects that both have area.
ALL_FORMATS_TWO_OBJECTS = [
    "classes.txt", "coco.json", "labels.png", "object-1-cutout.png", "object-1-mask.png",
    "object-2-cutout.png", "object-2-mask.png", "outlined.png", "yolo.txt",
]


def write_photos(folder: Path, count: int, name: str = "img", seed: int = 0) -> Path:
    """``count`` 320×240 PNGs of a dark disc on noise, the disc a little further right in each."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = rng.integers(90, 140, size=(240, 320, 3), dtype=np.uint8)
        cv2.circle(image, (100 + 30 * i if count <= 3 else 90 + 20 * i, 120), 50, (40, 40, 220), -1)
        cv2.imwrite(str(folder / f"{name}{i}.png"), image)
    return folder


@pytest.fixture
def images(tmp_path) -> Path:
    return write_photos(tmp_path / "images", 3)


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_boxes_and_points_on_a_folder(tiny_checkpoint, images, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = _run(
        "segment", str(images), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
        "--box", "40,60,170,180", "--box", "200,20,300,100", "--point", "90,110", "--point", "60,70,0",
        "--out", str(out_dir), "--format", "coco,yolo,png,cutout,overlay",
    )
    assert code == 0, err
    assert "3 of 3 images segmented" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["img0", "img1", "img2"]
    for i in range(3):
        folder = out_dir / f"img{i}"
        assert f"[{i + 1}/3] img{i}.png: 2 objects, 9 files," in out
        assert sorted(p.name for p in folder.iterdir()) == ALL_FORMATS_TWO_OBJECTS
        assert COCO(str(folder / "coco.json")).getAnnIds() == [1, 2]
        assert len((folder / "yolo.txt").read_text().splitlines()) == 2


def test_one_bad_image_in_a_batch_is_reported_and_the_rest_done(tiny_checkpoint, images, tmp_path):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out_dir = tmp_path / "out"
    code, out, err = _run(
        "segment", str(images), "--checkpoint", str(tiny_checkpoint), "--box", "40,60,170,180", "--out", str(out_dir)
    )
    assert code == 1
    assert err.count("\n") == 1 and "broken.png" in err and "Traceback" not in err
    assert "3 of 4 images segmented" in out and "failed: broken.png" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["img0", "img1", "img2"]


def test_images_over_the_pixel_limit_are_refused_and_the_rest_done(tiny_checkpoint, images, tmp_path, monkeypatch):
    big = images / "big.png"
    cv2.imwrite(str(big), np.full((300, 400, 3), 120, np.uint8))  # 120,000 pixels; the others have 76,800
    monkeypatch.setenv("SAMDASH_MAX_IMAGE_PIXELS", "100000")
    out_dir = tmp_path / "out"
    code, out, err = _run(
        "segment", str(big), str(images / "img0.png"), "--checkpoint", str(tiny_checkpoint), "--box", "40,60,170,180",
        "--out", str(out_dir), "--format", "png",
    )
    assert code == 1
    assert err == (
        f"samdash: error: {big}: big.png has 120,000 pixels, over the limit of 100,000; "
        "shrink it first or raise SAMDASH_MAX_IMAGE_PIXELS.\n"
    )
    assert "1 of 2 images segmented" in out and "failed: big.png" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["img0"]
    assert sorted(p.name for p in (out_dir / "img0").iterdir()) == ["labels.png", "object-1-mask.png"]


def test_a_box_outside_the_image_names_the_file(tiny_checkpoint, images, tmp_path):
    code, _, err = _run(
        "segment", str(images / "img0.png"), "--checkpoint", str(tiny_checkpoint), "--box", "500,500,600,600", "--out", str(tmp_path)
    )
    assert code == 1 and "img0.png" in err and "no area" in err


def test_a_missing_checkpoint_is_one_clear_line(images, tmp_path, monkeypatch):
    monkeypatch.delenv("SAMDASH_CHECKPOINT", raising=False)
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path / "none"))
    code, _, err = _run("segment", str(images), "--box", "1,1,50,50", "--out", str(tmp_path / "o"))
    assert code == 2
    assert err.strip().count("\n") == 0 and "sam_vit_b_01ec64.pth" in err


def test_fallback_when_asked(images, tmp_path, monkeypatch):
    monkeypatch.delenv("SAMDASH_CHECKPOINT", raising=False)
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path / "none"))
    code, out, _ = _run(
        "segment", str(images / "img0.png"), "--allow-fallback", "--box", "40,60,170,180", "--out", str(tmp_path / "o"),
        "--format", "png",
    )
    assert code == 0 and "GrabCut" in out
    folder = tmp_path / "o" / "img0"
    assert sorted(p.name for p in folder.iterdir()) == ["labels.png", "object-1-mask.png"]
    mask = cv2.imread(str(folder / "object-1-mask.png"), cv2.IMREAD_GRAYSCALE)
    truth = np.zeros_like(mask)
    cv2.circle(truth, (100, 120), 50, 255, -1)
    assert ((mask > 0) & (truth > 0)).sum() / ((mask > 0) | (truth > 0)).sum() > 0.9


def test_everything_makes_objects(tiny_sam, tiny_checkpoint, images, tmp_path, monkeypatch):
    # The stock encoder, so the CLI computes exactly what the reference below computes.
    monkeypatch.setenv("SAMDASH_ENCODER_BACKEND", "eager")
    code, out, err = _run(
        "segment", str(images / "img1.png"), "--checkpoint", str(tiny_checkpoint), "--everything", "--points-per-side", "4",
        "--pred-iou-thresh", "0", "--stability-thresh", "0",
        "--out", str(tmp_path / "o"), "--format", "coco",
    )
    assert code == 0, err
    # The tiny checkpoint holds tiny_sam's weights: the stock generator with the same settings is the reference.
    stock = SamAutomaticMaskGenerator(tiny_sam, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
    expected = len(stock.generate(load_image_file(images / "img1.png").rgb))
    assert expected > 0
    assert f"[1/1] img1.png: {expected} objects, 1 files," in out
    folder = tmp_path / "o" / "img1"
    assert sorted(p.name for p in folder.iterdir()) == ["coco.json"]
    data = json.loads((folder / "coco.json").read_text())
    assert [a["id"] for a in data["annotations"]] == list(range(1, expected + 1))


def test_bad_arguments_exit_non_zero():
    result = subprocess.run(
        [sys.executable, "-m", "samdash", "segment", "x.png", "--box", "1,2,3", "--out", "o"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 2 and "--box X0,Y0,X1,Y1" in result.stderr


def test_download_uses_the_same_code_as_the_page(server, tmp_path, monkeypatch):
    base, behaviour = server
    spec = checkpoints.CATALOGUE["vit_b"]
    payload = b"weights" * 1000
    behaviour.files = {"/mirror/" + spec.filename: payload}
    fake = replace(spec, sha256=hashlib.sha256(payload).hexdigest(), size_bytes=len(payload))
    monkeypatch.setitem(checkpoints.CATALOGUE, "vit_b", fake)
    monkeypatch.setenv("SAMDASH_DOWNLOAD_BASE", base + "/mirror")
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path))
    code, out, err = _run("download", "--model", "vit_b")
    assert code == 0, err
    assert (tmp_path / spec.filename).read_bytes() == payload
    assert "MB" in err and out == f"{spec.filename} is ready at {tmp_path / spec.filename}\n"


def test_a_failed_download_is_one_clear_line(server, tmp_path, monkeypatch):
    base, behaviour = server
    behaviour.files = {}
    monkeypatch.setenv("SAMDASH_DOWNLOAD_BASE", base)
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path))
    code, _, err = _run("download", "--model", "vit_b")
    assert code == 2 and "404" in err.splitlines()[-1] and "Traceback" not in err


def test_segmented_images_are_saved_into_a_project_the_page_opens(tiny_checkpoint, images, tmp_path):
    args = ("segment", str(images), "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--box", "40,60,170,180")
    code, out, err = _run(*args, "--project", "Batch one")
    assert code == 0, err
    store = Store(Path(os.environ["SAMDASH_DATA_DIR"]))
    [project] = store.projects()
    assert project.name == "Batch one" and f"?project={project.id}" in out
    listed = store.images(project.id)
    assert [i.name for i in listed] == ["img0.png", "img1.png", "img2.png"] and [i.objects for i in listed] == [1, 1, 1]
    # The same run again, by id: the images are not added twice, their objects are added after the first ones.
    code, out, err = _run(*args, "--project", project.id)
    assert code == 0, err
    [again] = store.projects()
    assert [i.objects for i in store.images(again.id)] == [2, 2, 2]
    workspace, _ = store.load_workspace(store.images(again.id)[0])
    assert [s.id for s in workspace.segments] == [1, 2] and workspace.segments[0].prompt.box == (40.0, 60.0, 170.0, 180.0)
    code, out, _ = _run("projects")
    assert code == 0 and out.startswith(f"{project.id}\tBatch one\t3 images (0 done)\t6 objects")


def test_a_store_from_a_newer_release_is_one_clear_line(tiny_checkpoint, images, tmp_path):
    data = Path(os.environ["SAMDASH_DATA_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(data / "samdash.db").execute("PRAGMA user_version = 99").connection.close()
    code, out, err = _run("segment", str(images), "--checkpoint", str(tiny_checkpoint), "--box", "40,60,170,180", "--project", "x")
    assert code == 2 and err.count("\n") == 1 and "newer samdash" in err
