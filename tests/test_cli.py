"""``python -m samdash`` end to end: real files in, real files out, exit codes and one-line errors."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from samdash import models
from samdash.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        image = rng.integers(90, 140, size=(240, 320, 3), dtype=np.uint8)
        cv2.circle(image, (100 + 30 * i, 120), 50, (40, 40, 220), -1)
        cv2.imwrite(str(folder / f"img{i}.png"), image)
    return folder


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
    for i in range(3):
        folder = out_dir / f"img{i}"
        coco = COCO(str(next(folder.glob("*coco*.json"))))
        assert len(coco.getAnnIds()) == 2
        assert (folder / "object-1-mask.png").exists() or any(folder.glob("*object*1*mask*.png"))


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
    mask = cv2.imread(str(next((tmp_path / "o" / "img0").glob("*mask*.png"))), cv2.IMREAD_GRAYSCALE)
    truth = np.zeros_like(mask)
    cv2.circle(truth, (100, 120), 50, 255, -1)
    assert ((mask > 0) & (truth > 0)).sum() / ((mask > 0) | (truth > 0)).sum() > 0.9


def test_everything_makes_objects(tiny_checkpoint, images, tmp_path):
    code, out, err = _run(
        "segment", str(images / "img1.png"), "--checkpoint", str(tiny_checkpoint), "--everything", "--points-per-side", "4",
        "--pred-iou-thresh", "0", "--stability-thresh", "0",
        "--out", str(tmp_path / "o"), "--format", "coco",
    )
    assert code == 0, err
    data = json.loads(next((tmp_path / "o" / "img1").glob("*coco*.json")).read_text())
    assert len(data["annotations"]) >= 1


def test_bad_arguments_exit_non_zero():
    result = subprocess.run(
        [sys.executable, "-m", "samdash", "segment", "x.png", "--box", "1,2,3", "--out", "o"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 2 and "--box X0,Y0,X1,Y1" in result.stderr


def test_download_uses_the_same_code_as_the_page(server, tmp_path, monkeypatch):
    base, behaviour = server
    spec = models.CATALOGUE["vit_b"]
    payload = b"weights" * 1000
    behaviour.files = {"/mirror/" + spec.filename: payload}
    fake = replace(spec, sha256=hashlib.sha256(payload).hexdigest(), size_bytes=len(payload))
    monkeypatch.setitem(models.CATALOGUE, "vit_b", fake)
    monkeypatch.setenv("SAMDASH_DOWNLOAD_BASE", base + "/mirror")
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path))
    code, out, err = _run("download", "--model", "vit_b")
    assert code == 0, err
    assert (tmp_path / spec.filename).read_bytes() == payload
    assert "MB" in err and "ready" in out


def test_a_failed_download_is_one_clear_line(server, tmp_path, monkeypatch):
    base, behaviour = server
    behaviour.files = {}
    monkeypatch.setenv("SAMDASH_DOWNLOAD_BASE", base)
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path))
    code, _, err = _run("download", "--model", "vit_b")
    assert code == 2 and "404" in err.splitlines()[-1] and "Traceback" not in err
