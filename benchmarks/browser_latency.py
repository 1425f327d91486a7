"""Mouse-up to outline visible, in a real browser, for a 1 MP and a 12 MP image,
and the server's peak memory over the whole session.

Starts the app on 127.0.0.1 with a random-weight checkpoint (by default a tiny
SAM: its prompt encoder and mask decoder are SAM's full-size ones, so the
prompt path costs what it costs with vit_b), uploads a generated image, drags
five boxes with the mouse and times, in the browser's own clock, from the
mouse-up to the new result image decoded. ``--model vit_t`` (or vit_b, …)
serves a full-size model instead, to see what a deployment holds in memory.
``--zoom 1 4`` also times each size zoomed in 4× (the page's Zoom step), the
boxes drawn inside the view.

    python benchmarks/browser_latency.py [--model tiny|vit_b|vit_l|vit_h|vit_t] [--zoom 1 4]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samdash.bench import FULL_SIZES, boxes, scene  # noqa: E402
from samdash.models import ARCHITECTURES  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: E402
from tests.browser.harness import CANVAS, draw_box, upload, wait_for_canvas, wait_for_objects  # noqa: E402
from tests.tiny_sam import build_tiny_sam  # noqa: E402


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


def _scene_jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(scene(width, height)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _aspect(page: Page) -> float:
    """The canvas's width / height, or 0 while there is none (it is replaced while an image is encoded)."""
    try:
        box = page.locator(CANVAS).first.bounding_box(timeout=2000)
    except PlaywrightTimeoutError:
        return 0.0
    return box["width"] / box["height"] if box else 0.0


def _latencies(page: Page, width: int, height: int, zoom: int) -> list[float]:
    upload(page, f"scene-{width}x{height}.jpg", _scene_jpeg(width, height))
    # The sample shown before the upload is 3:2 and the scene 4:3: wait for the scene's canvas, however long the encode.
    deadline = time.monotonic() + 300
    while abs(_aspect(page) - width / height) > 0.01:
        if time.monotonic() > deadline:
            raise TimeoutError("the uploaded image never reached the canvas")
        time.sleep(0.2)
    wait_for_canvas(page, settle=2.0, timeout=120)
    if zoom > 1:  # around the image's centre: the boxes, scaled down by the zoom, land inside the view
        page.get_by_role("radio", name=f"{zoom}×", exact=True).click()
        page.get_by_text(f"Result · {zoom}×").wait_for(timeout=60_000)
        wait_for_canvas(page, settle=2.0, timeout=120)
    results = []
    for i, (x0, y0, x1, y1) in enumerate(boxes(width, height)):
        page.evaluate(_ARM)
        draw_box(page, (x0 / zoom, y0 / zoom), (x1 / zoom, y1 / zoom), image_size=(width / zoom, height / zoom))
        shown = page.evaluate("window.__shown")
        results.append(shown - page.evaluate("window.__mouseUp"))
        wait_for_objects(page, i + 1)
    return results


def _peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", choices=["tiny", *ARCHITECTURES], help="random weights of this model")
    parser.add_argument("--zoom", type=int, nargs="+", default=[1], help="zoom steps to time each size at (1, 2, 4, …)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / f"{args.model}.pth"
        model = build_tiny_sam() if args.model == "tiny" else ARCHITECTURES[args.model].build()
        torch.save(model.state_dict(), checkpoint)
        del model
        env = {"SAMDASH_CHECKPOINT": str(checkpoint), "SAMDASH_MODEL_DIR": tmp}
        if args.model != "tiny":
            env["SAMDASH_MODEL_TYPE"] = args.model
        with serve_app(env, Path(tmp) / "streamlit.log") as served, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            summary: dict[str, object] = {"model": args.model}
            for (name, (width, height)), zoom in itertools.product(FULL_SIZES.items(), args.zoom):
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(served.url)
                runs = _latencies(page, width, height, zoom)
                page.close()
                name = name if zoom == 1 else f"{name}_zoom{zoom}"
                print(f"{name}: " + ", ".join(f"{ms:.0f}" for ms in runs) + " ms", file=sys.stderr)
                summary[f"mouseup_to_outline_ms_{name}"] = {
                    "median": round(statistics.median(runs)),
                    "min": round(min(runs)),
                    "max": round(max(runs)),
                }
            summary["server_peak_rss_mb"] = round(_peak_rss_mb(served.pid))
            browser.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
