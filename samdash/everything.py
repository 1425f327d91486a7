"""Segment everything: SAM's automatic mask generator on an image already encoded.

The stock generator encodes the image again; here its predictor takes the
cached embedding instead, so the heavy step is paid once per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam

from samdash.engine import Candidates, Embedding, MaskGeometry
from samdash.prompts import INCLUDE, point_prompt
from samdash.segments import Segment, SegmentState

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EverythingParams:
    """The generator's main knobs, with SAM's defaults."""

    points_per_side: int = 32
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    min_mask_region_area: int = 0
    points_per_batch: int = 64


@dataclass(frozen=True, eq=False)
class FoundMask:
    mask: np.ndarray
    score: float
    point: tuple[float, float]
    bbox: tuple[float, float, float, float]  # x, y, w, h

    def to_segment(self, segment_id: int, source: str) -> Segment:
        """An ordinary object: its prompt is the grid point that found it, so include/exclude points refine it."""
        height, width = self.mask.shape
        prompt = point_prompt(self.point, INCLUDE, width, height)
        logits = np.where(self.mask, np.int8(1), np.int8(-1))[None]
        candidates = Candidates(np.array([self.score]), logits, MaskGeometry((height, width), (height, width)), source=source)
        return Segment.create(segment_id, SegmentState.of(prompt, candidates))


class _EmbeddedPredictor(SamPredictor):
    """A predictor whose ``set_image`` takes the cached embedding of that very image."""

    def __init__(self, model: Sam, embedding: Embedding) -> None:
        super().__init__(model)
        self._embedding = embedding

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        if tuple(image.shape[:2]) != self._embedding.original_size:
            raise ValueError("the cached embedding is of another image")
        self.reset_image()
        self.features = self._embedding.features
        self.original_size = self._embedding.original_size
        self.input_size = self._embedding.input_size
        self.is_image_set = True


class _ReportingGenerator(SamAutomaticMaskGenerator):
    """Calls ``progress(done, total)`` after every batch of point prompts."""

    def __init__(self, model: Sam, embedding: Embedding, params: EverythingParams, progress: Progress | None) -> None:
        super().__init__(
            model,
            points_per_side=params.points_per_side,
            points_per_batch=params.points_per_batch,
            pred_iou_thresh=params.pred_iou_thresh,
            stability_score_thresh=params.stability_score_thresh,
            min_mask_region_area=params.min_mask_region_area,
        )
        self.predictor = _EmbeddedPredictor(model, embedding)
        self._progress = progress
        self._done = 0
        self._total = math.ceil(params.points_per_side**2 / params.points_per_batch)

    def _process_batch(self, *args: Any, **kwargs: Any) -> Any:
        result = super()._process_batch(*args, **kwargs)
        self._done += 1
        if self._progress is not None:
            self._progress(self._done, self._total)
        return result


@torch.inference_mode()
def segment_everything(
    model: Sam,
    image: np.ndarray,
    embedding: Embedding,
    params: EverythingParams = EverythingParams(),
    progress: Progress | None = None,
) -> list[FoundMask]:
    """Every object SAM finds, largest first."""
    records = _ReportingGenerator(model, embedding, params, progress).generate(image)
    records.sort(key=lambda r: r["area"], reverse=True)
    return [
        FoundMask(
            mask=r["segmentation"],
            score=float(r["predicted_iou"]),
            point=tuple(r["point_coords"][0]),
            bbox=tuple(r["bbox"]),
        )
        for r in records
    ]
