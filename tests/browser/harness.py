"""Driving the page like a person: upload, draw with the mouse, look at the result's pixels."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image
from playwright.sync_api import Page

from samdash.ui.objects import COLUMN_PX, ROW_PX

# Only a canvas one can see: while a run replaces the canvas, the one it replaces stays in the page, hidden.
CANVAS = "[data-testid=stBidiComponentIsolated] canvas.upper-canvas:visible"
RESULT_IMAGE = ".st-key-result [data-testid=stImage] img"


def upload(page: Page, name: str, data: bytes) -> None:
    upload_all(page, {name: data})


def upload_all(page: Page, files: dict[str, bytes]) -> None:
    """Choose several files in one go, as from a file dialog."""
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(
        [{"name": name, "mimeType": "image/png" if name.endswith(".png") else "image/jpeg", "buffer": data} for name, data in files.items()]
    )


def canvas_box(page: Page) -> dict[str, float]:
    box = page.locator(CANVAS).first.bounding_box()
    assert box is not None, "the canvas is not on the page"
    return box


def settled_box(read: Callable[[], dict[str, float] | None], settle: float, timeout: float, what: str,
                check: Callable[[], None] = lambda: None) -> dict[str, float]:
    """A bounding box (from ``read``, None while its element is being replaced) once it has kept its place and
    size for ``settle`` seconds; ``check`` may give up earlier by raising."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        check()
        box = read()
        if box is None or box != last:
            last, since = box, time.monotonic()
        elif time.monotonic() - since >= settle:
            return box
        time.sleep(0.1)
    raise TimeoutError(f"{what} kept changing")


def wait_for_canvas(page: Page, settle: float = 1.5, timeout: float = 60) -> dict[str, float]:
    """Wait until the canvas is shown and has kept its size for ``settle`` seconds (it resizes to its column)."""
    page.locator(CANVAS).first.wait_for(timeout=timeout * 1000)
    return settled_box(lambda: page.locator(CANVAS).first.bounding_box(), settle, timeout, "the canvas")


def wait_for_run(page: Page, timeout: float = 60) -> None:
    """Wait until the page's run is over: while Streamlit reruns, it marks the elements of the last run stale."""
    for _ in range(2):  # a run may start right after another ends (the canvas reports its fit)
        page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=timeout * 1000)
        page.wait_for_timeout(400)


def to_page(page: Page, xy: tuple[float, float], image_size: tuple[int, int]) -> tuple[float, float]:
    """Where an image pixel is on the screen, the canvas scrolled into sight first (the mouse reaches only that)."""
    page.locator(CANVAS).first.scroll_into_view_if_needed()
    box = canvas_box(page)
    scale = box["width"] / image_size[0]
    return box["x"] + xy[0] * scale, box["y"] + xy[1] * scale


def choose_mode(page: Page, name: str) -> None:
    """Pick a drawing mode and let the rerun it causes finish, so the next stroke lands in that mode."""
    radio = page.get_by_role("radio", name=name, exact=True)
    if radio.get_attribute("aria-checked") != "true":
        radio.click()
        page.wait_for_function(
            "name => [...document.querySelectorAll('[role=radio]')].some(r => r.innerText.trim() === name && r.getAttribute('aria-checked') === 'true')",
            arg=name,
        )
        page.wait_for_timeout(800)


def draw_box(page: Page, start: tuple[float, float], end: tuple[float, float], image_size: tuple[int, int]) -> None:
    """Drag a box from ``start`` to ``end`` (image pixels) in Box mode."""
    choose_mode(page, "Box")
    x0, y0 = to_page(page, start, image_size)
    x1, y1 = to_page(page, end, image_size)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()


def result_pixels(page: Page) -> np.ndarray:
    png = page.locator(RESULT_IMAGE).first.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _result_is_fresh(page: Page) -> bool:
    """False while Streamlit reruns: it fades stale elements, which would look like a change."""
    container = page.locator(".st-key-result [data-testid=stElementContainer]:has([data-testid=stImage])").first
    return container.get_attribute("data-stale") == "false"


def wait_for_result_change(page: Page, before: np.ndarray, timeout: float = 30) -> np.ndarray:
    """The result's pixels once they differ from ``before`` and have settled (two equal looks in a row)."""
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        try:
            now = result_pixels(page) if _result_is_fresh(page) else None
        except Exception:  # noqa: BLE001 - the image is replaced while Streamlit reruns
            now = None
        if now is not None and now.std() == 0:
            now = None  # an image element whose picture is not painted yet: blank, not a result
        changed = now is not None and (now.shape != before.shape or np.abs(now.astype(int) - before).mean() > 0.2)
        if changed and previous is not None and previous.shape == now.shape and np.array_equal(previous, now):
            return now
        previous = now if changed else None
        time.sleep(0.05)
    raise TimeoutError("the result image did not change")


OBJECT_TABLE = ".st-key-objects [data-testid=data-grid-canvas]"


def object_cells(page: Page, column: str) -> list[str]:
    """The object table's cells in ``column`` (a key of ``COLUMN_PX``), for the rows on screen.

    The table draws on a canvas; the text read here is its accessible copy, which the grid keeps in the page.
    """
    index = list(COLUMN_PX).index(column)
    return page.locator(f".st-key-objects [data-testid^=glide-cell-{index}-]").all_inner_texts()


def wait_for_cells(page: Page, column: str, expected: list[str], timeout: float = 20) -> None:
    """Wait until the object table's ``column`` reads ``expected`` (the table is drawn after the run that sends it)."""
    deadline = time.monotonic() + timeout
    while (seen := object_cells(page, column)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"the object table's {column} column reads {seen}, not {expected}")
        time.sleep(0.1)


def object_cell(page: Page, row: int, column: str) -> tuple[float, float]:
    """The middle of a cell of the object table, in page pixels (the columns have fixed widths)."""
    table = page.locator(OBJECT_TABLE).first
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    assert box is not None, "the object table is not on the page"
    names = list(COLUMN_PX)
    left = sum(COLUMN_PX[name] for name in names[: names.index(column)])
    return box["x"] + left + COLUMN_PX[column] / 2, box["y"] + ROW_PX * (row + 1.5)


def click_object_cell(page: Page, row: int, column: str) -> None:
    page.mouse.click(*object_cell(page, row, column))


def rename_object(page: Page, row: int, name: str) -> None:
    """Type a new name into a row's Name cell, as a person does: double-click, select all, type, Enter."""
    page.mouse.dblclick(*object_cell(page, row, "Name"))
    editor = page.locator("[data-testid=glide-overlay-editor] textarea, #portal textarea").first
    editor.wait_for(timeout=10_000)
    editor.press("Control+a")
    editor.type(name)
    editor.press("Enter")


def wait_for_objects(page: Page, count: int, timeout: float = 30) -> None:
    page.locator(".st-key-objects").get_by_text(f"Objects ({count})", exact=True).wait_for(timeout=timeout * 1000)
