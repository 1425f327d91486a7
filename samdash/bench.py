"""Where the server's time and memory go, measured in one run.

    python -m samdash.bench [--full | --quick] [--models vit_b,...] [--backends eager,sdpa,...] [--repeats N]
    python -m samdash.bench --everything [--quick]

1. Encode: time and peak RSS of one image encode per model and encoder
   backend, each in a fresh process (peak RSS is a per-process high-water
   mark), and each backend's embedding against eager PyTorch's.
2. Prompt → outline on a cached embedding at 1 MP and 12 MP, by stage:
   decode, full-resolution mask, contour, outline drawn on the display copy,
   JPEG of it.
3. The stock way a naive app does it (``SamPredictor.set_image`` for every
   box, all candidates at full resolution, the overlay drawn and sent as a
   full-size PNG) against ours (one encode, then cheap prompts), for five boxes.

``--everything`` measures segment everything instead: wall time, peak RSS
and masks kept on a 12 MP image and on the same image at 1024 px, with SAM's
default thresholds and with none (so that many masks are brought to full
size), each in a fresh process; and fp32 GEMM GFLOP/s before and after, to
tell a slow machine from a slow program.

Models are randomly initialised at full size: latency does not depend on the
weights. ``--quick`` runs a tiny encoder (SAM's own prompt encoder and mask
decoder, which are the same for every model) on smaller images, as a smoke
test. Human-readable lines go first; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import Sam
from segment_anything.modeling.image_encoder import Attention
from segment_anything.utils.transforms import ResizeLongestSide

from samdash.backends import available_backends, default_backend, make_encoder
from samdash.engine import Embedding, EmbeddingCache, upscale
from samdash.sam_engine import SamEngine
from samdash.everything import EverythingParams, segment_everything
from samdash.imaging import display_copy
from samdash.masks import CompactMask
from samdash.models import ARCHITECTURES, MOBILE_SAM_PACKAGES
from samdash.prompts import box_prompt
from samdash.render import Layer, contours_of, draw_layers, palette_color

BOXES = 5
DISPLAY_MAX = 1280
FULL_SIZES = {"1mp": (1155, 866), "12mp": (4000, 3000)}
QUICK_SIZES = {"1mp": (640, 480), "12mp": (2000, 1500)}
Stats = dict[str, float]
Box = tuple[float, float, float, float]
T = TypeVar("T")


def build_model(name: str) -> Sam:
    """A randomly initialised model, the same in every process.

    The attention position biases get small random values (a fresh model
    has zeros), so the exactness check covers them.
    """
    torch.manual_seed(0)
    if name == "tiny":
        model = _build_sam(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1])
    else:
        model = ARCHITECTURES[name].build()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Attention) and module.use_rel_pos:
                module.rel_pos_h.normal_(std=0.02)
                module.rel_pos_w.normal_(std=0.02)
            biases = getattr(module, "attention_biases", None)  # TinyViT's (MobileSAM)
            if isinstance(biases, torch.nn.Parameter):
                biases.normal_(std=0.02)
    return model.eval()  # also refreshes TinyViT's bias tables, which it caches on eval()


def scene(width: int, height: int) -> np.ndarray:
    """A noisy background with five discs, one under each benchmark box."""
    rng = np.random.default_rng(0)
    image = rng.integers(100, 160, size=(height, width, 3), dtype=np.uint8)
    for i in range(BOXES):
        centre = (int(width * (0.15 + 0.17 * i)), int(height * 0.5))
        cv2.circle(image, centre, int(width * 0.06), (200, 40 + 30 * i, 40), -1)
    return image


def boxes(width: int, height: int) -> list[Box]:
    radius = width * 0.08
    centres = [(width * (0.15 + 0.17 * i), height * 0.5) for i in range(BOXES)]
    return [(x - radius, y - radius, x + radius, y + radius) for x, y in centres]


def stats(values: Sequence[float], digits: int = 3) -> Stats:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits), "max": round(max(values), digits)}


def _show(item: Stats, unit: str) -> str:
    return f"{item['median']:g} {unit} ({item['min']:g}–{item['max']:g})"


def _peak_rss_mb() -> float:
    """This process's peak resident set (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _timed(action: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


# 1. Encode, one fresh process per measurement.


def _preprocessed(model: Sam) -> torch.Tensor:
    predictor = SamPredictor(model)
    resized = predictor.transform.apply_image(scene(*FULL_SIZES["1mp"]))
    return model.preprocess(torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None])


def encode_worker(model_name: str, backend: str, save: Path) -> None:
    """Child process: build, make the encoder, encode once; report as one JSON line."""
    model = build_model(model_name)
    x = _preprocessed(model)
    model_rss = _peak_rss_mb()
    encoder, setup = _timed(lambda: make_encoder(model, backend))
    with torch.inference_mode():
        features, seconds = _timed(lambda: encoder(x))
    np.save(save, features.numpy())
    print(json.dumps({"setup_s": setup, "encode_s": seconds, "peak_rss_mb": _peak_rss_mb(), "model_rss_mb": model_rss}))


def _run_worker(model_name: str, backend: str, save: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "samdash.bench", "--worker", "--models", model_name, "--backends", backend, "--save", str(save)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"Encoding with {model_name}/{backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_encode(models: Sequence[str], backends: Sequence[str], repeats: int) -> dict[str, dict]:
    results: dict[str, dict] = {"encode_s": {}, "setup_s": {}, "peak_rss_mb": {}, "model_rss_mb": {}, "max_rel_diff_vs_eager": {}}
    with tempfile.TemporaryDirectory(prefix="samdash-bench-") as tmp:
        for model_name in models:
            for key in results:
                results[key][model_name] = {}
            reference = None
            # Eager first: it is the reference for the others.
            for backend in sorted(backends, key=lambda name: name != "eager"):
                runs = []
                for repeat in range(repeats):
                    save = Path(tmp) / f"{model_name}-{backend}-{repeat}.npy"
                    runs.append(_run_worker(model_name, backend, save))
                    if repeat == 0 and backend == "eager":
                        reference = np.load(save)
                    if repeat == 0 and reference is not None:
                        diff = float(np.abs(np.load(save) - reference).max() / np.abs(reference).max())
                        results["max_rel_diff_vs_eager"][model_name][backend] = diff
                for key in ("encode_s", "setup_s", "peak_rss_mb", "model_rss_mb"):
                    results[key][model_name][backend] = stats([run[key] for run in runs], 1 if key.endswith("mb") else 3)
                line = (
                    f"encode {model_name:>5} {backend:<8} {_show(results['encode_s'][model_name][backend], 's')}, "
                    f"peak RSS {_show(results['peak_rss_mb'][model_name][backend], 'MB')} "
                    f"(model alone {results['model_rss_mb'][model_name][backend]['median']:g} MB), "
                    f"setup {results['setup_s'][model_name][backend]['median']:g} s"
                )
                if backend in results["max_rel_diff_vs_eager"][model_name]:
                    line += f", max rel diff vs eager {results['max_rel_diff_vs_eager'][model_name][backend]:.1e}"
                print(line, flush=True)
    return results


# 2. Prompt → outline on a cached embedding (our path).


def prompt_to_outline(engine: SamEngine, embedding: Embedding, image: np.ndarray, display: np.ndarray, box: Box) -> dict[str, float]:
    """Milliseconds per stage from a drawn box to the JPEG the browser receives."""
    height, width = image.shape[:2]
    prompt = box_prompt(box, width, height)
    candidates, decode = _timed(lambda: engine.predict(embedding, prompt))
    mask, upscale = _timed(lambda: candidates.mask(candidates.best))
    _, encode = _timed(lambda: CompactMask.encode(mask))
    contours, contour = _timed(lambda: contours_of(mask))
    layer = Layer(palette_color(0), contours)
    drawn, draw = _timed(lambda: draw_layers(display, [layer], scale=display.shape[1] / width))
    _, jpeg = _timed(lambda: cv2.imencode(".jpg", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]))
    stages = {"decode": decode, "mask": upscale, "rle": encode, "contour": contour, "draw": draw, "jpeg": jpeg}
    stages = {name: seconds * 1000 for name, seconds in stages.items()}
    stages["total"] = sum(stages.values())
    return stages


# 3. The stock way, per box.


def stock_box(predictor: SamPredictor, image: np.ndarray, box: Box) -> dict[str, float]:
    """Seconds per stage after ``set_image``: all candidates at full size, full-size overlay as PNG."""
    (masks, scores, _), predict = _timed(lambda: predictor.predict(box=np.asarray(box), multimask_output=True))
    layer = Layer.from_mask(masks[int(np.argmax(scores))], palette_color(0))
    drawn, overlay = _timed(lambda: draw_layers(image, [layer], fill_opacity=0.5))
    _, png = _timed(lambda: cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)))
    return {"predict": predict, "overlay": overlay, "png": png}


def bench_prompts(model: Sam, sizes: dict[str, tuple[int, int]], repeats: int, backend: str) -> dict[str, object]:
    engine = SamEngine(model, "bench", EmbeddingCache(1 << 30), encoder=make_encoder(model, backend))
    predictor = SamPredictor(model)
    results: dict[str, object] = {"ours_backend": backend}
    for label, (width, height) in sizes.items():
        image = scene(width, height)
        display, _ = display_copy(image, DISPLAY_MAX)
        embeds = [engine.embed(image, f"{label}-{repeat}").encode_seconds for repeat in range(repeats)]
        embedding = engine.embed(image, f"{label}-0")
        prompt_to_outline(engine, embedding, image, display, boxes(width, height)[0])  # warm-up
        runs = [prompt_to_outline(engine, embedding, image, display, box) for _ in range(repeats) for box in boxes(width, height)]
        stages = {name: stats([run[name] for run in runs], 1) for name in runs[0]}
        set_image = []
        for _ in range(repeats):
            _, seconds = _timed(lambda: predictor.set_image(image))
            set_image.append(seconds)
        stock = [stock_box(predictor, image, box) for box in boxes(width, height)]
        # Five boxes, each at the median cost measured for one; the stock way encodes again for every box.
        ours_total = statistics.median(embeds) + BOXES * stages["total"]["median"] / 1000
        stock_total = BOXES * (statistics.median(set_image) + statistics.median(sum(run.values()) for run in stock))
        results[f"prompt_to_outline_ms_{label}"] = stages["total"]
        results[f"prompt_stages_ms_{label}"] = {name: item for name, item in stages.items() if name != "total"}
        results[f"ours_5_boxes_s_{label}"] = round(ours_total, 3)
        results[f"stock_5_boxes_s_{label}"] = round(stock_total, 3)
        results[f"stock_stages_s_{label}"] = {
            "set_image": stats(set_image),
            **{name: stats([run[name] for run in stock]) for name in stock[0]},
        }
        results[f"speedup_vs_stock_5_boxes_{label}"] = round(stock_total / ours_total, 2)
        print(
            f"prompt→outline {label} {width}×{height}: {_show(stages['total'], 'ms')} = "
            + " + ".join(f"{name} {item['median']:g}" for name, item in stages.items() if name != "total"),
            flush=True,
        )
        print(
            f"5 boxes {label}: ours {ours_total:.2f} s (encode {statistics.median(embeds):.2f} s with {backend}) vs stock "
            f"{stock_total:.2f} s (set_image {statistics.median(set_image):.2f} s per box) → {stock_total / ours_total:.1f}×",
            flush=True,
        )
    results["speedup_vs_stock_5_boxes"] = results["speedup_vs_stock_5_boxes_12mp"]
    return results


# 4. Segment everything, one fresh process per measurement.

EVERYTHING_PARAMS = {
    "default": EverythingParams(),
    "no-thresholds": EverythingParams(pred_iou_thresh=0.0, stability_score_thresh=0.0),
    # The stock generator's batch: the decoder's memory grows with the points decoded at once.
    "64-per-batch": EverythingParams(points_per_batch=64),
}
EVERYTHING_RUNS = [("1024px", "default"), ("1024px", "no-thresholds"), ("12mp", "default"), ("12mp", "no-thresholds"), ("12mp", "64-per-batch")]


def gemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """fp32 matrix multiply throughput of this machine now (the best of a few)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b))[1] for _ in range(repeats))
    return round(2 * size**3 / best / 1e9, 1)


def _everything_image(label: str, sizes: dict[str, tuple[int, int]]) -> np.ndarray:
    """The large scene, or the same scene scaled down to the 1024 px the model sees."""
    image = scene(*sizes["12mp"])
    if label == "12mp":
        return image
    height, width = image.shape[:2]
    scale = 1024 / max(height, width)
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)


def _reset_peak_rss() -> bool:
    """Start a new high-water mark for this process (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def everything_worker(model_name: str, label: str, params_name: str, save: Path) -> None:
    """Child process: encode (or load the encode saved by the first run), then segment everything; one JSON line."""
    model = build_model(model_name)
    engine = SamEngine(model, "bench", EmbeddingCache(1 << 30), encoder=make_encoder(model, "auto"))
    sizes = QUICK_SIZES if model_name == "tiny" else FULL_SIZES
    image = _everything_image(label, sizes)
    if save.exists():
        features = torch.from_numpy(np.load(save))
        resized = ResizeLongestSide.get_preprocess_shape(*image.shape[:2], model.image_encoder.img_size)
        embedding = Embedding(("bench", label), tuple(image.shape[:2]), resized, features, features.nbytes, 0.0)
    else:
        embedding = engine.embed(image, label)
        np.save(save, embedding.features.numpy())
    params = EVERYTHING_PARAMS[params_name]
    if model_name == "tiny":
        params = replace(params, points_per_side=8)
    before = _peak_rss_mb()
    reset = _reset_peak_rss()
    resident = _peak_rss_mb()  # right after a reset the high-water mark is what is resident now
    found, seconds = _timed(lambda: segment_everything(model, image, embedding, params))
    peak = _peak_rss_mb()
    # What each mask kept costs at this size: SAM's upscaling of its logits, and the run-length encoding.
    geometry = engine.geometry(embedding)
    logits = np.fromfunction(lambda y, x: 60 - np.hypot(y - 90, x - 120), (256, 256), dtype=np.float32)
    per_mask = statistics.median(_timed(lambda: CompactMask.encode(upscale(logits, geometry)))[1] for _ in range(5))
    print(
        json.dumps(
            {
                "seconds": seconds,
                "masks": len(found),
                "full_size_ms_per_mask": round(per_mask * 1000, 1),
                "encode_s": embedding.encode_seconds,
                "process_peak_rss_mb": max(before, peak),
                # Without a reset (not Linux) the high-water mark is the whole process's.
                "everything_peak_rss_mb": peak,
                "peak_reset_before_segmenting": reset,
                "rss_before_segmenting_mb": resident if reset else None,
                "image": f"{image.shape[1]}×{image.shape[0]}",
            }
        )
    )


def bench_everything(model_name: str) -> dict[str, object]:
    results: dict[str, object] = {"model": model_name, "gemm_gflops_before": gemm_gflops()}
    print(f"fp32 GEMM {results['gemm_gflops_before']} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="samdash-bench-") as tmp:
        for label, params_name in EVERYTHING_RUNS:
            save = Path(tmp) / f"{label}.npy"  # the first run at a size encodes, the others load it
            command = [sys.executable, "-m", "samdash.bench", "--everything-worker", label, params_name, "--models", model_name, "--save", str(save)]
            done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            if done.returncode != 0:
                raise RuntimeError(f"Segment everything ({label}, {params_name}) failed:\n{done.stderr[-3000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            results[f"{label}_{params_name}"] = run
            print(
                f"everything {model_name} {label:>6} {run['image']:>9} {params_name:<13}: {run['seconds']:.1f} s, "
                f"{run['masks']} masks ({run['full_size_ms_per_mask']:g} ms each to full size), peak RSS "
                f"{run['everything_peak_rss_mb']:.0f} MB while segmenting (from {run['rss_before_segmenting_mb'] or 0:.0f} MB; "
                f"{run['process_peak_rss_mb']:.0f} MB with the encode)",
                flush=True,
            )
    for params_name in ("default", "no-thresholds"):
        large, small = results[f"12mp_{params_name}"], results[f"1024px_{params_name}"]
        ratio = round(large["seconds"] / small["seconds"], 2)
        results[f"time_ratio_12mp_vs_1024px_{params_name}"] = ratio
        print(f"12 MP / 1024 px time, {params_name}: {ratio}×", flush=True)
    results["gemm_gflops_after"] = gemm_gflops()
    width, height = FULL_SIZES["12mp"]
    # What SAM's stock generator holds per batch at 12 MP: 64 points × 3 masks as full-size float32.
    results["stock_batch_logits_gb_12mp"] = round(64 * 3 * width * height * 4 / 1e9, 1)
    print(f"fp32 GEMM {results['gemm_gflops_after']} GFLOP/s after", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samdash.bench", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="full-size models and 1 MP / 12 MP images (the default)")
    mode.add_argument("--quick", action="store_true", help="a tiny encoder and small images, in well under a minute")
    parser.add_argument("--models", help="comma-separated: vit_b, vit_l, vit_h, vit_t (default vit_b and, when installed, vit_t; tiny with --quick)")
    parser.add_argument("--backends", help=f"comma-separated encoder backends (default: {','.join(available_backends())})")
    parser.add_argument("--repeats", type=int, help="runs per measurement (default 3; 1 with --quick)")
    parser.add_argument("--everything", action="store_true", help="measure segment everything (vit_b, or tiny with --quick) instead")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--everything-worker", nargs=2, metavar=("SIZE", "PARAMS"), help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    mobile = all(importlib.util.find_spec(name) is not None for name in ("mobile_sam", "timm"))
    models = (args.models or ("tiny" if args.quick else "vit_b,vit_t" if mobile else "vit_b")).split(",")
    backends = (args.backends or ",".join(available_backends())).split(",")
    if args.worker:
        encode_worker(models[0], backends[0], args.save)
        return 0
    if args.everything_worker:
        everything_worker(models[0], *args.everything_worker, args.save)
        return 0
    unknown = [name for name in models if name != "tiny" and name not in ARCHITECTURES]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from tiny, {', '.join(ARCHITECTURES)}")
    if "vit_t" in models and not mobile:
        parser.error(f"vit_t (MobileSAM) needs pip install {MOBILE_SAM_PACKAGES}")
    missing = [name for name in backends if name not in available_backends()]
    if missing:
        parser.error(f"backend {missing[0]!r} is not available here; choose from {', '.join(available_backends())}")
    if args.everything:
        print(json.dumps(bench_everything(models[0])))
        return 0
    repeats = max(1, args.repeats or (1 if args.quick else 3))
    ours = os.environ.get("SAMDASH_ENCODER_BACKEND", "").strip() or default_backend()
    summary: dict[str, object] = {
        "mode": "quick" if args.quick else "full",
        "repeats": repeats,
        "image_sizes": {label: list(size) for label, size in (QUICK_SIZES if args.quick else FULL_SIZES).items()},
        "torch_threads": torch.get_num_threads(),
    }
    summary.update(bench_encode(models, backends, repeats))
    summary.update(bench_prompts(build_model(models[0]), QUICK_SIZES if args.quick else FULL_SIZES, repeats, ours))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
