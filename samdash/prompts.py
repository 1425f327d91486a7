"""Prompts for the segmentation engines, and the geometry that turns drawn
shapes (in image pixels) into them.

A freehand region is never handed to SAM as ``mask_input``: SAM only
understands its own low-resolution logits there, so a region becomes its
bounding box plus include points sampled well inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from samdash.errors import PromptError

INCLUDE = 1
EXCLUDE = 0

# A stroke whose ends are closer than this share of its extent counts as closed.
_CLOSED_GAP_RATIO = 0.2
# At most this many include points stand for a drawn region or an open stroke.
_REGION_POINTS = 3
_STROKE_POINTS = 6


@dataclass(frozen=True, eq=False)
class Prompt:
    """What the user asked for, in image pixels (x right, y down).

    ``mask_input`` is the engine's own low-resolution logits from an earlier
    prediction of the same object, used to refine it.
    """

    box: tuple[float, float, float, float] | None = None
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    mask_input: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.box is None and len(self.points) == 0:
            raise PromptError("A prompt needs a box or at least one point.")
        if len(self.points) != len(self.labels):
            raise PromptError("Every point needs a label (include or exclude).")
        if len(self.labels) and not np.any(self.labels == INCLUDE) and self.box is None and self.mask_input is None:
            raise PromptError("Exclude points alone say what is not the object: add a box, a region or an include point.")

    def refined(self, point: tuple[float, float], label: int, mask_input: np.ndarray | None) -> "Prompt":
        """The same object with one more point and the previous prediction's logits."""
        points = np.vstack([self.points, np.asarray(point, np.float32)[None]])
        labels = np.append(self.labels, np.int32(label)).astype(np.int32)
        return replace(self, points=points, labels=labels, mask_input=mask_input)

    def without_mask_input(self) -> "Prompt":
        """The prompt as an object keeps it: the mask input is the previous prediction, which history holds."""
        return self if self.mask_input is None else replace(self, mask_input=None)


def clip_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[float, float, float, float]:
    """Order the corners and keep the box inside the image."""
    x0, y0, x1, y1 = box
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    return (
        float(np.clip(x0, 0, width)),
        float(np.clip(y0, 0, height)),
        float(np.clip(x1, 0, width)),
        float(np.clip(y1, 0, height)),
    )


def box_prompt(box: tuple[float, float, float, float], width: int, height: int) -> Prompt:
    x0, y0, x1, y1 = clip_box(box, width, height)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise PromptError(
            f"The box ({box[0]:.0f}, {box[1]:.0f}) – ({box[2]:.0f}, {box[3]:.0f}) has no area inside the "
            f"{width}×{height} image: drag out a larger box."
        )
    return Prompt(box=(x0, y0, x1, y1))


def inside(point: tuple[float, float], width: int, height: int) -> tuple[float, float]:
    """The point itself, or a ``PromptError`` when it is off the image."""
    x, y = float(point[0]), float(point[1])
    if not (0 <= x < width and 0 <= y < height):
        raise PromptError(f"The point ({x:.0f}, {y:.0f}) lies outside the {width}×{height} image.")
    return x, y


def point_prompt(point: tuple[float, float], label: int, width: int, height: int) -> Prompt:
    return Prompt(points=np.array([inside(point, width, height)], np.float32), labels=np.array([label], np.int32))


def is_closed(polyline: np.ndarray) -> bool:
    """A freehand stroke is a region when it ends near where it began."""
    if len(polyline) < 3:
        return False
    extent = float(np.linalg.norm(polyline.max(axis=0) - polyline.min(axis=0)))
    gap = float(np.linalg.norm(polyline[-1] - polyline[0]))
    return extent > 0 and gap <= _CLOSED_GAP_RATIO * extent


def region_prompt(polygon: np.ndarray, width: int, height: int) -> Prompt:
    """Bounding box plus include points deep inside the region.

    Points are picked greedily on the distance transform, so they sit far from
    the drawn edge (where the user's hand is least precise) and from each other.
    """
    polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
    box = box_prompt((*polygon.min(axis=0), *polygon.max(axis=0)), width, height).box
    assert box is not None
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    # Rasterise on a grid of at most ~256 px so huge images stay cheap.
    step = max(1.0, max(x1 - x0, y1 - y0) / 256.0)
    grid_w = max(1, int(np.ceil((x1 - x0) / step)))
    grid_h = max(1, int(np.ceil((y1 - y0) / step)))
    inside = np.zeros((grid_h + 2, grid_w + 2), np.uint8)
    grid_poly = np.round((polygon - (x0, y0)) / step).astype(np.int32) + 1
    cv2.fillPoly(inside, [grid_poly], 1)
    distance = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    if distance.max() <= 0:
        raise PromptError("The drawn region encloses no area: draw a loop around the object.")
    points = _spread_points(distance, _REGION_POINTS)
    points = (points - 1) * step + (x0, y0)
    points[:, 0] = np.clip(points[:, 0], 0, width - 1)
    points[:, 1] = np.clip(points[:, 1], 0, height - 1)
    return Prompt(box=box, points=points.astype(np.float32), labels=np.full(len(points), INCLUDE, np.int32))


def _spread_points(distance: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` (x, y) points, each maximising its depth and its distance to those chosen."""
    ys, xs = np.nonzero(distance > 0)
    depth = distance[ys, xs]
    coords = np.stack([xs, ys], axis=1).astype(np.float64)
    chosen = [int(np.argmax(depth))]
    nearest = np.linalg.norm(coords - coords[chosen[0]], axis=1)
    min_depth = 0.5 * depth[chosen[0]]
    for _ in range(count - 1):
        score = np.where(depth >= min_depth, np.minimum(depth, nearest), 0)
        best = int(np.argmax(score))
        if score[best] <= 1.0:
            break
        chosen.append(best)
        nearest = np.minimum(nearest, np.linalg.norm(coords - coords[best], axis=1))
    return coords[chosen]


def stroke_prompt(polyline: np.ndarray, width: int, height: int) -> Prompt:
    """Include points spread evenly along an open stroke (e.g. a scribble over the object)."""
    polyline = np.asarray(polyline, np.float64).reshape(-1, 2)
    inside = (polyline[:, 0] >= 0) & (polyline[:, 0] < width) & (polyline[:, 1] >= 0) & (polyline[:, 1] < height)
    polyline = polyline[inside]
    if len(polyline) == 0:
        raise PromptError("The stroke lies outside the image.")
    seg = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(seg)])
    count = 1 if along[-1] == 0 else _STROKE_POINTS
    targets = np.linspace(0, along[-1], count)
    points = np.stack([np.interp(targets, along, polyline[:, 0]), np.interp(targets, along, polyline[:, 1])], axis=1)
    return Prompt(points=points.astype(np.float32), labels=np.full(len(points), INCLUDE, np.int32))


def freehand_prompt(polyline: np.ndarray, width: int, height: int) -> Prompt:
    """A closed loop is a region; anything else is a stroke over the object."""
    polyline = np.asarray(polyline, np.float64).reshape(-1, 2)
    if is_closed(polyline):
        return region_prompt(polyline, width, height)
    return stroke_prompt(polyline, width, height)
