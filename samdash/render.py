"""Outlines and fills of masks on an image.

Contours are traced on the full-resolution mask (so the outline follows the
object, not a blurred copy of it) and drawn on whatever copy is shown: a
display-sized one in the page, the original in exports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Color = tuple[int, int, int]

# Distinct, colour-blind-friendly hues (Okabe–Ito, then Tableau), cycled per object.
PALETTE: tuple[Color, ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
    (148, 103, 189),
    (140, 86, 75),
)


def palette_color(index: int) -> Color:
    return PALETTE[index % len(PALETTE)]


def hex_to_rgb(value: str) -> Color:
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def rgb_to_hex(color: Color) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


# Anti-aliased lines cost ~5× more; a mask with very many contour points (a speckled one) gets plain lines.
_AA_MAX_POINTS = 20_000


@dataclass(frozen=True, eq=False)
class Layer:
    """One object to draw: its outline in mask pixels and its colour.

    A fill is painted from the outline unless the mask itself is given (exports, which need every pixel exact).
    """

    color: Color
    contours: list[np.ndarray]
    mask: np.ndarray | None = None

    @classmethod
    def from_mask(cls, mask: np.ndarray, color: Color) -> "Layer":
        return cls(color, contours_of(mask), mask)

    def area(self, size: tuple[int, int], scale: float, origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """The object's pixels on a copy of ``size`` = (width, height) scaled by ``scale`` from the mask, whose
        top-left corner is the mask's pixel ``origin`` (a zoomed-in view)."""
        if self.mask is not None:
            return resize_mask(self.mask, size)
        filled = np.zeros((size[1], size[0]), np.uint8)
        # Contours of holes lie inside their object's: even-odd filling leaves the holes open.
        cv2.fillPoly(filled, scale_contours(self.contours, scale, origin), 1)
        return filled.astype(bool)


def contours_of(mask: np.ndarray) -> list[np.ndarray]:
    """Outer boundaries and hole boundaries of a boolean mask, as (n, 2) int arrays in mask pixels."""
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2) for c in found]


def scale_contours(contours: list[np.ndarray], scale: float, origin: tuple[float, float] = (0.0, 0.0)) -> list[np.ndarray]:
    """Contours mapped onto a copy scaled by ``scale`` whose top-left is pixel ``origin`` (pixel centres aligned)."""
    if scale == 1.0 and origin == (0.0, 0.0):
        return [c.astype(np.int32) for c in contours]
    return [np.round((c - origin + 0.5) * scale - 0.5).astype(np.int32) for c in contours]


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A boolean mask at ``size`` = (width, height), area-averaged so thin parts survive down-scaling."""
    if (mask.shape[1], mask.shape[0]) == size:
        return mask
    return cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) >= 128


def draw_layers(
    image: np.ndarray,
    layers: Sequence[Layer],
    *,
    scale: float = 1.0,
    origin: tuple[float, float] = (0.0, 0.0),
    thickness: int = 2,
    fill_opacity: float = 0.0,
) -> np.ndarray:
    """A copy of ``image`` (already scaled by ``scale`` from the masks' resolution, its top-left corner the masks'
    pixel ``origin``) with each layer outlined.

    ``fill_opacity`` > 0 also tints each object's area with its colour.
    """
    canvas = np.array(image, dtype=np.uint8, copy=True)
    height, width = canvas.shape[:2]
    if fill_opacity > 0:
        for layer in layers:
            area = layer.area((width, height), scale, origin)
            tint = np.asarray(layer.color, np.float32)
            canvas[area] = (canvas[area] * (1 - fill_opacity) + tint * fill_opacity).astype(np.uint8)
    for layer in layers:
        lines = scale_contours(layer.contours, scale, origin)
        smooth = sum(len(line) for line in lines) <= _AA_MAX_POINTS
        cv2.polylines(canvas, lines, True, layer.color, thickness, cv2.LINE_AA if smooth else cv2.LINE_8)
    return canvas


def preview(image: np.ndarray, mask: np.ndarray, color: Color, opacity: float = 0.55) -> np.ndarray:
    """A small thumbnail: the image with one mask tinted, for choosing between candidates."""
    return draw_layers(image, [Layer.from_mask(mask, color)], scale=image.shape[1] / mask.shape[1], thickness=1, fill_opacity=opacity)
