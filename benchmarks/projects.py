"""What projects cost: the autosave after every change, the disk a project takes, and reopening work after a restart.

    python benchmarks/projects.py [--quick] [--images N] [--encoder tiny|vit_b] [--browser]
    python benchmarks/projects.py --next [--quick]

a. Autosave per change at 12 MP (4000×3000): ``Store.save_workspace`` timed
   after every change of a realistic sequence made through the page's own
   object model (``Workspace.sync`` with the canvas's drawing): a box makes
   an object, two include/exclude points refine it, another candidate is
   picked, it is renamed; every fourth object, the oldest one is deleted.
   Objects come from SAM's full-size prompt encoder and mask decoder (the
   same in every SAM model) on the embedding of a random-weight encoder:
   ``tiny`` by default (a two-block ViT, fast), or ``vit_b`` at full size.
   Random weights make speckled masks, a worst case for the masks' run-length
   codes. The decode of the same changes is timed too, for the ratio.
b. Disk: a data directory of N images (default 200) × 20 objects, each made
   by a box and refined by two points, at 12 MP. The images are generated
   JPEGs (smooth shapes, light noise, quality 90); the 20 objects are made
   once and saved onto every image (each image has rows of its own). They
   keep the decoder's prompts and logits, but their masks are the discs the
   boxes were drawn around, as a trained SAM would outline them: the random
   decoder's speckled masks take megabytes each at 12 MP (their size per
   object is reported apart). Reports MB of the database, the image files and
   the thumbnails, KB per object and what a saved state is made of, and the
   size of one image's embedding file, kept on disk under a budget.
c. Restart: a fresh ``Store`` and ``load_workspace`` of an image with 50 of
   those objects at 12 MP (saved with their outlines, as the page saves what it
   has shown), in this process (warm page cache) and in a fresh Python
   process (imports included), and the 12 MP JPEG's decode, which a reload
   also does. ``--browser`` adds, in a real browser, the time from
   ``page.goto(URL)`` to "Objects (50)", the outlined result and the canvas
   after the server is killed and started again, with the image's embedding
   already on disk (the tiny SAM: no encode): in the analyst's own browser
   and in one new to the page, beside a one-line Streamlit page served the
   same way (Streamlit's own share of that time on this machine).

d. Export: that data directory's project as each dataset format (COCO, YOLO-seg, masks; ``samdash.dataset``), each
   in a fresh process: seconds, ms per object, the process's peak RSS while it exports (sampled every 20 ms)
   against its RSS before, the zip's size.

``--next`` measures instead, in a real browser with a random-weight vit_b at
12 MP, the time from a click on Next to the next image's canvas ready (shown,
encoded, the page's run over): once encode-ahead has encoded that image, and
when it had no time (Next clicked as soon as the image before was ready).

Human-readable lines first; the last line is one JSON object. The fp32 GEMM
rate is measured at the start and the end, to tell a slow machine from a slow
program.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samdash.bench import build_model, gemm_gflops  # noqa: E402
from samdash.canvas import EXCLUDE_COLOR, INCLUDE_COLOR, BackgroundFit, shapes_from_canvas  # noqa: E402
from samdash.drawings import Applied, Workspace  # noqa: E402
from samdash.embedding_disk import DiskEmbeddings  # noqa: E402
from samdash.engine import Embedding, EmbeddingCache  # noqa: E402
from samdash.sam_engine import SamEngine  # noqa: E402
from samdash.imaging import load_image, pixel_hash, thumbnail_jpeg  # noqa: E402
from samdash.masks import CompactMask  # noqa: E402
from samdash.records import state_to_bytes  # noqa: E402
from samdash.segments import Segment  # noqa: E402
from samdash.store import DB_NAME, SavedImage, Store  # noqa: E402

FULL = {"size": (4000, 3000), "sequence_objects": 12, "images": 200, "objects_per_image": 20, "restart_objects": 50, "repeats": 5}
QUICK = {"size": (800, 600), "sequence_objects": 3, "images": 3, "objects_per_image": 4, "restart_objects": 6, "repeats": 2}
SAME_SIZE = BackgroundFit(1.0, 1.0, 0.0, 0.0)  # drawings in image pixels
JPEG_QUALITY = 90


def _ms_stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered), 2), "p95": round(p95, 2), "max": round(ordered[-1], 2), "n": len(ordered)}


def _photo(width: int, height: int, seed: int) -> np.ndarray:
    """A generated picture that compresses about like a photo: smooth shading, shapes, light noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, size=(6, 8, 3)).astype(np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.circle(image, centre, int(rng.integers(width // 40, width // 8)), colour, -1, lineType=cv2.LINE_AA)
    noise = rng.normal(0, 4, size=(height // 4, width // 4, 3)).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(image + noise + rng.normal(0, 2, size=image.shape), 0, 255).astype(np.uint8)


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return data.tobytes()


def _places(width: int, height: int, count: int) -> list[tuple[int, int, int]]:
    """(x, y, radius) of ``count`` objects on a grid over the image."""
    columns = int(np.ceil(np.sqrt(count * width / height)))
    rows = int(np.ceil(count / columns))
    radius = int(min(width / columns, height / rows) * 0.3)
    return [(int((i % columns + 0.5) * width / columns), int((i // columns + 0.5) * height / rows), radius) for i in range(count)]


def _rect(x: int, y: int, r: int) -> dict:
    return {"type": "rect", "left": x - 1.2 * r, "top": y - 1.2 * r, "width": 2.4 * r, "height": 2.4 * r, "strokeWidth": 0}


def _point(x: float, y: float, include: bool) -> dict:
    fill = INCLUDE_COLOR if include else EXCLUDE_COLOR
    return {"type": "circle", "left": x - 6, "top": y - 6, "radius": 6, "strokeWidth": 0, "fill": fill}


def _refining_points(x: int, y: int, r: int) -> list[dict]:
    """An include point inside the object and an exclude point just outside it."""
    return [_point(x + 0.5 * r * np.cos(2.1), y + 0.5 * r * np.sin(2.1), True), _point(x + 1.1 * r * np.cos(4.2), y + 1.1 * r * np.sin(4.2), False)]


class _Drawer:
    """The canvas side: the whole drawing sent after every change, as the page does."""

    def __init__(self, workspace: Workspace, engine: SamEngine, embedding: Embedding, size: tuple[int, int]) -> None:
        self.workspace, self.engine, self.embedding, self.size = workspace, engine, embedding, size
        self.drawing: list[dict] = []
        self.decode_ms: list[float] = []

    def draw(self, obj: dict) -> None:
        self.drawing.append(obj)
        start = time.perf_counter()
        refused = self.workspace.sync(shapes_from_canvas({"objects": self.drawing}, SAME_SIZE), self.engine, self.embedding, self.size)
        self.decode_ms.append((time.perf_counter() - start) * 1000)
        assert not refused, refused

    def remounted(self) -> None:
        """After a deletion the canvas is remounted with the drawings left."""
        self.drawing = list(self.workspace.drawing["objects"]) if self.workspace.drawing else []


def _new_image(store: Store, project_id: str, rgb: np.ndarray, name: str):
    """Added as the page adds an upload: named by the hash of its pixels as decoded from the file (JPEG is lossy)."""
    data = _jpeg(rgb)
    image = load_image(data, name)
    info, _ = store.add_image(project_id, data, name, image.content_hash, (image.width, image.height), thumbnail_jpeg(image.rgb))
    return info, data


def bench_autosave(engine: SamEngine, settings: dict, root: Path) -> dict[str, object]:
    width, height = settings["size"]
    store = Store(root / "autosave")
    project = store.create_project("Autosave")
    rgb = _photo(width, height, 0)
    info, _ = _new_image(store, project.id, rgb, "autosave.jpg")
    embedding = engine.embed(rgb, info.content_hash)
    workspace, saved = store.load_workspace(info)
    drawer = _Drawer(workspace, engine, embedding, (width, height))
    saves: dict[str, list[float]] = {"box": [], "point": [], "pick": [], "rename": [], "delete": []}
    decodes: dict[str, list[float]] = {"box": [], "point": []}

    def save(kind: str) -> None:
        start = time.perf_counter()
        changed = store.save_workspace(workspace, saved)
        saves[kind].append((time.perf_counter() - start) * 1000)
        assert changed, kind

    for index, (x, y, r) in enumerate(_places(width, height, settings["sequence_objects"])):
        drawer.draw(_rect(x, y, r))
        decodes["box"].append(drawer.decode_ms[-1])
        save("box")
        for point in _refining_points(x, y, r):
            drawer.draw(point)
            decodes["point"].append(drawer.decode_ms[-1])
            save("point")
        segment = workspace.active
        segment.pick = (segment.pick + 1) % len(segment.candidates)
        save("pick")
        segment.name = f"cell {index + 1}"
        save("rename")
        if index % 4 == 3:
            workspace.remove(workspace.segments[0].id)
            drawer.remounted()
            save("delete")
    every = [ms for values in saves.values() for ms in values]
    decode_every = decodes["box"] + decodes["point"]
    db_bytes = sum(path.stat().st_size for path in (root / "autosave").glob(f"{DB_NAME}*"))
    store.close()
    result = {
        "autosave_ms": _ms_stats(every),
        "autosave_ms_by_change": {kind: _ms_stats(values) for kind, values in saves.items() if values},
        "decode_ms_per_drawing": _ms_stats(decode_every),
        "autosave_over_decode": round(statistics.median(every) / statistics.median(decode_every), 3),
        "changes": len(every),
        "objects_left": len(workspace.segments),
        "db_mb_after_sequence": round(db_bytes / 1e6, 2),
    }
    print(
        f"a. autosave per change at {width}×{height}: median {result['autosave_ms']['median']} ms, "
        f"p95 {result['autosave_ms']['p95']} ms over {len(every)} changes ("
        + ", ".join(f"{kind} {item['median']}" for kind, item in result["autosave_ms_by_change"].items())
        + f"); the drawing's decode takes {result['decode_ms_per_drawing']['median']} ms median → autosave adds "
        f"{100 * result['autosave_over_decode']:.1f} % to a drawing",
        flush=True,
    )
    return result


def _object_pool(engine: SamEngine, settings: dict, count: int, root: Path) -> tuple[Workspace, Workspace, float]:
    """``count`` objects, each a box refined by two points, on a generated image, as the random decoder makes them
    and with the masks a trained one would give; and the image's embedding file's MB.

    Random weights make speckled masks, whose run-length codes at 12 MP are megabytes: the second workspace has
    the same states (prompts, candidates' logits) with the disc each box was drawn around as mask.
    """
    width, height = settings["size"]
    rgb = _photo(width, height, 1)
    content_hash = pixel_hash(rgb)
    embedding = engine.embed(rgb, content_hash)
    workspace = Workspace(content_hash)
    drawer = _Drawer(workspace, engine, embedding, (width, height))
    places = _places(width, height, count)
    for x, y, r in places:
        drawer.draw(_rect(x, y, r))
        for point in _refining_points(x, y, r):
            drawer.draw(point)
    discs = {}
    for segment, (x, y, r) in zip(workspace.segments, places):
        disc = np.zeros((height, width), np.uint8)
        cv2.circle(disc, (x, y), r, 1, -1)
        discs[segment.id] = CompactMask.encode(disc.astype(bool))
    segments = [Segment(s.id, s.name, s.color, replace(s.state, mask=discs[s.id]), s.visible) for s in workspace.segments]
    applied = [
        Applied(entry.shape, entry.segment_id, replace(entry.before, mask=discs[entry.segment_id]) if entry.before is not None else None)
        for entry in workspace.applied
    ]
    shaped = Workspace.restored(content_hash, segments, applied, workspace.active_id, workspace.next_id)
    disk = DiskEmbeddings(root / "embedding", 1 << 30)
    disk.save(replace(embedding, features=embedding.features.cpu().numpy()))
    emb_mb = sum(path.stat().st_size for path in (root / "embedding").iterdir()) / 1e6
    return workspace, shaped, emb_mb


def _replicated(workspace: Workspace, count: int) -> Workspace:
    """``count`` objects made of the pool's, each with states of its own (saved as rows of their own)."""
    segments, applied = [], []
    for n in range(count):
        source = workspace.segments[n % len(workspace.segments)]
        copies: dict[int, object] = {}

        def own(state):
            return copies.setdefault(id(state), replace(state)) if state is not None else None

        segments.append(Segment(n + 1, f"object {n + 1}", source.color, own(source.state), source.visible))
        applied += [Applied(entry.shape, n + 1, own(entry.before)) for entry in workspace.applied if entry.segment_id == source.id]
    return Workspace.restored(workspace.image_hash, segments, applied, count, count + 1)


def _state_kb(workspace: Workspace) -> dict[str, float]:
    """KB of saved states: an object's current one and one kept for undo (its logits rounded), medians; of which
    the mask's run-length code; and all of an object's (its state and its drawings' undo states), on average."""
    current = [len(state_to_bytes(segment.state)) for segment in workspace.segments]
    undo = [len(state_to_bytes(entry.before)) for entry in workspace.applied if entry.before is not None]
    rle = [len(segment.compact_mask.counts) for segment in workspace.segments]
    return {
        "current": round(statistics.median(current) / 1e3, 1),
        "undo": round(statistics.median(undo) / 1e3, 1) if undo else 0.0,
        "mask_rle": round(statistics.median(rle) / 1e3, 1),
        "per_object": round((sum(current) + sum(undo)) / len(current) / 1e3, 1),
    }


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def bench_disk(pool: Workspace, speckled: Workspace, emb_mb: float, settings: dict, images: int, root: Path) -> dict[str, object]:
    width, height = settings["size"]
    data_dir = root / "disk"
    store = Store(data_dir)
    project = store.create_project("Disk")
    base = _photo(width, height, 2)
    start = time.perf_counter()
    objects = 0
    for n in range(images):
        # Each image its own pixels: the same picture shifted, with a mark of its own.
        rgb = np.roll(base, shift=(37 * n) % width, axis=1)
        cv2.putText(rgb, f"{n:04d}", (width // 20, height // 5), cv2.FONT_HERSHEY_SIMPLEX, width / 500, (255, 255, 255), max(1, width // 400))
        info, _ = _new_image(store, project.id, rgb, f"image-{n:04d}.jpg")
        assert store.save_workspace(pool, SavedImage(info.id, info.revision))
        objects += len(pool.segments)
        if n and n % 50 == 0:
            print(f"   … {n} images written", flush=True)
    store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    seconds = time.perf_counter() - start
    db_mb = sum(path.stat().st_size for path in data_dir.glob(f"{DB_NAME}*")) / 1e6
    images_mb, thumbs_mb = _dir_mb(data_dir / "images"), _dir_mb(data_dir / "thumbnails")
    result = {
        "images": images,
        "objects_per_image": len(pool.segments),
        "objects": objects,
        "db_mb": round(db_mb, 2),
        "images_mb": round(images_mb, 1),
        "thumbnails_mb": round(thumbs_mb, 2),
        "total_mb": round(db_mb + images_mb + thumbs_mb, 1),
        "db_kb_per_object": round(db_mb * 1000 / objects, 1),
        "state_kb": _state_kb(pool),
        "state_kb_speckled_masks": _state_kb(speckled),
        "image_mb_each": round(images_mb / images, 2),
        "embedding_mb_each": round(emb_mb, 2),
        "write_s": round(seconds, 1),
    }
    print(
        f"b. {images} images × {len(pool.segments)} objects at {width}×{height}: database {result['db_mb']} MB "
        f"({result['db_kb_per_object']} KB per object: its state {result['state_kb']['current']} KB and two undo states "
        f"of {result['state_kb']['undo']} KB each; with the random decoder's speckled masks "
        f"{result['state_kb_speckled_masks']['per_object']} KB), images {result['images_mb']} MB ({result['image_mb_each']} MB each), "
        f"thumbnails {result['thumbnails_mb']} MB; an encoded image's embedding file adds {result['embedding_mb_each']} MB "
        f"(under the embeddings' budget)",
        flush=True,
    )
    return result


_EXPORT = """
import sys, threading, time
sys.path.insert(0, {root!r})
from pathlib import Path
from samdash.dataset import export_project
from samdash.store import Store

def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6

store = Store(Path({data!r}))
[project] = store.projects()
before, peak, running = rss_mb(), [0.0], [True]

def sample():  # the process's resident memory every 20 ms while the export runs
    while running[0]:
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.02)

sampler = threading.Thread(target=sample)
sampler.start()
start = time.perf_counter()
report = export_project(store, project.id, {fmt!r}, Path({out!r}))
seconds = time.perf_counter() - start
running[0] = False
sampler.join()
print(seconds, before, max(peak[0], rss_mb()), report.objects)
"""


def bench_export(root: Path, images: int) -> dict[str, object]:
    """The disk measurement's project exported as each dataset format, each in a fresh process (its own peak RSS)."""
    result: dict[str, object] = {}
    for fmt in ("coco", "yolo", "masks"):
        out = root / f"export-{fmt}.zip"
        script = _EXPORT.format(root=str(ROOT), data=str(root / "disk"), fmt=fmt, out=str(out))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        seconds, before_mb, peak_mb, objects = (float(value) for value in done.stdout.split())
        result[fmt] = {
            "seconds": round(seconds, 1),
            "ms_per_object": round(seconds * 1000 / max(objects, 1), 1),
            "rss_before_mb": round(before_mb),
            "peak_rss_mb": round(peak_mb),
            "zip_mb": round(out.stat().st_size / 1e6, 1),
        }
        out.unlink()
    print(
        f"d. export of the {images}-image project: "
        + "; ".join(f"{fmt} {r['seconds']} s ({r['ms_per_object']} ms per object), peak RSS {r['peak_rss_mb']} MB "
                    f"(process at {r['rss_before_mb']} MB before), zip {r['zip_mb']} MB" for fmt, r in result.items()),
        flush=True,
    )
    return result


_FRESH = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, {root!r})
from samdash.store import Store
imported = time.perf_counter()
store = Store({data!r})
workspace, _ = store.load_workspace(store.image({image}))
assert len(workspace.segments) == {count}
print((imported - start) * 1000, (time.perf_counter() - imported) * 1000)
"""


def bench_restart(pool: Workspace, settings: dict, root: Path) -> tuple[dict[str, object], str]:
    width, height = settings["size"]
    count = settings["restart_objects"]
    data_dir = root / "restart"
    store = Store(data_dir)
    project = store.create_project("Restart")
    info, data = _new_image(store, project.id, _photo(width, height, 3), "restart.jpg")
    workspace = _replicated(pool, count)
    for segment in workspace.segments:
        segment.outline()  # the page draws every object (tracing its outline) before the run that made it saves it
    assert store.save_workspace(workspace, SavedImage(info.id, info.revision))
    store.close()
    opened, loaded, decoded, fresh, imports, fresh_load = [], [], [], [], [], []
    for _ in range(settings["repeats"]):
        start = time.perf_counter()
        store = Store(data_dir)
        image = store.image(info.id)
        middle = time.perf_counter()
        workspace, _ = store.load_workspace(image)
        end = time.perf_counter()
        assert len(workspace.segments) == count
        store.close()
        opened.append((middle - start) * 1000)
        loaded.append((end - middle) * 1000)
        start = time.perf_counter()
        load_image((data_dir / info.file).read_bytes(), info.name)
        decoded.append((time.perf_counter() - start) * 1000)
        script = _FRESH.format(root=str(ROOT), data=str(data_dir), image=info.id, count=count)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        fresh.append((time.perf_counter() - start) * 1000)
        imported, load = (float(value) for value in done.stdout.split())
        imports.append(imported)
        fresh_load.append(load)
    result = {
        "objects": count,
        "store_open_ms": _ms_stats(opened),
        "load_workspace_ms": _ms_stats(loaded),
        "store_open_and_load_ms": _ms_stats([a + b for a, b in zip(opened, loaded)]),
        "fresh_process_ms": _ms_stats(fresh),
        "fresh_process_imports_ms": _ms_stats(imports),
        "fresh_process_open_and_load_ms": _ms_stats(fresh_load),
        "image_decode_ms": _ms_stats(decoded),
    }
    print(
        f"c. reopen {count} objects at {width}×{height}: Store() {result['store_open_ms']['median']} ms + load_workspace "
        f"{result['load_workspace_ms']['median']} ms (warm page cache); a fresh Python process, imports included, "
        f"{result['fresh_process_ms']['median']} ms (importing samdash.store, with NumPy, OpenCV and Pillow, "
        f"{result['fresh_process_imports_ms']['median']} ms; Store() + load_workspace "
        f"{result['fresh_process_open_and_load_ms']['median']} ms); the JPEG's decode {result['image_decode_ms']['median']} ms",
        flush=True,
    )
    return result, project.id


_FLOOR_APP = """
import streamlit as st

st.set_page_config(layout="wide")
with st.container(key="objects"):
    st.markdown("Objects (0)")
"""


def bench_browser_reload(root: Path, project_id: str, count: int, starts: int = 3) -> dict[str, object]:
    """A server killed and started again on the restart measurement's data directory, and the image's URL opened
    in the analyst's own browser (Streamlit's scripts cached, the column's width in its cookie) and in a browser
    that never saw the page (a teammate's), timed from ``page.goto`` to the object table ("Objects (50)"), to the
    result with its outlines, and to the canvas.

    A first server encodes the image (the tiny SAM) and keeps its embedding on disk, as any server does. The same
    is timed for a page of one line of text, served the same way: what Streamlit itself takes here.
    """
    import torch  # noqa: PLC0415 - the browser part only
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, _free_port, serve_app  # noqa: PLC0415
    from tests.browser.harness import CANVAS, RESULT_IMAGE, wait_for_objects  # noqa: PLC0415
    from tests.tiny_sam import build_tiny_sam  # noqa: PLC0415

    checkpoint = root / "tiny_sam.pth"
    torch.save(build_tiny_sam().state_dict(), checkpoint)
    data_dir = root / "restart"
    floor_app = root / "floor_app.py"
    floor_app.write_text(_FLOOR_APP)
    env = {"SAMDASH_CHECKPOINT": str(checkpoint), "SAMDASH_MODEL_DIR": str(root / "models"), "SAMDASH_DATA_DIR": str(data_dir)}
    query = f"/?project={project_id}&image=1"
    port = _free_port()  # one port for every start: the browser's cache is kept per origin
    times: dict[str, list[float]] = {}

    def opened(page, url: str, what: str, objects: int, full: bool) -> None:
        start = time.perf_counter()
        page.goto(url)
        wait_for_objects(page, objects, timeout=300)
        times.setdefault(f"{what}_objects_ms", []).append((time.perf_counter() - start) * 1000)
        if full:
            page.locator(RESULT_IMAGE).first.wait_for(timeout=300_000)
            times.setdefault(f"{what}_result_ms", []).append((time.perf_counter() - start) * 1000)
            page.locator(CANVAS).first.wait_for(timeout=300_000)
            times.setdefault(f"{what}_canvas_ms", []).append((time.perf_counter() - start) * 1000)

    def restarted(browser, own, script: Path, query: str, objects: int, what: str, log: str) -> None:
        """Two starts of the server: the analyst's own tab opens the page after the first, a new browser after the second."""
        full = script.name == "streamlit_app.py"
        for whose in ("own", "new"):
            started = time.perf_counter()
            with serve_app(env, root / f"{log}-{whose}.log", port=port, script=script) as served:
                if full and whose == "own":
                    times.setdefault("server_start_s", []).append(time.perf_counter() - started)
                if whose == "own":
                    opened(own, served.url + query, f"{what}_own", objects, full)
                    own.goto("about:blank")  # the tab stays; its page would otherwise reconnect to the next server
                else:
                    context = browser.new_context(viewport={"width": 1500, "height": 1000})
                    opened(context.new_page(), served.url + query, f"{what}_new", objects, full)
                    context.close()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        own = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
        with serve_app(env, root / "encode.log", port=port) as served:
            own.goto(served.url + query)
            wait_for_objects(own, count, timeout=300)
            own.locator(CANVAS).first.wait_for(timeout=300_000)
            deadline = time.monotonic() + 120
            while not list((data_dir / "embeddings").glob("*.emb")):
                if time.monotonic() > deadline:
                    raise TimeoutError("the embedding never reached the disk")
                time.sleep(0.2)
            own.goto("about:blank")
        for start_index in range(starts):
            restarted(browser, own, ROOT / "streamlit_app.py", query, count, "page", f"restart-{start_index}")
            restarted(browser, own, floor_app, "/", 0, "floor", f"floor-{start_index}")
        browser.close()
    result: dict[str, object] = {name: _ms_stats(values) for name, values in times.items() if name.endswith("_ms")}
    result["server_start_s"] = round(statistics.median(times["server_start_s"]), 2)
    result["starts"] = starts
    for whose, label in (("own", "the analyst's own browser"), ("new", "a browser new to the page")):
        print(
            f"c. in {label} after a server restart ({result['server_start_s']} s to come up), embedding on disk: "
            f"page.goto → \"Objects ({count})\" {result[f'page_{whose}_objects_ms']['median']} ms, → result with its "
            f"outlines {result[f'page_{whose}_result_ms']['median']} ms, → canvas {result[f'page_{whose}_canvas_ms']['median']} ms; "
            f"a one-line Streamlit page {result[f'floor_{whose}_objects_ms']['median']} ms (median of {starts} starts)",
            flush=True,
        )
    return result


_READY = """
([number, total]) => {
    const where = [...document.querySelectorAll('[data-testid=stMarkdownContainer]')].some(e => e.innerText.includes(`Image ${number} of ${total}`));
    // The canvas is drawn in its component's shadow root.
    const hosts = document.querySelectorAll('[data-testid=stBidiComponentIsolated], [data-testid=stBidiComponentIsolated] *');
    const canvas = [...hosts].find(e => e.shadowRoot?.querySelector('canvas.upper-canvas')) ?? null;
    const encoded = [...document.querySelectorAll('[data-testid=stCaptionContainer]')].some(e => e.innerText.startsWith('Image encoded in'));
    return where && canvas !== null && encoded && !document.querySelector('[data-stale="true"]');
}
"""


def _ready_after(page, number: int, total: int, action) -> float:
    """Seconds from ``action`` to image ``number`` of ``total`` shown on the canvas, encoded, with the page's run over."""
    start = time.perf_counter()
    action()
    page.wait_for_function(_READY, arg=[number, total], timeout=600_000, polling=50)
    return time.perf_counter() - start


def _embeddings(data_dir: Path) -> int:
    return len(list((data_dir / "embeddings").glob("*.emb")))


def bench_next(root: Path, size: tuple[int, int], model: str = "vit_b", nexts: int = 3) -> dict[str, object]:
    """Next, in a browser, to images encoded ahead and to one whose encode-ahead had no time (random weights).

    A project of ``nexts`` + 2 images: once encode-ahead has encoded the image after the one shown, Next is timed,
    ``nexts`` times (the median is reported). A second project of three images shares the first one: it is then
    shown at once (its embedding is cached), and Next is clicked as soon as it is ready, while encode-ahead has
    only just begun on the second image.
    """
    import torch  # noqa: PLC0415 - this measurement only
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: PLC0415
    from tests.browser.harness import wait_for_run  # noqa: PLC0415

    from tests.tiny_sam import build_tiny_sam  # noqa: PLC0415

    checkpoint = root / f"{model}_random.pth"
    torch.save((build_tiny_sam() if model == "tiny" else build_model(model)).state_dict(), checkpoint)
    data_dir = root / "next"
    store = Store(data_dir)
    width, height = size
    first = _photo(width, height, 10)
    projects = []
    for name, seeds in (("Encoded ahead", range(11, 12 + nexts)), ("No time ahead", (31, 32))):
        project = store.create_project(name)
        for n, rgb in enumerate([first, *(_photo(width, height, seed) for seed in seeds)]):
            _new_image(store, project.id, rgb, f"{name[:2]}-{n + 1}.jpg")
        projects.append((project.id, len(seeds) + 1))
    store.close()
    env = {"SAMDASH_CHECKPOINT": str(checkpoint), "SAMDASH_MODEL_DIR": str(root / "models"), "SAMDASH_DATA_DIR": str(data_dir)}
    if model != "tiny":
        env["SAMDASH_MODEL_TYPE"] = model
    result: dict[str, object] = {"model": f"{model} (random weights)", "image_size": [width, height]}

    def encoded(count: int) -> float:
        """Seconds until ``count`` embeddings are on disk."""
        start = time.perf_counter()
        while _embeddings(data_dir) < count:
            if time.perf_counter() - start > 900:
                raise TimeoutError("encode-ahead did not finish")
            time.sleep(0.2)
        return time.perf_counter() - start

    with serve_app(env, root / "next.log") as served, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        (ahead, total), (no_time, few) = projects
        click_next = lambda: page.get_by_role("button", name="Next").click()  # noqa: E731
        result["first_image_s"] = round(_ready_after(page, 1, total, lambda: page.goto(f"{served.url}/?project={ahead}&image=1")), 2)
        wait_for_run(page)
        result["encode_ahead_two_images_s"] = round(encoded(3), 2)  # the first image, and the next two encoded ahead
        times = []
        for number in range(2, 2 + nexts):
            encoded(number + 1)  # the image after the one Next opens is encoded ahead too, not during the measurement
            times.append(_ready_after(page, number, total, click_next))
            wait_for_run(page)
        result["next_encoded_ahead_s"] = {"median": round(statistics.median(times), 2), "each": [round(t, 2) for t in times]}
        encoded(total)  # nothing of this project is encoding during the next measurement
        page.close()
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        shown = _ready_after(page, 1, few, lambda: page.goto(f"{served.url}/?project={no_time}&image=1"))
        result["first_image_cached_s"] = round(shown, 2)
        result["next_no_time_ahead_s"] = round(_ready_after(page, 2, few, click_next), 2)
        caption = page.locator("[data-testid=stCaptionContainer]").filter(has_text="Image encoded in").first.inner_text()
        result["encode_s"] = float(caption.split("Image encoded in ")[1].split(" s")[0])
        browser.close()
    median = result["next_encoded_ahead_s"]["median"]
    result["speedup"] = round(result["next_no_time_ahead_s"] / median, 1)
    print(
        f"next: to an image encoded ahead {median} s (median of {nexts}: {result['next_encoded_ahead_s']['each']}), to "
        f"one whose encode-ahead had no time {result['next_no_time_ahead_s']} s (its encode {result['encode_s']} s) → "
        f"{result['speedup']}×; the first image took {result['first_image_s']} s, encoding the next two ahead "
        f"{result['encode_ahead_two_images_s']} s more",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small images and few objects: a smoke run of under a minute")
    parser.add_argument("--images", type=int, help=f"images in the disk measurement (default {FULL['images']})")
    parser.add_argument("--encoder", choices=["tiny", "vit_b"], default="tiny", help="the random-weight encoder (the decoder is SAM's)")
    parser.add_argument("--browser", action="store_true", help="also time a reload after a server restart in a real browser")
    parser.add_argument("--next", action="store_true", help="instead: Next in a browser, with and without encode-ahead (vit_b; tiny with --quick)")
    args = parser.parse_args(argv)
    if args.next:
        with tempfile.TemporaryDirectory(prefix="samdash-next-") as tmp:
            summary = {"gemm_gflops_start": gemm_gflops()}
            # --quick: the tiny SAM on small images, a smoke run of the measurement.
            summary["next"] = bench_next(Path(tmp), QUICK["size"] if args.quick else FULL["size"], "tiny" if args.quick else "vit_b")
            summary["gemm_gflops_end"] = gemm_gflops()
        print(json.dumps(summary))
        return 0
    settings = dict(QUICK if args.quick else FULL)
    if args.images is not None:
        settings["images"] = max(1, args.images)
    summary: dict[str, object] = {
        "mode": "quick" if args.quick else "full",
        "image_size": list(settings["size"]),
        "encoder": args.encoder,
        "decoder": "SAM's prompt encoder and mask decoder, random weights",
        "gemm_gflops_start": gemm_gflops(),
    }
    print(f"fp32 GEMM {summary['gemm_gflops_start']} GFLOP/s", flush=True)
    engine = SamEngine(build_model(args.encoder), args.encoder, EmbeddingCache(1 << 30))
    with tempfile.TemporaryDirectory(prefix="samdash-projects-") as tmp:
        root = Path(tmp)
        summary["autosave"] = bench_autosave(engine, settings, root)
        speckled, pool, emb_mb = _object_pool(engine, settings, settings["objects_per_image"], root)
        summary["disk"] = bench_disk(pool, speckled, emb_mb, settings, settings["images"], root)
        summary["export"] = bench_export(root, settings["images"])
        summary["restart"], project_id = bench_restart(pool, settings, root)
        if args.browser:
            summary["restart"]["browser"] = bench_browser_reload(root, project_id, settings["restart_objects"])
    summary["gemm_gflops_end"] = gemm_gflops()
    print(f"fp32 GEMM {summary['gemm_gflops_end']} GFLOP/s at the end", flush=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
