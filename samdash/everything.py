"""Segment everything in bounded memory: SAM's automatic mask generator on the cached embedding.

The stock generator encodes the image again and brings every candidate of
every batch of point prompts to full size as float32 logits: 64 points × 3
masks of a 12 MP photo are 9 GB. Here the batches are decoded on the cached
embedding and judged with the stock generator's own filters at a working size
no larger than the image as the model saw it (long side 1024; the image's own
size when that is smaller, where the results are the stock generator's
exactly). Only the masks kept are brought to full size, one at a time, and
run-length encoded at once. Each keeps its low-resolution logits, so a point
that refines it starts from what SAM found.

Memory, whatever the image size: one batch of the decoder (about 28 MB a
point), the working-size logits of a few candidates at a time, the 256×256
logits of the candidates that pass the filters until the box NMS (at most
3 × 256 kB a point), and one full-size mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.amg import (
    MaskData,
    batch_iterator,
    batched_mask_to_box,
    build_point_grid,
    calculate_stability_score,
    remove_small_regions,
)
from segment_anything.utils.transforms import ResizeLongestSide
from torchvision.ops.boxes import batched_nms

from samdash.engine import Candidates, Embedding, MaskGeometry, upscale
from samdash.errors import Cancelled
from samdash.masks import CompactMask
from samdash.prompts import INCLUDE, point_prompt
from samdash.segments import Segment, SegmentState

Progress = Callable[[int, int], None]

# The stock generator's settings that are not exposed: its stability offset and box NMS threshold
# (also the one it applies again after removing small regions).
_STABILITY_OFFSET = 1.0
_BOX_NMS_THRESH = 0.7
# Candidates brought to the working size at once: 16 × (1024² + 1024 × 768) float32 logits are about 110 MB.
_UPSCALE_CHUNK = 16


@dataclass(frozen=True)
class EverythingParams:
    """The generator's main knobs, with SAM's defaults except the batch.

    The decoder holds about 28 MB per point of a batch on the CPU, so the
    stock 64 points add 1.8 GB at the peak; 16 add 0.45 GB for the same time
    per point and the same masks.
    """

    points_per_side: int = 32
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    min_mask_region_area: int = 0
    points_per_batch: int = 16


@dataclass(frozen=True, eq=False)
class FoundMask:
    """One object found, with the low-resolution logits SAM made it from."""

    mask: CompactMask
    logits: np.ndarray  # (256, 256) float32
    score: float
    point: tuple[float, float]  # the grid point that found it, in image px
    bbox: tuple[float, float, float, float]  # x, y, w, h in image px
    geometry: MaskGeometry

    def to_segment(self, segment_id: int, source: str) -> Segment:
        """An ordinary object: a point refining it feeds SAM these logits back, as for a drawn object."""
        height, width = self.geometry.original_size
        prompt = point_prompt(self.point, INCLUDE, width, height)
        candidates = Candidates(np.array([self.score]), self.logits[None], self.geometry, source=source)
        # The picked mask is the one found, which may differ from the logits' own where small regions were removed.
        return Segment.create(segment_id, SegmentState(prompt, candidates, 0, self.mask))


@torch.inference_mode()
def segment_everything(
    model: Sam,
    image: np.ndarray,
    embedding: Embedding,
    params: EverythingParams = EverythingParams(),
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[FoundMask]:
    """Every object SAM finds, largest first.

    ``progress(done, total)`` follows the batches of point prompts; when
    ``cancelled()`` says so (asked between batches and between full-size
    masks), ``Cancelled`` is raised and nothing is returned.
    """
    if tuple(image.shape[:2]) != embedding.original_size:
        raise ValueError("the cached embedding is of another image")
    stop = cancelled or (lambda: False)
    geometry = MaskGeometry(embedding.original_size, embedding.input_size, model.image_encoder.img_size)
    height, width = embedding.original_size
    points = build_point_grid(params.points_per_side) * np.array([[width, height]])
    total = math.ceil(len(points) / params.points_per_batch)
    data = MaskData()
    for done, (batch,) in enumerate(batch_iterator(params.points_per_batch, points), start=1):
        if stop():
            raise Cancelled()
        data.cat(_judged(model, embedding, batch, params))
        if progress is not None:
            progress(done, total)
    # One crop covers the whole image, so the stock generator's filter of masks touching a crop's edge keeps them all.
    data.filter(_nms(data["boxes"], data["iou_preds"]))

    found, unchanged, boxes = [], [], []
    for logits, score, point in zip(data["logits"], data["iou_preds"].tolist(), data["points"].tolist()):
        if stop():
            raise Cancelled()
        logits = logits.cpu().numpy()
        mask = upscale(logits, geometry)
        if params.min_mask_region_area > 0:
            mask, holes = remove_small_regions(mask, params.min_mask_region_area, mode="holes")
            mask, islands = remove_small_regions(mask, params.min_mask_region_area, mode="islands")
            unchanged.append(float(not (holes or islands)))
            boxes.append(batched_mask_to_box(torch.from_numpy(mask)))
        compact = CompactMask.encode(mask)
        del mask  # one full-size mask at a time
        found.append(FoundMask(compact, logits.copy(), score, tuple(point), compact.bbox, geometry))
    if params.min_mask_region_area > 0 and found:
        # As the stock generator does: drop new duplicates, preferring masks that needed no cleaning.
        found = [found[i] for i in _nms(torch.stack(boxes), torch.tensor(unchanged)).tolist()]
    return sorted(found, key=lambda item: item.mask.area, reverse=True)


def _nms(boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Indices of the boxes kept by the stock generator's box NMS, best score first."""
    return batched_nms(boxes.float(), scores, torch.zeros(len(boxes), device=boxes.device), iou_threshold=_BOX_NMS_THRESH)


def _judged(model: Sam, embedding: Embedding, points: np.ndarray, params: EverythingParams) -> MaskData:
    """One batch of point prompts decoded and filtered as the stock generator does, at the working size.

    Returns the candidates kept with their low-resolution logits, scores,
    points, stability scores and boxes (in working-size pixels).
    """
    original, model_input = embedding.original_size, embedding.input_size
    working = original if max(original) <= max(model_input) else model_input
    device = embedding.features.device
    coords = ResizeLongestSide(model.image_encoder.img_size).apply_coords(points, original)
    coords = torch.as_tensor(coords, device=device)
    labels = torch.ones(len(coords), dtype=torch.int, device=device)
    sparse, dense = model.prompt_encoder(points=(coords[:, None, :], labels[:, None]), boxes=None, masks=None)
    low_res, iou_preds = model.mask_decoder(
        image_embeddings=embedding.features,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )
    data = MaskData(
        logits=low_res.flatten(0, 1),
        iou_preds=iou_preds.flatten(0, 1),
        points=torch.as_tensor(points.repeat(low_res.shape[1], axis=0), device=device),
    )
    if params.pred_iou_thresh > 0.0:
        data.filter(data["iou_preds"] > params.pred_iou_thresh)
    stability, boxes = [torch.zeros(0, device=device)], [torch.zeros(0, 4, dtype=torch.long, device=device)]
    for (logits,) in batch_iterator(_UPSCALE_CHUNK, data["logits"]):
        masks = model.postprocess_masks(logits[:, None], model_input, working)[:, 0]
        stability.append(calculate_stability_score(masks, model.mask_threshold, _STABILITY_OFFSET))
        boxes.append(batched_mask_to_box(masks > model.mask_threshold))
    data["stability_score"] = torch.cat(stability)
    data["boxes"] = torch.cat(boxes)
    if params.stability_score_thresh > 0.0:
        data.filter(data["stability_score"] >= params.stability_score_thresh)
    # One tensor per candidate: batches are joined without copying every earlier candidate's logits again.
    data["logits"] = list(data["logits"])
    return data
