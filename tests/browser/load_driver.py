"""Several people on one server at once: each in its own browser, with its own image and its own objects.

Used by the load test (a few small sessions) and by ``benchmarks/load_sessions.py``
(eight 12 MP sessions). Every session uploads a scene of its own, drags its boxes
and clicks its points with the mouse, and records what a person would notice:
errors in the page, a drawing that never became an object, objects that are not
its own, and how long each prompt took from mouse-up to the new result shown.
"""

from __future__ import annotations

import io
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from playwright.sync_api import Page, sync_playwright
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.harness import choose_mode, object_cells, result_pixels, settled_box, upload

Box = tuple[float, float, float, float]
# What a person aims at: the image on the canvas (its drawing layer is meant to lie exactly on top of it).
IMAGE = "[data-testid=stBidiComponentIsolated] canvas.dc-background-canvas:visible"

# Times in the browser's own clock, from the mouse-up to the next new result image decoded and painted (an image
# that changes before the mouse-up, from a rerun still under way, does not count).
_ARM = """
() => {
    let before = null;
    window.__mouseUp = null;
    document.addEventListener('mouseup', () => {
        before = document.querySelector('.st-key-result img')?.src;
        window.__mouseUp = performance.now();
    }, {capture: true, once: true});
    window.__shown = new Promise(resolve => {
        const check = async () => {
            const img = document.querySelector('.st-key-result img');
            if (window.__mouseUp === null || !img || img.src === before) return false;
            await img.decode().catch(() => {});
            requestAnimationFrame(() => resolve(performance.now()));
            return true;
        };
        const observer = new MutationObserver(async () => { if (await check()) observer.disconnect(); });
        observer.observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
    });
}
"""
# Every layout shift of the page (Chromium's Layout Instability API), with the elements that moved: a drawing made
# while the canvas moves lands elsewhere than the person aimed.
_WATCH_SHIFTS = """
window.__shifts = [];
new PerformanceObserver(list => {
    for (const entry of list.getEntries()) {
        const moved = (entry.sources || []).map(s => {
            const node = s.node;
            const name = node ? (node.dataset?.testid || (typeof node.className === 'string' && node.className.split(' ')[0])
                                 || node.nodeName) : '?';
            return `${name} y ${Math.round(s.previousRect.y)}→${Math.round(s.currentRect.y)}`;
        });
        window.__shifts.push(`${Math.round(entry.startTime)} ms: ${moved.join(', ')}`);
    }
}).observe({type: 'layout-shift', buffered: true});
"""
_SHOWN = "ms => Promise.race([window.__shown, new Promise(r => setTimeout(() => r(null), ms))])"


@dataclass(frozen=True)
class Plan:
    """What one session uploads and draws (in image pixels)."""

    name: str
    jpeg: bytes
    size: tuple[int, int]
    boxes: list[Box]
    # (x, y), "Include point" or "Exclude point": they refine the last box's object.
    points: list[tuple[tuple[float, float], str]]


def plan_for(index: int, sessions: int, width: int, height: int, boxes: int = 5, points: int = 2, seed: int = 0) -> Plan:
    """Session ``index``'s scene: ``boxes`` discs in a row at a height (and shift) of its own, on a textured background.

    The last disc has a blue block beside it inside its box: an exclude point on the block takes it out of the
    object, and an include point on the background left of the disc adds a patch there, so each point visibly
    changes the object.
    """
    rng = np.random.default_rng(1000 * seed + index)
    texture = rng.normal(0, 12, size=(max(1, height // 8), max(1, width // 8), 3))
    image = np.clip(cv2.resize(texture, (width, height), interpolation=cv2.INTER_LINEAR) + 128, 0, 255).astype(np.uint8)
    radius = width * 0.16 / max(boxes, 1) / 1.6
    y = height * (0.2 + 0.6 * index / max(sessions - 1, 1))
    step = 0.85 / max(boxes, 1)
    shift = 0.35 * step * (index % 2)
    drawn: list[Box] = []
    for k in range(boxes):
        x = width * (0.08 + step * k + shift)
        last = k == boxes - 1
        if last:
            image[int(y - radius / 2) : int(y + radius / 2), int(x) : int(x + 1.8 * radius)] = (40, 60, 200)
        cv2.circle(image, (int(x), int(y)), int(radius), (200, 40 + 35 * k % 200, 40 + 25 * index % 200), -1)
        right = x + (2.0 if last else 1.25) * radius
        drawn.append((x - 1.25 * radius, y - 1.25 * radius, right, y + 1.25 * radius))
    # On the block, and left of the disc inside the box (apart: a click on a point drawn already selects it).
    refine = [((x + 1.4 * radius, y), "Exclude point"), ((x - 1.1 * radius, y), "Include point")]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return Plan(f"scene-{seed}-{index}.jpg", buffer.getvalue(), (width, height), drawn, (refine * points)[:points])


@dataclass
class Report:
    """What one session saw."""

    name: str
    completed: bool = False
    errors: list[str] = field(default_factory=list)  # page errors and console errors, in order
    # Drawings that made no difference in the end: a box whose object is not outlined, a point that never
    # changed its object.
    lost: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    # The server's part of each prompt, as the page's status line says: from the start of the run the drawing
    # triggered to its result sent ("outlined in … ms").
    server_ms: list[float] = field(default_factory=list)
    objects: int | None = None
    own_objects: bool | None = None
    failure: str | None = None  # why the session could not go on
    seconds: float = 0.0
    events: list[str] = field(default_factory=list)
    echo: bool = False  # also print each event to stderr as it happens

    def log(self, start: float, text: str) -> None:
        self.events.append(f"{time.monotonic() - start:7.1f}s {text}")
        if self.echo:
            print(f"[{time.strftime('%H:%M:%S')}] {self.name}: {text}", file=sys.stderr, flush=True)


class _Runs:
    """When the page saw runs of the script start and finish (from the messages on its websocket)."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self.finished: list[float] = []

    def watch(self, page: Page) -> None:
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            return
        message = ForwardMsg()
        try:
            message.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - not ours to judge
            return
        kind = message.WhichOneof("type")
        if kind == "new_session":
            self.started.append(time.monotonic())
        elif kind == "script_finished":
            self.finished.append(time.monotonic())

    def done_since(self, moment: float) -> bool:
        """Whether a run started after ``moment`` and every run started since has finished."""
        later = [t for t in self.started if t > moment]
        return bool(later) and bool(self.finished) and self.finished[-1] > later[-1]


def _choose(page: Page, mode: str, runs: _Runs, report: Report, timeout: float) -> None:
    """Pick a drawing mode and wait for the rerun that takes it to the canvas: until then the canvas draws in the
    previous mode (on a busy server that rerun can start seconds later, and nothing on the page shows it)."""
    clicked = time.monotonic()
    choose_mode(page, mode)
    deadline = time.monotonic() + timeout
    while not runs.done_since(clicked):
        _until(lambda: True, 0, "", report=report)  # gives up if the page has crashed
        if time.monotonic() > deadline:
            raise TimeoutError(f"no run brought {mode} to the canvas")
        page.wait_for_timeout(100)  # lets the page's events (its messages) through


def on_image(page: Page, xy: tuple[float, float], size: tuple[int, int]) -> tuple[float, float]:
    """Where image pixel ``xy`` is shown on the page (the canvas shows the whole image, ``size`` = its width, height).

    A person scrolls what they are about to draw on into view first: a pointer outside the window reaches nothing,
    so a drag that ends below its edge ends where it left the window.
    """
    image = page.locator(IMAGE).first
    box = image.bounding_box()
    assert box is not None, "no image on the canvas"
    y = box["y"] + xy[1] * box["height"] / size[1]
    if not 0 <= y <= page.viewport_size["height"] - 20:
        image.evaluate("canvas => canvas.scrollIntoView({block: 'center'})")
        page.wait_for_timeout(100)
        box = image.bounding_box()
        assert box is not None, "no image on the canvas"
    return box["x"] + xy[0] * box["width"] / size[0], box["y"] + xy[1] * box["height"] / size[1]


def drag_box(page: Page, box: Box, size: tuple[int, int]) -> tuple[float, float]:
    """Drag a box over the image shown on the canvas, from corner to corner (image pixels); return how far the
    image moved on the page meanwhile (0, 0 when it stayed where it was aimed at)."""
    x1, y1 = on_image(page, box[2:], size)  # the lower corner first: it may need the canvas scrolled into view
    x0, y0 = on_image(page, box[:2], size)
    before = page.locator(IMAGE).first.bounding_box()
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()
    after = page.locator(IMAGE).first.bounding_box()
    if before is None or after is None:
        return 0.0, 0.0
    return after["x"] - before["x"], after["y"] - before["y"]


def _canvas_aspect(page: Page) -> float:
    """The width / height of the image on the canvas, 0 while there is none."""
    try:
        box = page.locator(IMAGE).first.bounding_box(timeout=2000)
    except Exception:  # noqa: BLE001 - replaced or not there yet
        return 0.0
    return box["width"] / box["height"] if box else 0.0


def _until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2, report: Report | None = None) -> None:
    """Wait for ``condition``; give up at once if the page has crashed (``report`` has a page error)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if report is not None and (crash := next((e for e in report.errors if e.startswith("pageerror")), None)):
            raise RuntimeError(f"the page crashed: {crash}")
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(interval)


def _status_line(page: Page) -> str:
    try:
        return page.locator(".st-key-status-line").inner_text(timeout=5000)
    except Exception:  # noqa: BLE001 - replaced while Streamlit reruns
        return ""


def _outlined_ms(page: Page, before: str, timeout: float = 5) -> float | None:
    """The server's time for the prompt just shown, once the status line has changed from ``before``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = _status_line(page)
        if text != before and (found := re.search(r"outlined in (\d+) ms", text)):
            return float(found.group(1))
        time.sleep(0.1)
    return None


def _objects_count(page: Page) -> int:
    text = page.locator(".st-key-objects").inner_text(timeout=5000) if page.locator(".st-key-objects").count() else ""
    found = re.search(r"Objects \((\d+)\)", text)
    return int(found.group(1)) if found else 0


def _areas(page: Page, timeout: float = 0) -> list[str]:
    """Each object's area as the object table holds it; tries for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = object_cells(page, "Area")
        except Exception:  # noqa: BLE001 - replaced while Streamlit reruns
            found = []
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _settled(page: Page, settle: float, timeout: float, report: Report) -> dict[str, float]:
    """The box of the image on the canvas once it has kept its place and size for ``settle`` seconds."""

    def read() -> dict[str, float] | None:
        try:
            return page.locator(IMAGE).first.bounding_box(timeout=2000)
        except Exception:  # noqa: BLE001 - the canvas is being replaced
            return None

    return settled_box(read, settle, timeout, "the canvas", check=lambda: _until(lambda: True, 0, "", report=report))


def _stable_result(page: Page, timeout: float = 30) -> np.ndarray:
    """The result image's pixels once two looks in a row agree (and Streamlit is not fading it as stale)."""
    deadline = time.monotonic() + timeout
    previous = None
    fresh = page.locator(".st-key-result [data-testid=stElementContainer]:has([data-testid=stImage])").first
    while time.monotonic() < deadline:
        try:
            now = result_pixels(page) if fresh.get_attribute("data-stale", timeout=5000) == "false" else None
        except Exception:  # noqa: BLE001 - replaced while Streamlit reruns
            now = None
        if now is not None and previous is not None and now.shape == previous.shape and np.array_equal(now, previous):
            return now
        previous = now
        time.sleep(0.3)
    raise TimeoutError("the result image kept changing")


def outline_outside_boxes(shown: np.ndarray, plan: Plan) -> tuple[float, list[int]]:
    """Where the result shown differs from ``plan``'s own image: the share of such pixels outside every box of
    ``plan`` (grown by a margin), and their number inside each box. Another session's image or objects would
    differ elsewhere; an object missing leaves its box unchanged."""
    scene = np.asarray(Image.open(io.BytesIO(plan.jpeg)).convert("RGB"))
    scene = cv2.resize(scene, (shown.shape[1], shown.shape[0]), interpolation=cv2.INTER_AREA)
    changed = np.abs(shown[..., :3].astype(int) - scene.astype(int)).max(axis=-1) > 80
    edge = 8  # the shown image's rounded corners and its anti-aliased rim
    changed[:edge], changed[-edge:], changed[:, :edge], changed[:, -edge:] = False, False, False, False
    scale = shown.shape[1] / plan.size[0]
    inside = np.zeros_like(changed)
    per_box = []
    for x0, y0, x1, y1 in plan.boxes:
        margin = 0.25 * (x1 - x0)
        box = (slice(max(0, int((y0 - margin) * scale)), int((y1 + margin) * scale) + 1),
               slice(max(0, int((x0 - margin) * scale)), int((x1 + margin) * scale) + 1))
        inside[box] = True
        per_box.append(int(changed[box].sum()))
    total = int(changed.sum())
    return (float((changed & ~inside).sum() / total) if total else 0.0), per_box


def run_session(
    url: str,
    plan: Plan,
    *,
    start_together: threading.Barrier | None = None,
    artifacts: Path | None = None,
    prompt_timeout: float = 45,
    image_timeout: float = 300,
    settle: float = 1.0,
    viewport: tuple[int, int] = (1500, 1000),
    echo: bool = False,
    instrument: Callable[[Page, Report], None] | None = None,
) -> Report:
    """One person: open the page, upload ``plan``'s image, draw its boxes and points, check what the page shows.

    Runs its own Playwright and Chromium, so sessions can run in threads at once. Never raises: a failure is
    recorded in the report, with a screenshot in ``artifacts``.
    """
    report = Report(plan.name, echo=echo)
    start = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        page = context.new_page()
        page.set_default_timeout(120_000)

        def error(text: str) -> None:
            report.errors.append(text)
            report.log(start, text.splitlines()[0][:200])

        page.on("pageerror", lambda exc: error(f"pageerror: {exc}"))
        page.on("console", lambda msg: error(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("websocket", lambda ws: ws.on("close", lambda _: report.log(start, "websocket closed")))
        page.add_init_script(_WATCH_SHIFTS)
        runs = _Runs()
        runs.watch(page)
        if instrument is not None:
            instrument(page, report)
        try:
            page.goto(url)
            page.locator(IMAGE).first.wait_for(timeout=image_timeout * 1000)
            _settled(page, 1.0, image_timeout, report)  # sized to its column
            report.log(start, "page shown")
            if start_together is not None:
                start_together.wait(timeout=image_timeout)
            upload(page, plan.name, plan.jpeg)
            report.log(start, "uploaded")
            width, height = plan.size
            _until(lambda: abs(_canvas_aspect(page) - width / height) < 0.01, image_timeout, "the uploaded image never reached the canvas", report=report)
            report.log(start, "image on the canvas")
            _settled(page, settle, image_timeout, report)
            # Boxes in the default mode, as soon as the image is shown: reruns that follow an upload may still be
            # under way, as they are for a person who starts drawing at once.
            expected = 0  # objects the page should list by now
            for i, box in enumerate(plan.boxes):
                page.evaluate(_ARM)
                status = _status_line(page)
                moved = drag_box(page, box, plan.size)
                report.log(start, f"box {i + 1} drawn" + (f", but the image moved by {moved} meanwhile" if any(moved) else ""))
                expected += 1
                try:
                    _until(lambda: _objects_count(page) >= expected, prompt_timeout, "no object", report=report)
                except TimeoutError:
                    # A drawing is gone: this one, or an earlier one that vanished with it. Which, the end tells.
                    expected = _objects_count(page)
                    report.log(start, f"box {i + 1}: {expected} objects instead of {i + 1}")
                    if artifacts is not None:
                        page.screenshot(path=artifacts / f"{Path(plan.name).stem}-box-{i + 1}.png", full_page=True)
                    continue
                shown = page.evaluate(_SHOWN, prompt_timeout * 1000)
                if shown is not None:
                    report.latencies_ms.append(shown - page.evaluate("window.__mouseUp"))
                    if (server := _outlined_ms(page, status)) is not None:
                        report.server_ms.append(server)
            for xy, mode in plan.points:
                _choose(page, mode, runs, report, prompt_timeout)
                areas = _areas(page, timeout=30)
                page.evaluate(_ARM)
                status = _status_line(page)
                page.mouse.click(*on_image(page, xy, plan.size))
                report.log(start, f"{mode} clicked")
                try:
                    _until(lambda: (now := _areas(page)) and now != areas, prompt_timeout, "no change", report=report)
                except TimeoutError:
                    report.lost.append(mode)
                    report.log(start, f"{mode}: its object never changed")
                    continue
                shown = page.evaluate(_SHOWN, prompt_timeout * 1000)
                if shown is not None:
                    report.latencies_ms.append(shown - page.evaluate("window.__mouseUp"))
                    if (server := _outlined_ms(page, status)) is not None:
                        report.server_ms.append(server)
            report.objects = _objects_count(page)
            page.mouse.move(0, 0)
            outside, per_box = outline_outside_boxes(_stable_result(page), plan)
            report.lost[:0] = [f"box {i + 1}" for i, n in enumerate(per_box) if n == 0]
            report.own_objects = report.objects == len(plan.boxes) and outside < 0.02 and all(n > 0 for n in per_box)
            report.log(start, f"{report.objects} objects, {outside:.1%} of the outline outside its boxes, per box {per_box}")
            report.completed = True
            for shift in page.evaluate("window.__shifts"):
                report.log(start, f"layout shift at {shift}")
        except Exception as exc:  # noqa: BLE001 - a session's failure is part of the measurement
            report.failure = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            report.log(start, "FAILED " + traceback.format_exc(limit=3).replace("\n", " | ")[-600:])
        finally:
            if artifacts is not None:
                try:
                    page.screenshot(path=artifacts / f"{Path(plan.name).stem}.png", full_page=True)
                except Exception:  # noqa: BLE001 - a crashed page may not take one
                    pass
            report.seconds = time.monotonic() - start
            context.close()
            browser.close()
    return report


def run_sessions(url: str, plans: list[Plan], timeout: float, **options) -> list[Report]:
    """All ``plans`` at once, one thread and one browser each, uploading together; bounded by ``timeout``."""
    barrier = threading.Barrier(len(plans))
    reports: list[Report | None] = [None] * len(plans)

    def one(i: int) -> None:
        reports[i] = run_session(url, plans[i], start_together=barrier, **options)

    threads = [threading.Thread(target=one, args=(i,), daemon=True, name=f"session-{i}") for i in range(len(plans))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [r if r is not None else Report(p.name, failure="timed out") for r, p in zip(reports, plans)]
