"""GrabCut behind the :class:`~samdash.engine.Segmenter` interface: the offline
fallback when no SAM checkpoint is at hand.

GrabCut has no learned encoder, so "embedding" an image only keeps a working
copy small enough (longest side ≤ 640 px) for a graph cut to answer a prompt
in well under a second even on a 12 MP photo. Each prediction returns ±1
logits at that working size (kept as bits); fed back as ``mask_input`` they seed the next
cut of the same object, the way SAM's own low-resolution logits do.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from samdash.engine import Candidates, Embedding, EmbeddingCache, MaskGeometry
from samdash.errors import PromptError
from samdash.prompts import INCLUDE, Prompt

# Longest side of the working copy: large enough for a usable outline, small enough to stay interactive.
WORK_SIDE = 640
_ITERATIONS = 5
# Include/exclude points become disks of this share of the working copy's longest side.
_POINT_RADIUS_RATIO = 0.01
# A prompt without a box looks for the object in a window this share of the longest side around its points.
_WINDOW_RATIO = 0.3
# The cut only sees the probable region plus this share of its size around it: the background model
# stays local to the object, and a small object costs a small cut.
_CONTEXT_RATIO = 0.3
_MIN_CONTEXT = 16
# Largest colour difference (per BGR channel, after a median blur) from an exclude point within the patch it rejects.
_EXCLUDE_TOLERANCE = 24
# Kernel of the smoothed candidate, as a share of the longest side.
_SMOOTH_RATIO = 0.012


class GrabCutEngine:
    """OpenCV's GrabCut, prompted by boxes, points, regions and its own previous result."""

    name = "GrabCut (offline fallback)"
    is_fallback = True
    cache_id = f"grabcut:{WORK_SIDE}"

    def __init__(self, cache: EmbeddingCache) -> None:
        self.cache = cache

    def embed(self, image: np.ndarray, content_hash: str) -> Embedding:
        key = (self.cache_id, content_hash)
        return self.cache.get_or_compute(key, lambda: self._encode(image, key))

    def stored(self, content_hash: str) -> Embedding | None:
        """None: a working copy is made in milliseconds, not worth a disk."""
        return None

    def _encode(self, image: np.ndarray, key: tuple[str, str]) -> Embedding:
        start = time.perf_counter()
        height, width = image.shape[:2]
        scale = min(1.0, WORK_SIDE / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        return Embedding(
            key=key,
            original_size=(height, width),
            input_size=bgr.shape[:2],
            features=bgr,
            nbytes=bgr.nbytes,
            encode_seconds=time.perf_counter() - start,
        )

    def predict(self, embedding: Embedding, prompt: Prompt) -> Candidates:
        start = time.perf_counter()
        bgr: np.ndarray = embedding.features
        height, width = embedding.input_size
        scale = np.array([width / embedding.original_size[1], height / embedding.original_size[0]])
        points = np.clip(np.asarray(prompt.points, np.float64).reshape(-1, 2) * scale, 0, [width - 1, height - 1])
        labels = np.asarray(prompt.labels)
        previous = _previous_foreground(prompt.mask_input, (height, width))

        radius = max(2, round(_POINT_RADIUS_RATIO * max(height, width)))
        init = _initial_labels(prompt.box, scale, points, labels, previous, (height, width))
        _spread_excludes(bgr, init, points[labels != INCLUDE])
        _draw_points(init, points, labels, radius)
        foreground = _cut(bgr, init, radius)
        seeds = _seed_pixels(prompt.box, scale, points[labels == INCLUDE], (height, width))
        candidates = _candidates(foreground, init == cv2.GC_BGD, seeds, max(height, width))
        return Candidates(
            scores=np.full(len(candidates), np.nan, np.float32),
            # In or out at the working size, read as ±1: interpolated before thresholding they give a smooth outline.
            logits=candidates,
            geometry=MaskGeometry(embedding.original_size, (height, width)),
            decode_seconds=time.perf_counter() - start,
            source=self.cache_id,
        )


def _previous_foreground(mask_input: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """The object as this engine last predicted it, from logits of shape (h, w) or (1, h, w) at the working size."""
    if mask_input is None:
        return None
    mask_input = np.asarray(mask_input)
    if mask_input.size != size[0] * size[1]:
        raise PromptError(
            f"The previous mask ({'×'.join(map(str, mask_input.shape))}) does not come from the GrabCut engine "
            f"for this image ({size[1]}×{size[0]}): start the object again with a box or a point."
        )
    return mask_input.reshape(size) > 0


def _initial_labels(
    box: tuple[float, float, float, float] | None,
    scale: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    previous: np.ndarray | None,
    size: tuple[int, int],
) -> np.ndarray:
    """GrabCut's starting labels at the working size.

    A box is a hard limit: outside it is background. Without one nothing is
    certain, so the rest of the image is only probable background and an
    object larger than the window around a click can still grow to its edges.
    """
    height, width = size
    if box is not None:
        init = np.full(size, cv2.GC_BGD, np.uint8)
        x0, y0 = np.floor(np.array(box[:2]) * scale).astype(int)
        x1, y1 = np.ceil(np.array(box[2:]) * scale).astype(int)
        inside = np.s_[y0 : max(y0 + 1, y1), x0 : max(x0 + 1, x1)]
        init[inside] = cv2.GC_PR_FGD
        if previous is not None:
            init[inside][~previous[inside]] = cv2.GC_PR_BGD
    else:
        init = np.full(size, cv2.GC_PR_BGD, np.uint8)
        includes = points[labels == INCLUDE]
        if previous is not None and previous.any():
            init[previous] = cv2.GC_PR_FGD
        elif len(includes):
            half = _WINDOW_RATIO * max(height, width) / 2
            x0, y0 = np.floor(includes.min(axis=0) - half).astype(int)
            x1, y1 = np.ceil(includes.max(axis=0) + half).astype(int) + 1
            init[max(0, y0) : y1, max(0, x0) : x1] = cv2.GC_PR_FGD
    return init


def _spread_excludes(bgr: np.ndarray, init: np.ndarray, excludes: np.ndarray) -> None:
    """Mark the uniform patch under each exclude point as probable background.

    An exclude point means "that thing is not the object", but a small disk of
    background barely moves GrabCut's colour models when the thing fills a
    large part of the box; the patch of similar colour around the point does.
    """
    if not len(excludes):
        return
    smooth = cv2.medianBlur(bgr, 5)
    tolerance = (_EXCLUDE_TOLERANCE,) * 3
    flags = 8 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    for x, y in excludes:
        patch = np.zeros((init.shape[0] + 2, init.shape[1] + 2), np.uint8)
        cv2.floodFill(smooth, patch, (int(x), int(y)), 0, tolerance, tolerance, flags)
        # Grow the patch over its rim, whose pixels blend both colours and would otherwise stay a thin ring.
        patch = cv2.dilate(patch, np.ones((5, 5), np.uint8))
        init[(patch[1:-1, 1:-1] > 0) & (init != cv2.GC_BGD)] = cv2.GC_PR_BGD


def _draw_points(init: np.ndarray, points: np.ndarray, labels: np.ndarray, radius: int) -> None:
    """Points are the user's certain word: drawn last, over every other label."""
    for (x, y), label in zip(points, labels):
        cv2.circle(init, (int(x), int(y)), radius, cv2.GC_FGD if label == INCLUDE else cv2.GC_BGD, thickness=-1)


def _cut(bgr: np.ndarray, init: np.ndarray, radius: int) -> np.ndarray:
    """Run GrabCut on the part of the image around the uncertain pixels; the rest keeps its given label."""
    if not np.isin(init, (cv2.GC_FGD, cv2.GC_PR_FGD)).any():
        raise PromptError(
            "The exclude points leave nothing that could be the object: "
            "add an include point on it or draw a box around it."
        )
    if not np.isin(init, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
        # A box over the whole image leaves no background to learn from: take the image border as probable background.
        border = np.ones(init.shape, bool)
        border[1:-1, 1:-1] = False
        init[border & (init != cv2.GC_FGD)] = cv2.GC_PR_BGD
        if not (init == cv2.GC_PR_BGD).any():
            raise PromptError("Include points cover the whole image: leave some of it as background.")
    ys, xs = np.nonzero(init != cv2.GC_BGD)
    margin = max(_MIN_CONTEXT, radius, round(_CONTEXT_RATIO * max(np.ptp(ys) + 1, np.ptp(xs) + 1)))
    y0, y1 = max(0, ys.min() - margin), min(init.shape[0], ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(init.shape[1], xs.max() + margin + 1)
    mask = np.ascontiguousarray(init[y0:y1, x0:x1])
    # OpenCV's random generator is per thread: seeding it here makes the cut repeatable without shared state.
    cv2.setRNGSeed(0)
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(bgr[y0:y1, x0:x1]), mask, None, *models, _ITERATIONS, cv2.GC_INIT_WITH_MASK)
    foreground = np.zeros(init.shape, bool)
    foreground[y0:y1, x0:x1] = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return foreground


def _seed_pixels(
    box: tuple[float, float, float, float] | None, scale: np.ndarray, includes: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """(x, y) working pixels that belong to the object the user meant: the include points, else the box centre."""
    if len(includes):
        seeds = includes
    elif box is not None:
        seeds = ((np.array(box[:2]) + np.array(box[2:])) / 2 * scale)[None]
    else:
        return np.zeros((0, 2), int)
    seeds = np.floor(seeds).astype(int)
    return np.clip(seeds, 0, [size[1] - 1, size[0] - 1])


def _candidates(foreground: np.ndarray, certain_bg: np.ndarray, seeds: np.ndarray, side: int) -> np.ndarray:
    """Distinct masks, likeliest first: the object at the seeds with its holes filled, a smoothed outline, the raw cut.

    Pixels the prompt made certain background (outside the box, under exclude points) stay out of every candidate.
    """
    count, components = cv2.connectedComponents(foreground.astype(np.uint8), connectivity=8)
    chosen = {components[y, x] for x, y in seeds} - {0}
    if not chosen and count > 1:
        areas = np.bincount(components.ravel(), minlength=count)
        chosen = {int(np.argmax(areas[1:])) + 1}
    obj = _fill_holes(np.isin(components, list(chosen)), certain_bg)
    size = max(3, round(_SMOOTH_RATIO * side) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    smooth = cv2.morphologyEx(obj.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    smooth = cv2.morphologyEx(smooth, cv2.MORPH_CLOSE, kernel).astype(bool) & ~certain_bg
    distinct: list[np.ndarray] = []
    for mask in (obj, smooth, foreground):
        if not any(np.array_equal(mask, seen) for seen in distinct):
            distinct.append(mask)
    return np.stack(distinct)


def _fill_holes(mask: np.ndarray, certain_bg: np.ndarray) -> np.ndarray:
    """The mask plus every background pocket it encloses, except pockets the user marked as background."""
    _, pockets = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    edges = (pockets[0], pockets[-1], pockets[:, 0], pockets[:, -1], pockets[certain_bg & ~mask])
    return mask | ~np.isin(pockets, np.concatenate(edges))
