"""Brush strokes that touch up a mask by hand, and polygons drawn as objects of their own.

A stroke is kept with its object as a line of image points and a width in
image pixels, not as changed pixels: it is re-applied on top of whatever mask
SAM gives the object next, it is saved in a few bytes, and undo takes it back
like any other drawing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, eq=False)
class Stroke:
    """One brush stroke: the points it passed through (image px), its width (image px), and whether it erases."""

    points: np.ndarray
    width: float
    erase: bool = False

    def to_json(self) -> dict:
        return {"points": np.round(np.asarray(self.points, np.float64), 2).tolist(), "width": round(float(self.width), 3),
                "erase": self.erase}

    @classmethod
    def from_json(cls, saved: dict) -> "Stroke":
        return cls(np.asarray(saved["points"], np.float64).reshape(-1, 2), float(saved["width"]), bool(saved["erase"]))


# Points are drawn at 1/16 px: a stroke at a high zoom lands between whole image pixels.
_SHIFT = 4


def paint(mask: np.ndarray, strokes: tuple[Stroke, ...]) -> np.ndarray:
    """``mask`` with ``strokes`` applied in order (a new array; the mask given is left as it is)."""
    if not strokes:
        return mask
    painted = mask.astype(np.uint8)
    for stroke in strokes:
        points = np.round(np.asarray(stroke.points, np.float64) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)
        thickness = max(1, round(stroke.width))
        value = 0 if stroke.erase else 1
        if len(points) == 1:
            cv2.circle(painted, tuple(points[0, 0]), (thickness << _SHIFT) // 2, value, -1, cv2.LINE_8, _SHIFT)
        else:
            cv2.polylines(painted, [points], False, value, thickness, cv2.LINE_8, _SHIFT)
    return painted.astype(bool)


def polygon_mask(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The pixels inside a polygon (image px) on an image of ``size`` = (width, height)."""
    filled = np.zeros((size[1], size[0]), np.uint8)
    vertices = np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(filled, [vertices], 1, cv2.LINE_8, _SHIFT)
    return filled.astype(bool)
