"""A project from a server folder in a real browser, in a 250 px sidebar: the popover, the summary, the first image."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import open_page, serve_app
from tests.browser.harness import wait_for_run

pytestmark = pytest.mark.browser

NARROW_SIDEBAR = "section[data-testid=stSidebar]{width:250px!important;min-width:250px!important;max-width:250px!important}"


def _jpeg(seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(60, 200, (300, 400, 3), dtype=np.uint8)
    rgb[80:220, 100 + 20 * seed : 260 + 20 * seed] = (220, 50, 40)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_a_server_folder_becomes_a_project(browser, tmp_path, artifacts):
    root = tmp_path / "team-images"
    folder = root / "field-survey-2024" / "june-site-a"
    folder.mkdir(parents=True)
    (root / "microscopy").mkdir()
    for seed in range(5):
        (folder / f"site-{seed + 1}.jpg").write_bytes(_jpeg(seed))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG")
    env = {"SAMDASH_MODEL_DIR": str(tmp_path / "models"), "SAMDASH_IMAGE_ROOTS": str(root)}
    with serve_app(env, tmp_path / "server.log") as served, open_page(browser, served.url, width=1400, height=900) as page:
        opener = page.get_by_role("button", name="From a server folder")
        opener.wait_for(timeout=60_000)
        wait_for_run(page)
        page.add_style_tag(content=NARROW_SIDEBAR)
        opener.click()
        page.locator("[data-testid=stPopoverBody] [data-testid=stSelectbox]").click()
        page.get_by_role("option", name="team-images/field-survey-2024/june-site-a").click()
        page.get_by_text("6 image files, added into a new project", exact=False).wait_for(timeout=30_000)
        page.screenshot(path=artifacts / "server-folder-popover.png")
        page.get_by_role("button", name="Add this folder").click()
        summary = page.locator("[data-testid=stSidebar] [data-testid=stAlert]").filter(has_text="Added 5 images")
        summary.wait_for(timeout=60_000)
        assert "1 skipped: broken.jpg" in summary.inner_text()
        page.get_by_text("Image 1 of 5", exact=False).wait_for(timeout=30_000)
        wait_for_run(page)
        page.keyboard.press("Escape")
        page.screenshot(path=artifacts / "server-folder-added.png")
        assert parse_qs(urlparse(page.url).query)["image"] == ["1"]
        assert page.get_by_role("combobox", name="Project").input_value() == "june-site-a (5 images)"
