"""The projects benchmark's smoke run: it ends with a JSON summary of positive numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_run_ends_with_a_json_summary():
    done = subprocess.run(
        [sys.executable, "benchmarks/projects.py", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert [line[:2] for line in lines if line[:2] in ("a.", "b.", "c.")] == ["a.", "b.", "c."]

    assert _positive(summary["gemm_gflops_start"]) and _positive(summary["gemm_gflops_end"])
    autosave = summary["autosave"]
    for item in [autosave["autosave_ms"], autosave["decode_ms_per_drawing"], *autosave["autosave_ms_by_change"].values()]:
        assert _positive(item["median"]) and item["median"] <= item["p95"] <= item["max"]
    assert set(autosave["autosave_ms_by_change"]) == {"box", "point", "pick", "rename"}  # three objects: none deleted yet
    assert _positive(autosave["autosave_over_decode"]) and autosave["changes"] == 15

    disk = summary["disk"]
    assert disk["objects"] == disk["images"] * disk["objects_per_image"]
    for key in ("db_mb", "images_mb", "thumbnails_mb", "total_mb", "db_kb_per_object", "image_mb_each", "embedding_mb_each"):
        assert _positive(disk[key]), key
    assert _positive(disk["state_kb"]["current"]) and _positive(disk["state_kb"]["undo"])

    restart = summary["restart"]
    for key in ("store_open_ms", "load_workspace_ms", "store_open_and_load_ms", "fresh_process_ms", "image_decode_ms"):
        assert _positive(restart[key]["median"]), key
    assert "browser" not in restart  # only with --browser
