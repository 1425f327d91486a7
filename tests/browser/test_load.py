"""A server slow to answer: no drawing is lost."""

from __future__ import annotations

import io
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.browser.harness import wait_for_canvas, wait_for_objects
from tests.browser.load_driver import IMAGE, drag_box

pytestmark = pytest.mark.browser


def _four_by_three_png() -> bytes:
    """800×600 (not the 3:2 of the sample shown first): a red disc at (300, 300) on grey."""
    rng = np.random.default_rng(3)
    image = rng.integers(110, 150, size=(600, 800, 3), dtype=np.uint8)
    cv2.circle(image, (300, 300), 120, (220, 40, 40), -1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_box_drawn_as_soon_as_a_new_image_shows_is_kept_when_the_server_is_slow(fallback_page, artifacts):
    """A busy server answers the browser's requests late. A new image mounts a new canvas: a box dragged over
    the image at once must land on the canvas, whatever the canvas still waits for from the server."""
    page = fallback_page
    wait_for_canvas(page)
    held = []  # requests the server is too busy to answer for now
    pattern = "**/_stcore/bidi-components/**/*.css"
    page.route(pattern, lambda route: held.append(route))
    try:
        page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(
            {"name": "four-by-three.png", "mimeType": "image/png", "buffer": _four_by_three_png()}
        )
        deadline = time.monotonic() + 60
        while True:
            box = page.locator(IMAGE).first.bounding_box()
            if box and abs(box["width"] / box["height"] - 4 / 3) < 0.01:
                break
            assert time.monotonic() < deadline, "the uploaded image never reached the canvas"
            time.sleep(0.05)
        drag_box(page, (160, 160, 440, 440), (800, 600))
        wait_for_objects(page, 1, timeout=30)
        page.screenshot(path=artifacts / "slow-server-box.png", full_page=True)
        assert not held, "the canvas waits for a stylesheet from the server"
    finally:
        for route in held:
            route.continue_()
        page.unroute(pattern)
