"""The page in a real browser: upload, draw with the mouse, see the outline, refine, delete, survive a bad upload."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.browser.harness import (
    canvas_box,
    draw_box,
    result_pixels,
    upload,
    wait_for_canvas,
    wait_for_objects,
    wait_for_result_change,
)

pytestmark = pytest.mark.browser

# A 900×600 scene: a red disc (centre 300,300, radius 150) and a blue square on a grey, textured background.
DISC_CENTRE, DISC_RADIUS = (300, 300), 150


def _scene_png() -> bytes:
    rng = np.random.default_rng(1)
    image = rng.integers(110, 150, size=(600, 900, 3), dtype=np.uint8)
    cv2.circle(image, DISC_CENTRE, DISC_RADIUS, (220, 40, 40), -1)
    image[180:420, 600:840] = (40, 60, 200)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _outline_distances(pixels: np.ndarray, color: tuple[int, int, int], scale: float) -> np.ndarray:
    """Distances (in image px) from the disc's centre of every result pixel in the outline colour."""
    close = np.all(np.abs(pixels[..., :3].astype(int) - color) < 40, axis=-1)
    ys, xs = np.nonzero(close)
    return np.hypot(xs / scale - DISC_CENTRE[0], ys / scale - DISC_CENTRE[1])


def test_box_drawn_by_mouse_outlines_the_object(fallback_page, artifacts):
    page = fallback_page
    upload(page, "scene.png", _scene_png())
    wait_for_canvas(page)
    before = result_pixels(page)
    draw_box(page, (130, 130), (470, 470), image_size=(900, 600))
    wait_for_objects(page, 1)
    pixels = wait_for_result_change(page, before)
    page.screenshot(path=artifacts / "fallback-box.png", full_page=True)
    scale = pixels.shape[1] / 900
    distances = _outline_distances(pixels, (230, 159, 0), scale)
    assert len(distances) > 200, "no outline drawn"
    on_boundary = np.abs(distances - DISC_RADIUS) < 6 / scale + 3
    assert on_boundary.mean() > 0.9, f"only {on_boundary.mean():.0%} of the outline lies on the disc's edge"


def test_exclude_point_delete_and_bad_upload(fallback_page, artifacts):
    page = fallback_page
    upload(page, "scene.png", _scene_png())
    wait_for_canvas(page)
    draw_box(page, (130, 130), (470, 470), image_size=(900, 600))
    wait_for_objects(page, 1)
    draw_box(page, (580, 160), (860, 440), image_size=(900, 600))
    wait_for_objects(page, 2)

    # An exclude point in the middle of the square (the active object) cuts it out there.
    before = result_pixels(page)
    page.get_by_role("button", name="Exclude point", exact=True).click()
    box = canvas_box(page)
    scale = box["width"] / 900
    page.mouse.click(box["x"] + 720 * scale, box["y"] + 300 * scale)
    wait_for_result_change(page, before)
    page.screenshot(path=artifacts / "fallback-exclude.png", full_page=True)

    # Delete the second object: one object is left.
    page.locator(".st-key-objects").get_by_role("button", name="Delete").nth(1).click()
    wait_for_objects(page, 1)

    # A corrupt upload shows an error and keeps the remaining object.
    upload(page, "broken.png", b"\x89PNG\r\n\x1a\n this is not really a png")
    error = page.locator("[data-testid=stAlert]").filter(has_text="broken.png")
    error.wait_for(timeout=15_000)
    assert "kept" in error.inner_text()
    wait_for_objects(page, 1)
    page.screenshot(path=artifacts / "bad-upload.png", full_page=True)


def test_picking_another_candidate_changes_the_result(sam_page, artifacts):
    page = sam_page
    upload(page, "scene.png", _scene_png())
    wait_for_canvas(page)
    draw_box(page, (130, 130), (470, 470), image_size=(900, 600))
    wait_for_objects(page, 1)
    buttons = page.locator(".st-key-candidates").get_by_role("button")
    assert buttons.count() == 3
    labels = [buttons.nth(i).inner_text() for i in range(3)]
    assert all("IoU" in label for label in labels)
    assert sum(label.startswith("✓") for label in labels) == 1
    chosen = next(i for i, label in enumerate(labels) if label.startswith("✓"))
    other = (chosen + 1) % 3
    before = result_pixels(page)
    buttons.nth(other).click()
    wait_for_result_change(page, before)
    page.locator(".st-key-candidates").get_by_role("button", name=f"✓ #{other + 1}").wait_for(timeout=15_000)
    page.screenshot(path=artifacts / "sam-candidates.png", full_page=True)
