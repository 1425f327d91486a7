"""Mouse-up to outline visible, in a real browser, for a 1 MP and a 12 MP image.

Starts the app on 127.0.0.1 with a tiny random SAM (the prompt encoder and mask
decoder are SAM's full-size ones, so the prompt path costs what it costs with
vit_b), uploads a generated image, drags five boxes with the mouse and times,
in the browser's own clock, from the mouse-up to the new result image decoded.

    python benchmarks/browser_latency.py
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: E402
from tests.browser.harness import draw_box, upload, wait_for_canvas, wait_for_objects  # noqa: E402
from tests.tiny_sam import build_tiny_sam  # noqa: E402

SIZES = {"1mp": (1155, 866), "12mp": (4000, 3000)}
BOXES = 5

_ARM = """
() => {
    const root = document.querySelector('.st-key-result');
    const before = root.querySelector('img')?.src;
    window.__mouseUp = null;
    document.addEventListener('mouseup', () => { window.__mouseUp = performance.now(); }, {capture: true, once: true});
    window.__shown = new Promise(resolve => {
        const observer = new MutationObserver(async () => {
            const img = root.querySelector('img');
            if (!img || img.src === before) return;
            observer.disconnect();
            await img.decode().catch(() => {});
            requestAnimationFrame(() => resolve(performance.now()));
        });
        observer.observe(root, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
    });
}
"""


def _scene(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    image = rng.integers(100, 160, size=(height, width, 3), dtype=np.uint8)
    for i in range(BOXES):
        centre = (int(width * (0.15 + 0.17 * i)), int(height * 0.5))
        cv2.circle(image, centre, int(width * 0.06), (200, 40 + 30 * i, 40), -1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _latencies(page: Page, width: int, height: int) -> list[float]:
    upload(page, f"scene-{width}x{height}.jpg", _scene(width, height))
    wait_for_canvas(page, settle=2.0, timeout=120)
    results = []
    for i in range(BOXES):
        cx, r = width * (0.15 + 0.17 * i), width * 0.08
        page.evaluate(_ARM)
        draw_box(page, (cx - r, height * 0.5 - r), (cx + r, height * 0.5 + r), image_size=(width, height))
        shown = page.evaluate("window.__shown")
        results.append(shown - page.evaluate("window.__mouseUp"))
        wait_for_objects(page, i + 1)
    return results


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "tiny.pth"
        torch.save(build_tiny_sam().state_dict(), checkpoint)
        env = {"SAMDASH_CHECKPOINT": str(checkpoint), "SAMDASH_MODEL_DIR": tmp}
        with serve_app(env, Path(tmp) / "streamlit.log") as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            summary = {}
            for name, (width, height) in SIZES.items():
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(url)
                runs = _latencies(page, width, height)
                page.close()
                print(f"{name}: " + ", ".join(f"{ms:.0f}" for ms in runs) + " ms", file=sys.stderr)
                summary[f"mouseup_to_outline_ms_{name}"] = {
                    "median": round(statistics.median(runs)),
                    "min": round(min(runs)),
                    "max": round(max(runs)),
                }
            browser.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
