"""Several people at once: N real Chromium sessions on one server, each with its own 12 MP image.

Starts the app on 127.0.0.1, first runs one session alone (the single-session
prompt latency), then N sessions started together: each uploads its own
generated JPEG (discs at places of its own), drags its boxes and clicks its
include/exclude points with the mouse. Every session collects page errors and
console errors, counts drawings that never became an object (lost drawings),
checks that it shows exactly its own objects (the object count, and with GrabCut
the result's outlines only where its own boxes are), and times every prompt from mouse-up to
the new result image shown. The server's resident memory is sampled throughout
and for ``--linger`` seconds after every session has closed.

    python benchmarks/load_sessions.py [--sessions 8] [--megapixels 12] [--boxes 5] [--points 2]
                                       [--linger 180] [--model none|tiny|vit_t|vit_b|...] [--idle-clients]

``--model none`` (the default) serves no checkpoint: the GrabCut fallback.
Progress goes to stderr; stdout gets one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import serve_app  # noqa: E402
from tests.browser.load_driver import Report, plan_for, run_session, run_sessions  # noqa: E402


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class RssSampler:
    """Samples a process's resident memory (VmRSS) in a background thread."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.peak_mb = 0.0
        self.last_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def read(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last_mb = self.read()
            except (OSError, StopIteration):
                return
            self.peak_mb = max(self.peak_mb, self.last_mb)
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _cpu_seconds(pid: int | None = None) -> float:
    """CPU time used so far (user + system) by one process, or by the whole machine (all processes, not idle)."""
    ticks = os.sysconf("SC_CLK_TCK")
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in cpu[:8])
    return (user + nice + system + irq + softirq + steal) / ticks


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"p50": round(statistics.median(ordered)), "p95": round(p95), "n": len(ordered)}


def _checkpoint(model: str, folder: Path) -> dict[str, str]:
    """Environment for the server: no checkpoint (GrabCut), or random weights of ``model``."""
    env = {"SAMDASH_MODEL_DIR": str(folder)}
    if model == "none":
        return env
    import torch

    from samdash.models import ARCHITECTURES
    from tests.tiny_sam import build_tiny_sam

    weights = build_tiny_sam() if model == "tiny" else ARCHITECTURES[model].build()
    path = folder / f"{model}-random.pth"
    torch.save(weights.state_dict(), path)
    env["SAMDASH_CHECKPOINT"] = str(path)
    if model != "tiny":
        env["SAMDASH_MODEL_TYPE"] = model
    return env


def _clients_idle() -> None:
    """From now on, this process and everything it starts (Playwright's drivers, the browsers) run only on CPU time
    nobody else wants (SCHED_IDLE; Chromium resets its own nice values, not its scheduling class). The server is
    started back in the normal class (``serve_app``)."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _describe(report: Report) -> str:
    state = "done" if report.completed else f"FAILED ({report.failure})"
    return (
        f"{report.name}: {state} in {report.seconds:.0f} s, {len(report.errors)} page errors, "
        f"{len(report.lost)} lost drawings, objects {report.objects}, own objects {report.own_objects}, "
        f"latencies {', '.join(f'{ms:.0f}' for ms in report.latencies_ms)} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--megapixels", type=float, default=12)
    parser.add_argument("--boxes", type=int, default=5)
    parser.add_argument("--points", type=int, default=2)
    parser.add_argument("--linger", type=float, default=180, help="seconds to keep sampling memory after the sessions close")
    parser.add_argument("--model", default="none", choices=["none", "tiny", "vit_t", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--timeout", type=float, default=1200, help="bound on the concurrent sessions, in seconds")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "test-artifacts" / "load", help="screenshots go here")
    parser.add_argument("--server-log", type=Path, default=None, help="keep the server's log here")
    parser.add_argument("--idle-clients", action="store_true",
                        help="run the browsers, their drivers and this script at the lowest CPU priority, as if on the "
                             "analysts' own machines: the server gets the cores first")
    args = parser.parse_args()

    height = round(math.sqrt(args.megapixels * 1e6 * 3 / 4))
    width = round(height * 4 / 3)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    if args.idle_clients:
        _clients_idle()
    _say(f"{args.sessions} sessions, {width}×{height} images, {args.boxes} boxes + {args.points} points each, model {args.model}")
    with tempfile.TemporaryDirectory(prefix="samdash-load-") as tmp:
        folder = Path(tmp)
        env = _checkpoint(args.model, folder)
        log_path = args.server_log or folder / "streamlit.log"
        summary: dict[str, object] = {"sessions": args.sessions, "megapixels": args.megapixels, "model": args.model}
        with serve_app(env, log_path) as served, RssSampler(served.pid) as rss:
            _say(f"server at {served.url}, pid {served.pid}")
            # One session alone first (a scene of its own: nothing it encodes is cached for the others).
            alone = run_session(served.url, plan_for(0, args.sessions, width, height, args.boxes, args.points, seed=1),
                                artifacts=args.artifacts, echo=True)
            _say("alone   " + _describe(alone))
            single_rss = rss.read()
            plans = [plan_for(i, args.sessions, width, height, args.boxes, args.points) for i in range(args.sessions)]
            _say(f"starting {args.sessions} sessions together")
            started = time.monotonic()
            me = os.getpid()
            before = _cpu_seconds(served.pid), _cpu_seconds(me), _cpu_seconds()
            reports = run_sessions(served.url, plans, timeout=args.timeout, artifacts=args.artifacts, echo=True)
            after = _cpu_seconds(served.pid), _cpu_seconds(me), _cpu_seconds()
            server_cpu, harness_cpu, machine_cpu = (b - a for a, b in zip(before, after))
            load_seconds = time.monotonic() - started
            _say(f"all sessions closed after {time.monotonic() - started:.0f} s")
            for report in reports:
                _say("  " + _describe(report))
                for error in report.errors[:3]:
                    _say("      " + error.splitlines()[0][:200])
            peak = rss.peak_mb
            _say(f"server peak RSS {peak:.0f} MB, now {rss.last_mb:.0f} MB; lingering {args.linger:.0f} s")
            time.sleep(args.linger)
            after_close = rss.read()
            peak = max(peak, rss.peak_mb)
        log = Path(log_path).read_text(errors="replace")
    everyone = [alone, *reports]
    errors = [e for r in everyone for e in r.errors]
    load_latencies = [ms for r in reports for ms in r.latencies_ms]
    summary.update(
        sessions_completed=sum(r.completed for r in reports),
        frontend_errors={
            "count": len(errors),
            "page_errors": sum(e.startswith("pageerror") for e in errors),
            "sessions": sum(bool(r.errors) for r in everyone),
            "first": [e.splitlines()[0][:200] for e in errors[:5]],
        },
        lost_drawings=sum(len(r.lost) for r in everyone),
        # Random weights outline anything anywhere: only GrabCut's outlines can be held against the boxes drawn.
        # With a model, a session's own objects are checked by their count alone.
        sessions_not_showing_own_objects=sum(
            (r.own_objects is not True) if args.model == "none" else (r.objects != len(plan.boxes))
            for r, plan in zip(reports, plans)
        ),
        single_session_completed=alone.completed,
        tracebacks=log.count("Traceback"),
        prompt_latency_ms={"single": _percentiles(alone.latencies_ms), "load": _percentiles(load_latencies)},
        # The server's part alone (the page's own "outlined in … ms"): the browsers here share its cores.
        prompt_server_ms={"single": _percentiles(alone.server_ms), "load": _percentiles([ms for r in reports for ms in r.server_ms])},
        server_rss_after_single_mb=round(single_rss),
        server_peak_rss_mb=round(peak),
        server_rss_after_close_mb=round(after_close),
        linger_s=args.linger,
        # Where the machine's CPU went while the sessions ran: the browsers run on the same cores as the server.
        # (Chromium's renderers are not children anyone waits for: the browsers' share is the rest of the machine's.)
        cpu_seconds={"server": round(server_cpu), "benchmark": round(harness_cpu),
                     "browsers": round(machine_cpu - server_cpu - harness_cpu), "wall": round(load_seconds),
                     "cores": os.cpu_count()},
        clients_idle=args.idle_clients,
    )
    if summary["tracebacks"]:
        first = log.index("Traceback")
        _say("first traceback in the server log:\n" + log[first : first + 3000])
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
