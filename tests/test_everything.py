"""Segment everything against SAM's stock generator, its memory at 12 MP, cancellation, and refining what it finds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from segment_anything import SamAutomaticMaskGenerator

from samdash.engine import EmbeddingCache

from samdash.sam_engine import SamEngine
from samdash.errors import Cancelled
from samdash.everything import EverythingParams, FoundMask, segment_everything
from samdash.prompts import EXCLUDE, INCLUDE, Prompt
from tests.tiny_sam import with_disc_decoder

ROOT = Path(__file__).resolve().parents[1]
# Low thresholds so a random tiny model still yields masks to compare.
PARAMS = EverythingParams(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, points_per_batch=16)


@pytest.fixture(scope="module")
def disc_engine(tiny_sam) -> SamEngine:
    """The tiny SAM's encoder with a decoder that draws discs: many distinct masks, so every filter matters."""
    return SamEngine(with_disc_decoder(tiny_sam), "discs", EmbeddingCache(64 << 20))


def _noise(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(1).integers(90, 140, size=(height, width, 3), dtype=np.uint8)


def _stock(engine: SamEngine, image: np.ndarray, params: EverythingParams) -> list[dict]:
    return SamAutomaticMaskGenerator(
        engine.model,
        points_per_side=params.points_per_side,
        points_per_batch=params.points_per_batch,
        pred_iou_thresh=params.pred_iou_thresh,
        stability_score_thresh=params.stability_score_thresh,
        min_mask_region_area=params.min_mask_region_area,
    ).generate(image)


def _matched(found: list[FoundMask], stock: list[dict]) -> list[tuple[FoundMask, dict]]:
    """Both lists in one order (area, score, point), checked to hold the same objects by count, score and point."""
    assert len(found) == len(stock) > 0
    ours = sorted(found, key=lambda f: (f.mask.area, f.score, f.point), reverse=True)
    theirs = sorted(stock, key=lambda r: (r["area"], r["predicted_iou"], tuple(r["point_coords"][0])), reverse=True)
    for mine, ref in zip(ours, theirs):
        assert abs(mine.score - ref["predicted_iou"]) < 1e-5
        assert mine.point == pytest.approx(tuple(ref["point_coords"][0]))
    return list(zip(ours, theirs))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_the_tiny_sam_finds_what_the_stock_generator_finds_without_a_second_encode(tiny_sam, tiny_engine, scene):
    embedding = tiny_engine.embed(scene, "scene")
    calls = []
    found = segment_everything(tiny_sam, scene, embedding, PARAMS, progress=lambda done, total: calls.append((done, total)))
    assert tiny_engine.encoder_calls == 1
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for mine, ref in _matched(found, _stock(tiny_engine, scene, PARAMS)):
        np.testing.assert_array_equal(mine.mask.decode(), ref["segmentation"])
    assert [f.mask.area for f in found] == sorted((f.mask.area for f in found), reverse=True)


@pytest.mark.parametrize(
    "size, params",
    [
        ((480, 640), PARAMS),
        ((480, 640), EverythingParams(8, 0.3, 0.5, min_mask_region_area=100, points_per_batch=16)),
        ((750, 1000), EverythingParams(8, 0.3, 0.6, min_mask_region_area=300, points_per_batch=16)),
    ],
)
def test_on_images_no_larger_than_the_model_input_the_objects_are_the_stock_generators_exactly(disc_engine, size, params):
    image = _noise(*size)
    found = segment_everything(disc_engine.model, image, disc_engine.embed(image, str(size)), params)
    for mine, ref in _matched(found, _stock(disc_engine, image, params)):
        np.testing.assert_array_equal(mine.mask.decode(), ref["segmentation"])
        assert mine.bbox == mine.mask.bbox and mine.logits.shape == (256, 256) and mine.logits.dtype == np.float32


def test_on_larger_images_masks_judged_at_the_model_input_size_match_the_stock_generators(disc_engine):
    image = _noise(1200, 1600)  # the model saw it at 768×1024
    params = EverythingParams(8, 0.3, 0.6, min_mask_region_area=500, points_per_batch=16)
    found = segment_everything(disc_engine.model, image, disc_engine.embed(image, "1600"), params)
    for mine, ref in _matched(found, _stock(disc_engine, image, params)):
        assert _iou(mine.mask.decode(), ref["segmentation"]) >= 0.99


_MEMORY = """
import json, resource
import numpy as np
from samdash.engine import EmbeddingCache
from samdash.sam_engine import SamEngine
from samdash.everything import EverythingParams, segment_everything
from tests.tiny_sam import build_tiny_sam, with_disc_decoder

engine = SamEngine(build_tiny_sam(), "tiny", EmbeddingCache(1 << 30))
discs = with_disc_decoder(engine.model)
images = {size: np.random.default_rng(0).integers(0, 255, size=(*size, 3), dtype=np.uint8) for size in [(768, 1024), (3000, 4000)]}
embeddings = {size: engine.embed(image, str(size)) for size, image in images.items()}
report = {"encoded_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
for size, image in images.items():  # smallest first: the high-water mark can only rise with what grows with the image
    found = segment_everything(engine.model, image, embeddings[size], EverythingParams(4, 0.0, 0.0, points_per_batch=16))
    found += segment_everything(discs, image, embeddings[size], EverythingParams(8, 0.8, 0.9, points_per_batch=16))
    report[size[1]] = {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "found": len(found)}
print(json.dumps(report))
"""


def test_a_12_mp_image_needs_no_more_memory_than_a_small_one():
    # The stock generator holds a batch of points × 3 candidates as full-size float32: 16 points are 2.3 GB at 12 MP.
    done = subprocess.run([sys.executable, "-c", _MEMORY], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    encoded, small, large = report.values()
    assert large["found"] >= 10, report  # masks were brought to 12 MP, one at a time
    # What grows with the image: a few full-size masks (the one being made, and some in the shared decode cache).
    assert large["peak_mb"] - small["peak_mb"] < 300, report
    # Beyond the interpreter, torch, the model and the two encodes (about 1.2 GB here), whatever the image size.
    assert large["peak_mb"] - encoded < 500, report


def test_a_cancelled_run_stops_between_batches_and_returns_nothing(tiny_sam, tiny_engine, scene):
    calls = []
    with pytest.raises(Cancelled, match="no objects were added"):
        segment_everything(
            tiny_sam,
            scene,
            tiny_engine.embed(scene, "scene"),
            PARAMS,
            progress=lambda done, total: calls.append((done, total)),
            cancelled=lambda: len(calls) >= 2,
        )
    assert calls == [(1, 4), (2, 4)]


def test_a_point_on_a_found_object_refines_it_from_its_own_logits(disc_engine):
    image = _noise(480, 640)
    embedding = disc_engine.embed(image, "refine")
    found = segment_everything(disc_engine.model, image, embedding, EverythingParams(8, 0.5, 0.8, points_per_batch=16))
    item = found[0]
    segment = item.to_segment(7, disc_engine.cache_id)
    assert segment.candidates.logits.shape == (1, 256, 256) and segment.compact_mask is item.mask
    assert segment.candidates.geometry == disc_engine.geometry(embedding) and segment.candidates.source == disc_engine.cache_id
    segment.name, segment.color = "plate", (1, 2, 3)

    point = (item.point[0] + 3.0, item.point[1] + 2.0)
    segment.refine(disc_engine, embedding, point, EXCLUDE)

    prompt = Prompt(
        points=np.array([item.point, point], np.float32), labels=np.array([INCLUDE, EXCLUDE], np.int32), mask_input=item.logits[None]
    )
    expected = disc_engine.predict(embedding, prompt)
    np.testing.assert_array_equal(segment.candidates.logits, expected.logits)
    assert segment.prompt.labels.tolist() == [INCLUDE, EXCLUDE] and (segment.name, segment.color) == ("plate", (1, 2, 3))


def _islands(mask: np.ndarray) -> np.ndarray:
    """Pixel counts of the mask's 8-connected regions."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return stats[1:count, cv2.CC_STAT_AREA]


def test_small_islands_are_removed_at_full_size(disc_engine):
    image = _noise(1200, 1600)  # judged at 768×1024, cleaned at 1200×1600
    embedding = disc_engine.embed(image, "islands")
    raw = segment_everything(disc_engine.model, image, embedding, EverythingParams(8, 0.5, 0.8))
    assert any(_islands(f.mask.decode()).min() < 500 for f in raw)  # each disc has an island of ~280 px
    cleaned = segment_everything(disc_engine.model, image, embedding, EverythingParams(8, 0.5, 0.8, min_mask_region_area=500))
    assert cleaned
    for item in cleaned:
        islands = _islands(item.mask.decode())
        assert len(islands) == 1 or islands.min() >= 500
        assert item.bbox == item.mask.bbox
