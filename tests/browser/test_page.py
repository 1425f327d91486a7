"""The page in a real browser: upload, draw with the mouse, see the outline, refine, delete, survive a bad upload."""

from __future__ import annotations

import io
import re
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from samdash.ui.image_input import SAMPLES_DIR
from tests.browser.harness import (
    CANVAS,
    canvas_box,
    choose_mode,
    click_object_cell,
    rename_object,
    to_page,
    draw_box,
    result_pixels,
    upload,
    wait_for_canvas,
    wait_for_cells,
    wait_for_objects,
    wait_for_result_change,
    wait_for_run,
)

pytestmark = pytest.mark.browser

# A 900×600 scene: a red disc (centre 300,300, radius 150) and a blue square on a grey, textured background.
DISC_CENTRE, DISC_RADIUS = (300, 300), 150
FIRST_OBJECT_COLOUR = (230, 159, 0)  # the palette's first colour


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _scene_png() -> bytes:
    rng = np.random.default_rng(1)
    image = rng.integers(110, 150, size=(600, 900, 3), dtype=np.uint8)
    cv2.circle(image, DISC_CENTRE, DISC_RADIUS, (220, 40, 40), -1)
    image[180:420, 600:840] = (40, 60, 200)
    return _png(image)


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
    # The drawing went out on mouse-up through the canvas's own send button, not after its debounce.
    assert page.locator("[data-sent]").first.get_attribute("data-sent") == "1"
    pixels = wait_for_result_change(page, before)
    page.screenshot(path=artifacts / "fallback-box.png", full_page=True)
    scale = pixels.shape[1] / 900
    distances = _outline_distances(pixels, FIRST_OBJECT_COLOUR, scale)
    assert len(distances) > 200, "no outline drawn"
    on_boundary = np.abs(distances - DISC_RADIUS) < 6 / scale + 3
    assert on_boundary.mean() > 0.9, f"only {on_boundary.mean():.0%} of the outline lies on the disc's edge"


def _touching_png() -> bytes:
    """A red disc with a blue block touching its right side, and a small green square apart."""
    rng = np.random.default_rng(2)
    image = rng.integers(110, 150, size=(600, 900, 3), dtype=np.uint8)
    image[220:380, 420:620] = (40, 60, 200)
    cv2.circle(image, DISC_CENTRE, DISC_RADIUS, (220, 40, 40), -1)
    image[450:550, 740:840] = (40, 180, 60)
    return _png(image)


def _outline_near_block_edge(pixels: np.ndarray, scale: float) -> int:
    """Outline-coloured pixels along the blue block's far (right) edge, x ≈ 620."""
    strip = pixels[int(240 * scale) : int(360 * scale), int(610 * scale) : int(632 * scale), :3].astype(int)
    return int(np.all(np.abs(strip - FIRST_OBJECT_COLOUR) < 40, axis=-1).sum())


def test_exclude_point_the_object_table_and_bad_upload(fallback_page, artifacts):
    page = fallback_page
    upload(page, "touching.png", _touching_png())
    wait_for_canvas(page)
    draw_box(page, (130, 130), (640, 470), image_size=(900, 600))
    wait_for_objects(page, 1)
    pixels = wait_for_result_change(page, result_pixels(page) * 0)
    scale = pixels.shape[1] / 900
    assert _outline_near_block_edge(pixels, scale) > 10, "the box should first take the block too"

    # An exclude point on the block removes it from the object.
    choose_mode(page, "Exclude point")
    x, y = to_page(page, (560, 300), (900, 600))
    page.mouse.click(x, y)
    pixels = wait_for_result_change(page, pixels)
    page.screenshot(path=artifacts / "fallback-exclude.png", full_page=True)
    assert _outline_near_block_edge(pixels, scale) == 0

    # The canvas's own undo takes the point back, and its redo applies it again.
    for button, near_edge in (("Undo", lambda n: n > 10), ("Redo", lambda n: n == 0)):
        page.hover(CANVAS)
        page.locator(".dc-root").get_by_role("button", name=button, exact=True).click()
        pixels = wait_for_result_change(page, pixels)
        assert near_edge(_outline_near_block_edge(pixels, scale)), f"{button} did not change the object"
    wait_for_objects(page, 1)

    # A second object, then delete it: the first is left as it was, not segmented again.
    draw_box(page, (720, 430), (860, 570), image_size=(900, 600))
    wait_for_objects(page, 2)
    # Three drawings, three immediate sends: the sender listens once however often the page reruns.
    assert page.locator("[data-sent]").first.get_attribute("data-sent") == "3"
    wait_for_cells(page, "Select", ["Select", "✓ Active"])
    click_object_cell(page, 0, "Select")  # the object table: one row per object
    page.locator(".st-key-candidates").get_by_text("Candidates for object 1").wait_for(timeout=15_000)
    wait_for_cells(page, "Select", ["✓ Active", "Select"])
    click_object_cell(page, 1, "Delete")
    wait_for_objects(page, 1)
    wait_for_cells(page, "Name", ["object 1"])
    assert _outline_near_block_edge(result_pixels(page), scale) == 0
    rename_object(page, 0, "disc")
    page.locator(".st-key-candidates").get_by_text("Candidates for disc").wait_for(timeout=15_000)
    shown = result_pixels(page)
    click_object_cell(page, 0, "Visible")  # hidden: the result shows no outline
    hidden = wait_for_result_change(page, shown)
    wait_for_cells(page, "Visible", ["false"])
    assert len(_outline_distances(hidden, FIRST_OBJECT_COLOUR, scale)) < len(_outline_distances(shown, FIRST_OBJECT_COLOUR, scale)) / 10
    click_object_cell(page, 0, "Visible")
    wait_for_result_change(page, hidden)
    page.locator(".st-key-objects").screenshot(path=artifacts / "object-table.png")

    # A corrupt upload shows an error and keeps the remaining object.
    wait_for_run(page)
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
    buttons = page.locator(".st-key-candidates").get_by_role("button", name=re.compile("IoU"))
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


def _difference(pixels: np.ndarray, sample: str) -> float:
    """Mean absolute difference between the shown result and a bundled sample at the same size."""
    image = Image.open(SAMPLES_DIR / sample).convert("RGB").resize((pixels.shape[1], pixels.shape[0]))
    return float(np.abs(pixels[..., :3].astype(int) - np.asarray(image, int)).mean())


def _wait_until_shown(page, sample: str, instead_of: str, timeout: float = 60) -> np.ndarray:
    """The result's pixels once they show ``sample`` rather than ``instead_of`` (both of one aspect ratio)."""
    deadline = time.monotonic() + timeout
    while True:
        pixels = result_pixels(page)
        if _difference(pixels, sample) < _difference(pixels, instead_of):
            return pixels
        assert time.monotonic() < deadline, f"{sample} was chosen but {instead_of} is still shown"
        page.wait_for_timeout(200)


def test_sample_image_and_narrow_window(browser, fallback_url, artifacts):
    """The bundled sample, segmented, on a wide and on a narrow window (the README's screenshot comes from here)."""
    from tests.browser.conftest import open_page

    for width, height in ((1400, 900), (760, 1100)):
        with open_page(browser, fallback_url, width, height) as page:
            page.locator("[data-testid=stSelectbox]").filter(has_text="or a sample").locator("input, [role=combobox]").first.click()
            page.get_by_role("option", name="Coffee cup").click()
            wait_for_canvas(page)
            before = _wait_until_shown(page, "coffee.jpg", instead_of="cat.jpg")
            draw_box(page, (75, 15), (482, 392), image_size=(600, 400))
            wait_for_objects(page, 1)
            pixels = wait_for_result_change(page, before)
            assert _difference(pixels, "coffee.jpg") < _difference(pixels, "cat.jpg"), "the chosen sample is not shown"
            page.mouse.move(0, 0)
            page.screenshot(path=artifacts / f"coffee-{width}.png")
            box = canvas_box(page)
            assert box["x"] + box["width"] <= width, "the canvas overflows the window"


def test_the_column_width_is_remembered_and_a_stale_one_measured_again(browser, fallback_url):
    """The canvas's column width is kept in a cookie, so that the next page of this browser (a reload, a restart)
    draws its canvas in its first run; in a narrower window the remembered width is measured again, not kept."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(fallback_url)
        wait_for_canvas(page)
        column = page.locator(".st-key-canvas").bounding_box()["width"]
        remembered = {c["name"]: c["value"] for c in context.cookies()}.get("samdash_column_px")
        assert remembered is not None and abs(int(remembered) - column) < 24
        page.close()
        page = context.new_page()
        page.set_viewport_size({"width": 760, "height": 1100})
        page.goto(fallback_url)
        box = wait_for_canvas(page)
        narrow = page.locator(".st-key-canvas").bounding_box()["width"]
        assert narrow < int(remembered) - 24, "the window did not make the column narrower"
        assert box["width"] <= narrow + 1, "the canvas kept the remembered width of a wider window"
        assert abs(int({c["name"]: c["value"] for c in context.cookies()}["samdash_column_px"]) - narrow) < 24
    finally:
        context.close()


def _slide(page, label: str, *keys: str) -> None:
    """Move a slider of the segment-everything panel with the keyboard."""
    slider = page.get_by_role("slider", name=label)
    slider.focus()
    for key in keys:
        slider.press(key)
    page.wait_for_timeout(800)  # the rerun the change causes


def _objects(page) -> int:
    text = page.locator(".st-key-objects").get_by_text(re.compile(r"Objects \(\d+\)")).inner_text()
    return int(re.search(r"\d+", text).group())


def test_segment_everything_adds_objects_and_cancel_adds_none(sam_page, artifacts):
    page = sam_page
    wait_for_canvas(page)  # the bundled sample
    draw_box(page, (40, 40), (200, 200), image_size=(451, 300))
    wait_for_objects(page, 1)
    page.get_by_text("Segment everything").click()
    for label in ("Points per side", "Predicted IoU threshold", "Stability score threshold"):
        _slide(page, label, "Home")  # 4×4 points and no thresholds: the random tiny SAM's masks are kept
    page.get_by_role("button", name="Find all objects").click()
    page.locator(".st-key-objects").get_by_text(re.compile(r"Objects \(([2-9]|\d\d+)\)")).wait_for(timeout=180_000)
    found = _objects(page) - 1

    _slide(page, "Points per side", *["ArrowRight"] * 12)  # 16×16 points, four batches: time to cancel
    page.get_by_role("button", name="Find all objects").click()
    page.get_by_text(re.compile("Point batch")).wait_for(timeout=60_000)
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text("Cancelled: no objects were added.").wait_for(timeout=30_000)
    assert _objects(page) == 1 + found
    page.screenshot(path=artifacts / "everything-cancelled.png", full_page=True)

    # The next run waits for the cancelled one to stop, which adds nothing even then.
    _slide(page, "Points per side", "Home")
    page.get_by_role("button", name="Find all objects").click()
    wait_for_objects(page, 1 + 2 * found, timeout=300)
