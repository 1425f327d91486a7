"""Projects in a real browser: several uploads at once, work that survives a reload and a killed server."""

from __future__ import annotations

import io
import os
import re
import signal
import zipfile
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from tests.browser.conftest import open_page, serve_app
from tests.browser.harness import draw_box, upload_all, wait_for_canvas, wait_for_cells, wait_for_objects, wait_for_run

pytestmark = pytest.mark.browser


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(110, 150, size=(400, 600, 3), dtype=np.uint8)
    cv2.circle(image, (200 + 40 * seed, 200), 90, (220, 40, 40), -1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _where(page) -> tuple[str, str]:
    query = parse_qs(urlparse(page.url).query)
    return query["project"][0], query["image"][0]


def _label_map(page) -> bytes:
    """The "Label map (PNG)" download of the image shown: every object's mask, as the analyst exports it."""
    wait_for_run(page)  # a button of a run that is being replaced may no longer have its file on the server
    with page.expect_download() as download:
        page.get_by_role("button", name="Label map (PNG)").click()
    return open(download.value.path(), "rb").read()


def _check_coco_export(page, tmp_path) -> None:
    """The project's COCO download: three images, the three objects with their label, readable by pycocotools."""
    page.get_by_role("button", name="Export project").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Build and download").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        assert sorted(archive.namelist()) == ["annotations.json", "images/one.png", "images/three.png", "images/two.png"]
        (tmp_path / "annotations.json").write_bytes(archive.read("annotations.json"))
    coco = COCO(str(tmp_path / "annotations.json"))
    assert [c["name"] for c in coco.dataset["categories"]] == ["disc"]
    assert [coco.cats[a["category_id"]]["name"] for a in coco.dataset["annotations"]] == ["disc", "disc", "disc"]
    page.keyboard.press("Escape")


def _go(page, button: str) -> None:
    page.get_by_role("button", name=button).click()
    page.get_by_text(f"Image {'2' if button == 'Next' else '1'} of 3", exact=False).wait_for(timeout=30_000)
    wait_for_run(page)  # the canvas of the image before is still there until the run has replaced it
    wait_for_canvas(page)


def test_work_survives_a_reload_and_a_killed_server(browser, tiny_checkpoint, tmp_path, artifacts):
    env = {"SAMDASH_CHECKPOINT": str(tiny_checkpoint), "SAMDASH_MODEL_DIR": str(tmp_path / "models"),
           "SAMDASH_DATA_DIR": str(tmp_path / "data")}
    with serve_app(env, tmp_path / "first.log") as served, open_page(browser, served.url) as page:
        wait_for_canvas(page)
        upload_all(page, {"one.png": _png(0), "two.png": _png(1), "three.png": _png(2)})
        page.get_by_text("Image 1 of 3", exact=False).wait_for(timeout=60_000)
        wait_for_run(page)
        wait_for_canvas(page)
        # A label from the sidebar, picked for the objects drawn next.
        page.locator("[data-testid=stSidebar]").get_by_label("New label").fill("disc")
        page.get_by_role("button", name="Add label").click()
        page.locator("[data-testid=stSidebar]").get_by_text(re.compile(r"^● disc$")).wait_for(timeout=30_000)
        wait_for_run(page)
        page.get_by_role("combobox", name="Label for new objects").click()
        page.get_by_role("option", name="disc").click()
        wait_for_run(page)
        draw_box(page, (90, 90), (330, 310), image_size=(600, 400))
        wait_for_objects(page, 1)
        wait_for_cells(page, "Label", ["disc"])
        _go(page, "Next")
        draw_box(page, (130, 90), (370, 310), image_size=(600, 400))
        wait_for_objects(page, 1)
        draw_box(page, (20, 20), (120, 120), image_size=(600, 400))
        wait_for_objects(page, 2)
        project, image = _where(page)
        assert image == "2"
        exported = _label_map(page)
        _check_coco_export(page, tmp_path)
        page.screenshot(path=artifacts / "project-before-reload.png", full_page=True)

        page.reload()
        wait_for_objects(page, 2, timeout=60)
        wait_for_canvas(page)  # the page's runs after loading are over: a download is not cut short by one
        assert _where(page) == (project, "2")
        assert _label_map(page) == exported
        os.kill(served.pid, signal.SIGKILL)  # no chance to write anything on the way out
        port = served.port

    with serve_app(env, tmp_path / "second.log", port=port) as served, open_page(
        browser, f"{served.url}/?project={project}&image=2"
    ) as page:
        wait_for_objects(page, 2, timeout=60)
        wait_for_canvas(page)
        assert _label_map(page) == exported
        wait_for_cells(page, "Label", ["disc", "disc"])  # the label picked stays picked on this page
        page.get_by_role("button", name="Previous").click()
        page.get_by_text("Image 1 of 3", exact=False).wait_for(timeout=30_000)
        wait_for_objects(page, 1, timeout=60)
        wait_for_cells(page, "Label", ["disc"])
        page.screenshot(path=artifacts / "project-after-restart.png", full_page=True)
