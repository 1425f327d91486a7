"""The part of the image the canvas shows: the whole image, or a zoomed-in rectangle of it.

A view is a rectangle of whole image pixels with the image's aspect ratio.
The canvas shows that rectangle cut from the full-resolution image and
scaled to the canvas, so canvas px = (image px − view origin) × scale, exactly:
a drawing made at any zoom maps back to the image pixels it covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samdash.canvas import BackgroundFit

# Zoom no further than a canvas pixel per this fraction of an image pixel: beyond that nothing more is seen.
MAX_PX_PER_IMAGE_PX = 8.0
ZOOM_STEPS = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class View:
    """A rectangle (x, y, width, height) of the image in whole pixels, and the image's size."""

    x: int
    y: int
    width: int
    height: int
    image_size: tuple[int, int]

    @classmethod
    def whole(cls, image_size: tuple[int, int]) -> "View":
        return cls(0, 0, image_size[0], image_size[1], image_size)

    @property
    def is_whole(self) -> bool:
        return (self.width, self.height) == self.image_size

    @property
    def zoom(self) -> float:
        """How many times the whole image's width this view's width goes into."""
        return self.image_size[0] / self.width

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2

    def at(self, centre: tuple[float, float], zoom: float, canvas_width: int) -> "View":
        """A view of ``zoom``× around ``centre``, kept inside the image, never finer than MAX_PX_PER_IMAGE_PX."""
        image_w, image_h = self.image_size
        zoom = max(1.0, min(zoom, MAX_PX_PER_IMAGE_PX * image_w / max(canvas_width, 1)))
        width = max(1, min(image_w, round(image_w / zoom)))
        height = max(1, min(image_h, round(image_h / zoom)))
        x = min(max(0, round(centre[0] - width / 2)), image_w - width)
        y = min(max(0, round(centre[1] - height / 2)), image_h - height)
        return View(x, y, width, height, self.image_size)

    def around(self, box: tuple[float, float, float, float], canvas_width: int) -> "View":
        """The closest view that holds ``box`` (x0, y0, x1, y1 in image px) whole."""
        x0, y0, x1, y1 = box
        zoom = min(self.image_size[0] / max(abs(x1 - x0), 1), self.image_size[1] / max(abs(y1 - y0), 1))
        return self.at(((x0 + x1) / 2, (y0 + y1) / 2), zoom, canvas_width)

    def panned(self, right: float, down: float) -> "View":
        """Moved by ``right`` and ``down`` view widths and heights, kept inside the image."""
        x, y = self.centre
        return self.at((x + right * self.width, y + down * self.height), self.zoom, 1)

    def canvas_size(self, max_width: int, max_height: int) -> tuple[int, int]:
        """The largest canvas with this view's aspect ratio that fits ``max_width`` × ``max_height``."""
        scale = min(max_width / self.width, max_height / self.height)
        return max(1, round(self.width * scale)), max(1, round(self.height * scale))

    def fit(self, canvas_size: tuple[int, int]) -> BackgroundFit:
        """How a canvas of ``canvas_size`` showing this view maps to the image: its background is the view, scaled."""
        return BackgroundFit(canvas_size[0] / self.width, canvas_size[1] / self.height, 0.0, 0.0, self.x, self.y)

    def crop(self, rgb: np.ndarray) -> np.ndarray:
        """This view's pixels of the full-resolution image (a view into it, not a copy)."""
        return rgb[self.y : self.y + self.height, self.x : self.x + self.width]

    def zoom_steps(self, canvas_width: int) -> list[int]:
        """The zoom factors worth offering for a canvas this wide."""
        limit = MAX_PX_PER_IMAGE_PX * self.image_size[0] / max(canvas_width, 1)
        return [step for step in ZOOM_STEPS if step == 1 or step <= limit]

    def label(self) -> str:
        """The zoom as an analyst reads it: "whole image" or "4×"."""
        if self.is_whole:
            return "whole image"
        # A step rounded to whole pixels (4000 / 1000, 451 / 113) reads as the step chosen.
        return f"{round(self.zoom)}×" if abs(self.zoom - round(self.zoom)) < 0.02 * self.zoom else f"{self.zoom:.3g}×"
