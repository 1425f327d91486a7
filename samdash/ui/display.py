"""Display-sized copies of the current image, kept per session: a 12 MP original is
resized once, not on every rerun."""

from __future__ import annotations

import cv2
import numpy as np
from samdash.imaging import LoadedImage
from samdash.ui.state import session

MAX_CANVAS_HEIGHT = 720
_MAX_COPIES = 8


def resized(image: LoadedImage, size: tuple[int, int]) -> np.ndarray:
    """The image at ``size`` = (width, height)."""
    cache: dict[tuple[str, tuple[int, int]], np.ndarray] = session().cache("resized")
    key = (image.content_hash, size)
    if key not in cache:
        if len(cache) >= _MAX_COPIES:
            cache.clear()
        interpolation = cv2.INTER_AREA if size[0] < image.width else cv2.INTER_LINEAR
        cache[key] = cv2.resize(image.rgb, size, interpolation=interpolation)
    return cache[key]


def fit_size(image: LoadedImage, width: int, max_height: int = MAX_CANVAS_HEIGHT) -> tuple[int, int]:
    """The largest size with the image's aspect ratio that fits ``width`` × ``max_height``."""
    scale = min(width / image.width, max_height / image.height)
    return max(1, round(image.width * scale)), max(1, round(image.height * scale))


def background_jpeg(image: LoadedImage, size: tuple[int, int]) -> bytes:
    """The canvas re-sends its background on every rerun: a small JPEG keeps that cheap."""
    cache: dict[tuple[str, tuple[int, int]], bytes] = session().cache("backgrounds")
    key = (image.content_hash, size)
    if key not in cache:
        cache.clear()
        bgr = cv2.cvtColor(resized(image, size), cv2.COLOR_RGB2BGR)
        cache[key] = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return cache[key]
