"""Drawing while the image is encoded, in a real browser, with a full-size SAM (vit_b, random weights): its encode
takes seconds on a CPU, long enough to draw during it. The box must stay on the canvas (not remounted, not moved)
and become an object once the encode is done."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from samdash.models import ARCHITECTURES
from samdash.store import Store
from tests.browser.conftest import open_page, serve_app
from tests.browser.harness import CANVAS, draw_box, upload, wait_for_canvas, wait_for_objects, wait_for_run

pytestmark = pytest.mark.browser

SIZE = (600, 400)
DRAWN = ((140, 90), (420, 330))  # a box around the disc, in image pixels
ENCODING = "You can draw now"


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit-b")
    torch.manual_seed(0)
    checkpoint = folder / "vit_b-random.pth"
    torch.save(ARCHITECTURES["vit_b"].build().state_dict(), checkpoint)
    env = {"SAMDASH_CHECKPOINT": str(checkpoint), "SAMDASH_MODEL_TYPE": "vit_b", "SAMDASH_MODEL_DIR": str(folder)}
    with serve_app(env, folder / "server.log") as served:
        yield served, folder / "data"


def _disc_png() -> bytes:
    rng = np.random.default_rng(3)
    image = rng.integers(110, 150, size=(SIZE[1], SIZE[0], 3), dtype=np.uint8)
    cv2.circle(image, (280, 210), 100, (40, 160, 220), -1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_box_drawn_while_the_image_is_encoded_is_segmented_once_it_is_done(browser, slow_server, artifacts: Path):
    served, data_dir = slow_server
    with open_page(browser, served.url) as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        wait_for_canvas(page, timeout=600)  # shown while the model loads and the sample is encoded
        page.get_by_text("Image encoded in").first.wait_for(timeout=600_000)
        wait_for_run(page)

        upload(page, "disc.png", _disc_png())
        page.get_by_text(ENCODING).first.wait_for(timeout=120_000)
        wait_for_canvas(page)
        # Mark the canvas element: if the page remounted it when the encode ends, the mark (and the drawing) is gone.
        page.locator(CANVAS).first.evaluate("canvas => { canvas.dataset.before = 'encoded' }")
        drawn_at = page.locator(CANVAS).first.bounding_box()
        draw_box(page, *DRAWN, image_size=SIZE)
        assert page.get_by_text(ENCODING).first.is_visible(), "the encode ended before the box was drawn: nothing was tested"
        page.screenshot(path=artifacts / "drawn-while-encoding.png", full_page=True)

        wait_for_objects(page, 1, timeout=600)
        wait_for_run(page)
        page.screenshot(path=artifacts / "segmented-after-encoding.png", full_page=True)
        assert page.locator(CANVAS).first.evaluate("canvas => canvas.dataset.before") == "encoded"
        assert page.locator(CANVAS).first.bounding_box() == drawn_at, "the canvas moved when the encode ended"
        assert page.get_by_text(ENCODING).count() == 0
        assert errors == []

    store = Store(data_dir)
    [project] = store.projects()
    [image] = [info for info in store.images(project.id) if info.name == "disc.png"]
    workspace, _ = store.load_workspace(image)
    [segment] = workspace.segments
    x0, y0, x1, y1 = segment.prompt.box
    assert abs(x0 - DRAWN[0][0]) <= 3 and abs(y0 - DRAWN[0][1]) <= 3 and abs(x1 - DRAWN[1][0]) <= 3 and abs(y1 - DRAWN[1][1]) <= 3
