"""Display-sized copies of the current image, kept per session: a 12 MP original is
resized once, not on every rerun."""

from __future__ import annotations

import base64

import cv2
import numpy as np
from samdash.imaging import LoadedImage
from samdash.view import View
from samdash.ui.state import session

MAX_CANVAS_HEIGHT = 720
_MAX_COPIES = 8


def resized(image: LoadedImage, size: tuple[int, int], view: View | None = None) -> np.ndarray:
    """The image (or the part of it ``view`` shows, cut from the full resolution) at ``size`` = (width, height).

    Enlarged beyond one screen pixel per image pixel, each image pixel shows as a square: at a high zoom the
    analyst sees the pixels a mask is made of, not a blur.
    """
    cache: dict[tuple, np.ndarray] = session().cache("resized")
    view = view or View.whole((image.width, image.height))
    key = (image.content_hash, view, size)
    if key not in cache:
        if len(cache) >= _MAX_COPIES:
            cache.clear()
        interpolation = cv2.INTER_AREA if size[0] < view.width else cv2.INTER_NEAREST
        cache[key] = cv2.resize(view.crop(image.rgb), size, interpolation=interpolation)
    return cache[key]


def fit_size(image: LoadedImage, width: int, max_height: int = MAX_CANVAS_HEIGHT) -> tuple[int, int]:
    """The largest size with the image's aspect ratio that fits ``width`` × ``max_height``."""
    scale = min(width / image.width, max_height / image.height)
    return max(1, round(image.width * scale)), max(1, round(image.height * scale))


def background_jpeg(image: LoadedImage, size: tuple[int, int], view: View) -> bytes:
    """The canvas re-sends its background on every rerun: a small JPEG, made once per view, keeps that cheap."""
    cache: dict[tuple, bytes] = session().cache("backgrounds")
    key = (image.content_hash, view, size)
    if key not in cache:
        cache.clear()
        bgr = cv2.cvtColor(resized(image, size, view), cv2.COLOR_RGB2BGR)
        cache[key] = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return cache[key]


def jpeg_data_url(rgb: np.ndarray, quality: int = 90) -> str:
    """An RGB image as a JPEG data URL, to show with ``st.image``.

    The image then travels inside the page update itself. Given to ``st.image`` as an array, it would become a
    file on the server for the browser to fetch afterwards, deleted as soon as a later run no longer shows it:
    when the next prompt follows quickly and the browser is busy, it asks too late, gets a 404 and logs an error.
    """
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")
