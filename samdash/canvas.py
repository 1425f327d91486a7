"""Fabric.js JSON from the drawable canvas → shapes in image pixels.

Pure functions, so the geometry is testable without a browser and without
importing the canvas component (which only imports inside a running app).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from samdash.prompts import EXCLUDE, INCLUDE, Prompt, box_prompt, freehand_prompt, point_prompt, region_prompt

ShapeKind = Literal["box", "freehand", "polygon", "point"]

# Point colours double as their labels: the canvas records a circle's fill, not the mode it was drawn in.
INCLUDE_COLOR = "#16a34a"
EXCLUDE_COLOR = "#dc2626"


@dataclass(frozen=True)
class BackgroundFit:
    """canvas px = image px × scale + offset (the canvas's ``background_fit``)."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    @classmethod
    def from_result(cls, fit: dict[str, float]) -> "BackgroundFit":
        return cls(float(fit["scale_x"]), float(fit["scale_y"]), float(fit["offset_x"]), float(fit["offset_y"]))

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return np.stack([(xy[:, 0] - self.offset_x) / self.scale_x, (xy[:, 1] - self.offset_y) / self.scale_y], axis=1)


@dataclass(frozen=True, eq=False)
class Shape:
    """One drawn object in image pixels: a box's two corners, a line of points, or one point."""

    kind: ShapeKind
    points: np.ndarray
    label: int = INCLUDE
    # The Fabric object it came from, to draw it again when the canvas is remounted.
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def key(self) -> Hashable:
        """What identifies this drawing across reruns: its Fabric geometry in canvas pixels.

        Canvas pixels, not image pixels, so that a canvas resized with its column keeps its keys.
        Kept once made: matching the canvas asks for it many times on every rerun.
        """
        return drawing_key(self.raw)

    def to_prompt(self, width: int, height: int) -> Prompt:
        if self.kind == "box":
            (x0, y0), (x1, y1) = self.points
            return box_prompt((x0, y0, x1, y1), width, height)
        if self.kind == "polygon":
            return region_prompt(self.points, width, height)
        if self.kind == "freehand":
            return freehand_prompt(self.points, width, height)
        return point_prompt(tuple(self.points[0]), self.label, width, height)

    @property
    def makes_object(self) -> bool:
        """Boxes and regions start a new object; points refine the current one."""
        return self.kind != "point"


def _centre(obj: dict[str, Any], width: float, height: float) -> tuple[float, float]:
    """Where an object's centre sits on the canvas (Fabric keeps left/top at an origin corner)."""
    stroke = float(obj.get("strokeWidth", 0) or 0)
    full_w = (width + stroke) * float(obj.get("scaleX", 1))
    full_h = (height + stroke) * float(obj.get("scaleY", 1))
    origin = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}
    left = float(obj.get("left", 0)) - origin[obj.get("originX", "left")] * full_w
    top = float(obj.get("top", 0)) - origin[obj.get("originY", "top")] * full_h
    return left + full_w / 2, top + full_h / 2


def _place(obj: dict[str, Any], local: np.ndarray) -> np.ndarray:
    """Map a path's or polygon's own coordinates to canvas pixels, honouring later moves and resizes."""
    lo, hi = local.min(axis=0), local.max(axis=0)
    offset = (lo + hi) / 2
    cx, cy = _centre(obj, *(hi - lo))
    scale = np.array([float(obj.get("scaleX", 1)), float(obj.get("scaleY", 1))])
    return (local - offset) * scale + (cx, cy)


def _path_points(path: list[list[Any]]) -> np.ndarray:
    coords = [(float(cmd[i]), float(cmd[i + 1])) for cmd in path for i in range(1, len(cmd) - 1, 2)]
    return np.asarray(coords, np.float64).reshape(-1, 2)


def _canvas_geometry(obj: dict[str, Any]) -> tuple[ShapeKind, np.ndarray, int] | None:
    kind = obj.get("type", "").lower()
    if kind == "rect":
        left, top = float(obj.get("left", 0)), float(obj.get("top", 0))
        w = float(obj.get("width", 0)) * float(obj.get("scaleX", 1))
        h = float(obj.get("height", 0)) * float(obj.get("scaleY", 1))
        return "box", np.array([[left, top], [left + w, top + h]]), INCLUDE
    if kind == "path":
        local = _path_points(obj.get("path") or [])
        return ("freehand", _place(obj, local), INCLUDE) if len(local) else None
    if kind == "polygon":
        local = np.array([[p["x"], p["y"]] for p in obj.get("points") or []], np.float64).reshape(-1, 2)
        return ("polygon", _place(obj, local), INCLUDE) if len(local) >= 3 else None
    if kind == "circle":
        radius = float(obj.get("radius", 0))
        label = EXCLUDE if str(obj.get("fill", "")).lower() == EXCLUDE_COLOR else INCLUDE
        return "point", np.array([_centre(obj, 2 * radius, 2 * radius)]), label
    return None


_KEY_FIELDS = ("type", "left", "top", "width", "height", "scaleX", "scaleY", "angle", "radius", "fill", "path", "points")


def drawing_key(obj: dict[str, Any]) -> Hashable:
    """A Fabric object's type, place, size and fill; a moved or resized object gets another key."""
    return repr([obj.get(name) for name in _KEY_FIELDS])


def shapes_from_canvas(json_data: dict[str, Any] | None, fit: BackgroundFit) -> list[Shape]:
    """Every drawn object, in drawing order, converted to image pixels; unknown object types are skipped."""
    shapes = []
    for obj in (json_data or {}).get("objects", []):
        geometry = _canvas_geometry(obj)
        if geometry is not None:
            kind, canvas_xy, label = geometry
            shapes.append(Shape(kind, fit.to_image(canvas_xy), label, obj))
    return shapes

