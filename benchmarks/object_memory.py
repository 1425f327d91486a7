"""Memory an analyst's objects cost on a 12 MP image, as the page makes them.

Drives the page's own object model (``Workspace.sync`` with the canvas's
drawing after every change, then each object's outline as the result view
draws it): 20 boxes, each refined by 3 include/exclude points. ``--engine
sam`` uses the tiny SAM, whose prompt encoder and mask decoder are SAM's
full-size ones (its random weights make speckled masks, a worst case for
run-length codes and outlines); ``--engine grabcut`` the offline segmenter,
whose masks have the shape of the objects drawn. Reports
Python-heap growth (``tracemalloc``; numpy arrays are counted, torch tensors
are not, and objects hold none) after the first object is shown and after
all of them, less the full-size masks in the process-wide decode cache
(shared by all sessions and bounded, reported apart); the resident-memory
growth over the same work; and what the objects hold, by kind: logits
(current and undo states), run-length codes and traced outlines.

    python benchmarks/object_memory.py [--engine sam|grabcut] [--objects 20] [--points 3] [--size 4000x3000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samdash.bench import build_model  # noqa: E402
from samdash.canvas import EXCLUDE_COLOR, INCLUDE_COLOR, BackgroundFit, shapes_from_canvas  # noqa: E402
from samdash.drawings import Workspace  # noqa: E402
from samdash.engine import EmbeddingCache  # noqa: E402
from samdash.sam_engine import SamEngine  # noqa: E402
from samdash.grabcut import GrabCutEngine  # noqa: E402
from samdash.memory import give_back, rss_bytes  # noqa: E402

from samdash.masks import cached_bytes  # noqa: E402


SAME_SIZE = BackgroundFit(1.0, 1.0, 0.0, 0.0)


def _scene(width: int, height: int, count: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Discs on a noisy background, one per object, on a grid."""
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(100, 160, size=(height, width, 3), dtype=np.uint8)
    columns = int(np.ceil(np.sqrt(count * width / height)))
    rows = int(np.ceil(count / columns))
    radius = int(min(width / columns, height / rows) * 0.3)
    discs = []
    for index in range(count):
        x = int((index % columns + 0.5) * width / columns)
        y = int((index // columns + 0.5) * height / rows)
        cv2.circle(image, (x, y), radius, (200, 40 + 7 * index % 200, 40), -1)
        discs.append((x, y, radius))
    return image, discs


def _rect(x: int, y: int, r: int) -> dict:
    return {"type": "rect", "left": x - 1.2 * r, "top": y - 1.2 * r, "width": 2.4 * r, "height": 2.4 * r, "strokeWidth": 0}


def _point(x: float, y: float, include: bool) -> dict:
    fill = INCLUDE_COLOR if include else EXCLUDE_COLOR
    return {"type": "circle", "left": x - 6, "top": y - 6, "radius": 6, "strokeWidth": 0, "fill": fill}


def _heap() -> int:
    give_back()
    return tracemalloc.get_traced_memory()[0]


def _held(workspace: Workspace) -> dict[str, float]:
    """MB the objects hold, by kind, counting each array once (undo states share the picked mask's code)."""
    states = [segment.state for segment in workspace.segments]
    states += [entry.before for entry in workspace.applied if entry.before is not None]
    logits = {id(state.candidates): state.candidates.nbytes for state in states}
    codes = {id(state.mask): state.mask.nbytes for state in states}
    outlines = sum(sum(c.nbytes for c in segment.outline()) for segment in workspace.segments)
    return {
        "logits_mb": round(sum(logits.values()) / 1e6, 1),
        "rle_mb": round(sum(codes.values()) / 1e6, 1),
        "outlines_mb": round(outlines / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sam", "grabcut"], default="sam")
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--points", type=int, default=3)
    parser.add_argument("--size", default="4000x3000")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    image, discs = _scene(width, height, args.objects)
    cache = EmbeddingCache(1 << 30)
    engine = SamEngine(build_model("tiny"), "tiny", cache) if args.engine == "sam" else GrabCutEngine(cache)
    embedding = engine.embed(image, "scene")
    tracemalloc.start()
    base = _heap()
    rss_base = rss_bytes()
    workspace = Workspace("scene")
    drawing: list[dict] = []
    first_object = None
    for index, (x, y, r) in enumerate(discs):
        drawing.append(_rect(x, y, r))
        for p in range(args.points + 1):
            if p:
                # Alternate include points inside the disc and exclude points just outside it.
                angle = 2.1 * p
                reach = 0.5 * r if p % 2 else 1.1 * r
                drawing.append(_point(x + reach * np.cos(angle), y + reach * np.sin(angle), include=p % 2 == 1))
            refused = workspace.sync(shapes_from_canvas({"objects": drawing}, SAME_SIZE), engine, embedding, (width, height))
            assert not refused, refused
            for segment in workspace.segments:
                segment.layer()  # the result view traces (or reuses) each outline
        if index == 0:
            first_object = _heap() - base - cached_bytes()
    total = _heap() - base
    rss_growth = rss_bytes() - rss_base
    shared = cached_bytes()
    result = {
        "engine": args.engine,
        "image": f"{width}x{height}",
        "objects": len(workspace.segments),
        "points_per_object": args.points,
        "first_object_session_mb": round(first_object / 1e6, 2),
        "all_objects_mb": round(total / 1e6, 1),
        "of_which_shared_mask_cache_mb": round(shared / 1e6, 1),
        "session_mb": round((total - shared) / 1e6, 1),
        "held_by_objects": _held(workspace),
        "rss_growth_mb": round(rss_growth / 1e6, 1),
        "image_mb": round(image.nbytes / 1e6, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
