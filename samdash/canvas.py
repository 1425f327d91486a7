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

from samdash.brush import Stroke, polygon_mask
from samdash.prompts import EXCLUDE, INCLUDE, Prompt, box_prompt, freehand_prompt, point_prompt

# box, freehand region and point: SAM prompts; stroke: the brush on the active object; outline: a polygon that is
# an object as drawn; view: a box to zoom to.
ShapeKind = Literal["box", "freehand", "point", "stroke", "outline", "view"]

# Colours double as what a drawing is: the canvas records a drawing's colours, not the mode it was drawn in.
INCLUDE_COLOR = "#16a34a"
EXCLUDE_COLOR = "#dc2626"
BRUSH_COLOR = "rgba(250, 204, 21, 0.55)"
ERASER_COLOR = "rgba(236, 72, 153, 0.55)"
VIEW_COLOR = "#f59e0b"


@dataclass(frozen=True)
class BackgroundFit:
    """canvas px = image px × scale + offset (the canvas's ``background_fit``)."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    # The image pixel at the background's top-left corner: not 0, 0 in a zoomed-in view.
    origin_x: float = 0.0
    origin_y: float = 0.0

    @classmethod
    def from_result(cls, fit: dict[str, float]) -> "BackgroundFit":
        return cls(float(fit["scale_x"]), float(fit["scale_y"]), float(fit["offset_x"]), float(fit["offset_y"]))

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return (xy - (self.offset_x, self.offset_y)) / (self.scale_x, self.scale_y) + (self.origin_x, self.origin_y)

    def to_canvas(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return (xy - (self.origin_x, self.origin_y)) * (self.scale_x, self.scale_y) + (self.offset_x, self.offset_y)


@dataclass(frozen=True, eq=False)
class Shape:
    """One drawn object in image pixels: a box's two corners, a line of points, or one point."""

    kind: ShapeKind
    points: np.ndarray
    label: int = INCLUDE
    # The Fabric object it came from, to draw it again when the canvas is remounted.
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    width: float = 0.0  # a brush stroke's, in image px

    @cached_property
    def key(self) -> Hashable:
        """What identifies this drawing across reruns: its Fabric geometry in canvas pixels.

        Canvas pixels, not image pixels, so that a canvas resized with its column keeps its keys.
        Kept once made: matching the canvas asks for it many times on every rerun.
        """
        return drawing_key(self.raw)

    def to_prompt(self, width: int, height: int) -> Prompt:
        if self.kind in ("box", "outline"):  # a polygon's box: what SAM refines it from
            (x0, y0), (x1, y1) = self.points.min(axis=0), self.points.max(axis=0)
            return box_prompt((x0, y0, x1, y1), width, height)
        if self.kind == "freehand":
            return freehand_prompt(self.points, width, height)
        return point_prompt(tuple(self.points[0]), self.label, width, height)

    @property
    def makes_object(self) -> bool:
        """Boxes, regions and polygons start a new object; points and brush strokes change the current one."""
        return self.kind in ("box", "freehand", "outline")

    def same_as(self, other: "Shape", tolerance_px: float = 1.0) -> bool:
        """The same drawing, however the browser wrote it (another zoom, another tab): same kind and label, the
        same image points within ``tolerance_px``."""
        return (self.kind == other.kind and self.label == other.label and self.points.shape == other.points.shape
                and bool(np.allclose(self.points, other.points, atol=tolerance_px)))

    def stroke(self) -> Stroke:
        return Stroke(self.points, self.width, erase=self.label == EXCLUDE)

    def outline_mask(self, size: tuple[int, int]) -> np.ndarray:
        """A polygon's pixels on an image of ``size`` = (width, height)."""
        return polygon_mask(self.points, size)


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


def _colour(value: object) -> str:
    return str(value or "").replace(" ", "").lower()


def _canvas_geometry(obj: dict[str, Any]) -> tuple[ShapeKind, np.ndarray, int] | None:
    kind = obj.get("type", "").lower()
    if kind == "rect":
        left, top = float(obj.get("left", 0)), float(obj.get("top", 0))
        w = float(obj.get("width", 0)) * float(obj.get("scaleX", 1))
        h = float(obj.get("height", 0)) * float(obj.get("scaleY", 1))
        is_view = _colour(obj.get("stroke")) == _colour(VIEW_COLOR)
        return "view" if is_view else "box", np.array([[left, top], [left + w, top + h]]), INCLUDE
    if kind == "path":
        local = _path_points(obj.get("path") or [])
        if not len(local):
            return None
        brush = {_colour(BRUSH_COLOR): INCLUDE, _colour(ERASER_COLOR): EXCLUDE}.get(_colour(obj.get("stroke")))
        return ("freehand", _place(obj, local), INCLUDE) if brush is None else ("stroke", _place(obj, local), brush)
    if kind == "polygon":
        local = np.array([[p["x"], p["y"]] for p in obj.get("points") or []], np.float64).reshape(-1, 2)
        return ("outline", _place(obj, local), INCLUDE) if len(local) >= 3 else None
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
            width = float(obj.get("strokeWidth", 0) or 0) * float(obj.get("scaleX", 1)) / fit.scale_x if kind == "stroke" else 0.0
            shapes.append(Shape(kind, fit.to_image(canvas_xy), label, obj, width))
    return shapes


def placed(shape: Shape, fit: BackgroundFit) -> dict[str, Any]:
    """The shape's Fabric object moved to where its image points lie on a canvas fitted by ``fit`` (another zoom).

    Only the geometry changes; colours and the rest stay as drawn. A brush stroke keeps its width in image px.
    """
    raw = dict(shape.raw)
    xy = fit.to_canvas(shape.points)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    centred = {"left": float((lo[0] + hi[0]) / 2), "top": float((lo[1] + hi[1]) / 2), "originX": "center",
               "originY": "center", "scaleX": 1, "scaleY": 1, "angle": 0}
    if shape.kind in ("box", "view"):
        raw.update(left=float(lo[0]), top=float(lo[1]), width=float(hi[0] - lo[0]), height=float(hi[1] - lo[1]),
                   originX="left", originY="top", scaleX=1, scaleY=1, angle=0)
    elif shape.kind == "point":
        raw.update(centred)
    elif shape.kind == "outline":
        raw.update(centred, points=[{"x": float(x), "y": float(y)} for x, y in xy], width=float(hi[0] - lo[0]),
                   height=float(hi[1] - lo[1]))
    else:  # a path: the same commands through the moved points
        points = iter(xy.tolist())
        path = [[command[0], *(value for _ in range(1, len(command) - 1, 2) for value in next(points))]
                for command in raw.get("path") or []]
        raw.update(centred, path=path, width=float(hi[0] - lo[0]), height=float(hi[1] - lo[1]))
        if shape.kind == "stroke":
            raw["strokeWidth"] = shape.width * fit.scale_x
    return raw

