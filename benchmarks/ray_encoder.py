"""The image encoder on Ray Serve against the local one, on this machine, with random weights.

a. One encode through the deployment (1 replica) against one here, same model: the ratio, and the time on the
   wire (the client's time less the replica's own encode).
b. 8 images submitted at once: through the deployment with 2 replicas, against the local encoder one at a time.
c. ``segment --ray`` (Ray Data, an actor pool) against the local ``segment`` over a folder of images.

Ray runs a local instance started here. Times are as measured in this run; the fp32 GEMM rate at the start and
the end says how busy the machine was.

    python benchmarks/ray_encoder.py [--model vit_b] [--cli-model tiny] [--cli-images 50]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samdash.bench import build_model, gemm_gflops, scene  # noqa: E402
from samdash.cli import main as cli  # noqa: E402
from samdash.config import Settings  # noqa: E402
from samdash.engine import EmbeddingCache  # noqa: E402
from samdash.ray_encoder import APP_NAME, serve_encoder, start_or_join  # noqa: E402
from samdash.segmenter import sam_engine  # noqa: E402
from tests.tiny_sam import build_tiny_sam  # noqa: E402


def _checkpoint(root: Path, model: str) -> Path:
    path = root / f"{model}_random.pth"
    torch.save((build_tiny_sam() if model == "tiny" else build_model(model)).state_dict(), path)
    return path


def _engines(root: Path, checkpoint: Path, model: str):
    settings = Settings(checkpoint=checkpoint, model_type=None if model == "tiny" else model, device="cpu",
                        data_dir=root / "data", model_dir=root, embedding_disk_mb=0)
    local = sam_engine(settings.model_type, settings, EmbeddingCache(1 << 30))
    remote = sam_engine(settings.model_type, replace(settings, encoder="ray", ray_address="auto", encoder_timeout_s=900),
                        EmbeddingCache(1 << 30))
    return local, remote


def _images(count: int, side: int = 1024) -> list[np.ndarray]:
    return [np.roll(scene(side, side * 3 // 4), 37 * i, axis=1) for i in range(count)]


def single_encode(local, remote, repeats: int) -> dict[str, object]:
    images = _images(repeats)
    here, there, wire = [], [], []
    for i, image in enumerate(images):
        start = time.perf_counter()
        local.embed(image, f"local-{i}")
        here.append(time.perf_counter() - start)
        resized = remote._transform.apply_image(image)
        start = time.perf_counter()
        _, replica_seconds = remote.remote.encode(resized)
        total = time.perf_counter() - start
        there.append(total)
        wire.append(total - replica_seconds)
    result = {"local_s": round(statistics.median(here), 3), "remote_s": round(statistics.median(there), 3),
              "wire_and_serve_s": round(statistics.median(wire), 3), "repeats": repeats}
    result["remote_over_local"] = round(result["remote_s"] / result["local_s"], 3)
    return result


def eight_at_once(local, remote, count: int = 8) -> dict[str, object]:
    images = _images(count)
    start = time.perf_counter()
    for i, image in enumerate(images):
        local.embed(image, f"batch-local-{i}")
    local_s = time.perf_counter() - start
    resized = [remote._transform.apply_image(image) for image in images]
    start = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(remote.remote.encode, resized))
    remote_s = time.perf_counter() - start
    return {"images": count, "local_one_at_a_time_s": round(local_s, 2), "ray_2_replicas_s": round(remote_s, 2),
            "local_per_image_s": round(local_s / count, 2), "ratio": round(remote_s / local_s, 3)}


def cli_comparison(root: Path, checkpoint: Path, count: int) -> dict[str, object]:
    folder = root / "photos"
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"photo{i:03d}.jpg"), cv2.cvtColor(np.roll(scene(1155, 866), 23 * i, axis=1), cv2.COLOR_RGB2BGR))
    result: dict[str, object] = {"images": count}
    for how in ("local", "ray"):
        out = io.StringIO()
        start = time.perf_counter()
        code = cli(["segment", str(folder), "--checkpoint", str(checkpoint), "--device", "cpu", "--box", "200,200,700,600",
                    "--out", str(root / f"out-{how}"), *(["--ray"] if how == "ray" else [])], out=out, err=io.StringIO())
        result[f"{how}_s"] = round(time.perf_counter() - start, 2)
        if code != 0:
            raise SystemExit(f"segment ({how}) failed: {out.getvalue()[-500:]}")
    files = {how: {p.relative_to(root / f"out-{how}"): p.read_bytes() for p in (root / f"out-{how}").rglob("*") if p.is_file()}
             for how in ("local", "ray")}
    result["identical_files"] = files["local"] == files["ray"] and len(files["local"]) > 0
    result["ray_over_local"] = round(result["ray_s"] / result["local_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit_b", choices=["tiny", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--cli-model", default="tiny", choices=["tiny", "vit_b"])
    parser.add_argument("--cli-images", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    summary: dict[str, object] = {"model": f"{args.model} (random weights)", "gemm_gflops_start": gemm_gflops()}
    ray = start_or_join(None)
    from ray import serve  # noqa: PLC0415

    serve.start(proxy_location="Disabled")
    with tempfile.TemporaryDirectory(prefix="samdash-ray-bench-") as tmp:
        root = Path(tmp)
        checkpoint = _checkpoint(root, args.model)
        # One replica with both cores, as the local encoder has them (a replica's PyTorch uses as many threads as
        # CPUs it reserves).
        serve_encoder(None if args.model == "tiny" else args.model, checkpoint, "cpu", 1, 2.0, 0.0)
        local, remote = _engines(root, checkpoint, args.model)
        summary["single_encode"] = single_encode(local, remote, args.repeats)
        print(f"a. {summary['single_encode']}", flush=True)
        # Two replicas of one core each: the first one goes before, or it would hold both cores while they wait.
        serve.delete(APP_NAME)
        serve_encoder(None if args.model == "tiny" else args.model, checkpoint, "cpu", 2, 1.0, 0.0)
        summary["eight_at_once"] = eight_at_once(local, remote)
        print(f"b. {summary['eight_at_once']}", flush=True)
        serve.shutdown()
        cli_checkpoint = checkpoint if args.cli_model == args.model else _checkpoint(root, args.cli_model)
        summary["cli"] = {"model": args.cli_model, **cli_comparison(root, cli_checkpoint, args.cli_images)}
        print(f"c. {summary['cli']}", flush=True)
    ray.shutdown()
    summary["gemm_gflops_end"] = gemm_gflops()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
