from __future__ import annotations

import numpy as np
from segment_anything import SamAutomaticMaskGenerator

from samdash.everything import EverythingParams, segment_everything

# Low thresholds so a random tiny model still yields masks to compare.
PARAMS = EverythingParams(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, points_per_batch=16)


def test_same_masks_as_the_stock_generator_without_a_second_encode(tiny_sam, tiny_engine, scene):
    embedding = tiny_engine.embed(scene, "scene")
    calls = []
    found = segment_everything(tiny_sam, scene, embedding, PARAMS, progress=lambda done, total: calls.append((done, total)))
    assert tiny_engine.encoder_calls == 1
    assert calls[-1] == (4, 4) and [c[0] for c in calls] == [1, 2, 3, 4]

    stock = SamAutomaticMaskGenerator(
        tiny_sam, points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, points_per_batch=16
    ).generate(scene)
    assert len(found) == len(stock) > 0
    stock.sort(key=lambda r: r["area"], reverse=True)
    ours = sorted(found, key=lambda f: (f.mask.sum(), f.score), reverse=True)
    theirs = sorted(stock, key=lambda r: (r["area"], r["predicted_iou"]), reverse=True)
    for mine, ref in zip(ours, theirs):
        np.testing.assert_array_equal(mine.mask, ref["segmentation"])
        assert abs(mine.score - ref["predicted_iou"]) < 1e-5
    assert [f.mask.sum() for f in found] == sorted((f.mask.sum() for f in found), reverse=True)
