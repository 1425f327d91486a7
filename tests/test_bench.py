from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path


from samdash.backends import available_backends
from samdash.bench import boxes

ROOT = Path(__file__).resolve().parents[1]


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_run_ends_with_a_json_summary():
    done = subprocess.run(
        [sys.executable, "-m", "samdash.bench", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])

    for backend in available_backends():
        assert _positive(summary["encode_s"]["tiny"][backend]["median"])
        peak = summary["peak_rss_mb"]["tiny"][backend]
        assert _positive(peak["min"]) and peak["min"] <= peak["median"] <= peak["max"]
        assert summary["max_rel_diff_vs_eager"]["tiny"][backend] <= 1e-4
    for size in ("1mp", "12mp"):
        total = summary[f"prompt_to_outline_ms_{size}"]
        assert _positive(total["median"]) and total["min"] <= total["median"] <= total["max"]
        stages = summary[f"prompt_stages_ms_{size}"]
        assert set(stages) == {"decode", "mask", "rle", "contour", "draw", "jpeg"}
        assert all(item["median"] >= 0 for item in stages.values())
    assert _positive(summary["speedup_vs_stock_5_boxes"])


def test_boxes_lie_inside_the_image():
    for x0, y0, x1, y1 in boxes(4000, 3000):
        assert 0 <= x0 < x1 <= 4000 and 0 <= y0 < y1 <= 3000
