"""One check for every fast path: the engine's candidates against a stock predictor's, prompt by prompt."""

from __future__ import annotations

from typing import Any

import numpy as np

from samdash.sam_engine import SamEngine
from samdash.prompts import Prompt, box_prompt, point_prompt


def assert_same_candidates(engine: SamEngine, predictor: Any, image: np.ndarray) -> None:
    """Masks agree to IoU ≥ 0.999 and scores to 1e-3 for a box, a point, and a box with an exclude point.

    ``predictor`` is a ``SamPredictor`` (segment_anything's or MobileSAM's) over the same weights.
    """
    height, width = image.shape[:2]
    prompts = [
        box_prompt((120, 100, 320, 300), width, height),
        point_prompt((480, 360), 1, width, height),
        Prompt(box=(400.0, 280.0, 580.0, 440.0), points=np.array([[100, 50]], np.float32), labels=np.array([0], np.int32)),
    ]
    predictor.set_image(image)
    embedding = engine.embed(image, "agreement")
    for prompt in prompts:
        expected_masks, expected_scores, _ = predictor.predict(
            point_coords=prompt.points if len(prompt.points) else None,
            point_labels=prompt.labels if len(prompt.points) else None,
            box=np.asarray(prompt.box) if prompt.box is not None else None,
        )
        candidates = engine.predict(embedding, prompt)
        np.testing.assert_allclose(candidates.scores, expected_scores, atol=1e-3)
        for index, expected in enumerate(expected_masks):
            actual = candidates.mask(index)
            union = np.logical_or(actual, expected).sum()
            iou = np.logical_and(actual, expected).sum() / union if union else 1.0
            assert iou >= 0.999, f"mask {index}: IoU {iou:.5f}"
