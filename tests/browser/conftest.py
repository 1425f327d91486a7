"""A real Streamlit server on 127.0.0.1 and a real headless Chromium driving it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page


ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("streamlit did not come up")


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    port: int


def app_tracebacks(log: str) -> list[str]:
    """The tracebacks in a server log, but for Streamlit's own websocket teardown: when a tab closes while the
    server sends, Streamlit's websocket endpoint can log one with no frame of this app in it."""
    blocks = log.split("Traceback (most recent call last):")[1:]
    return [
        block for block in blocks
        if not ("_websocket_endpoint" in block and "samdash" not in block and "streamlit_app" not in block)
    ]


def _normal_priority() -> None:
    """The server runs in the normal scheduling class even when its caller runs in the idle one (the load benchmark
    puts its browsers there)."""
    if os.sched_getscheduler(0) == os.SCHED_IDLE:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


@contextmanager
def serve_app(env_overrides: dict[str, str], log_path: Path, port: int | None = None,
              script: Path = ROOT / "streamlit_app.py") -> Iterator[Served]:
    """``streamlit run`` (of the app, or of another ``script``) on a free port of 127.0.0.1, stopped afterwards;
    projects go into a data directory of its own next to the log unless ``env_overrides`` names one."""
    port = port or _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMDASH_")}
    env.update({"SAMDASH_DEVICE": "cpu", "SAMDASH_DATA_DIR": str(log_path.parent / "data"), **env_overrides})
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(script),
                "--server.address", "127.0.0.1", "--server.port", str(port),
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
                "--server.fileWatcherType", "none",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_normal_priority,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(url, process)
            yield Served(url, process.pid, port)
        finally:
            process.terminate()
            process.wait(timeout=20)


@pytest.fixture(scope="session")
def sam_url(tiny_checkpoint, tmp_path_factory) -> Iterator[str]:
    """The app with a tiny random SAM checkpoint (real loading path, fast encoder)."""
    env = {"SAMDASH_CHECKPOINT": str(tiny_checkpoint), "SAMDASH_MODEL_DIR": str(tmp_path_factory.mktemp("models"))}
    with serve_app(env, tmp_path_factory.mktemp("log") / "sam.log") as served:
        yield served.url


@pytest.fixture(scope="session")
def fallback_url(tmp_path_factory) -> Iterator[str]:
    """The app with no checkpoint anywhere: the GrabCut fallback, whose masks follow real edges."""
    env = {"SAMDASH_MODEL_DIR": str(tmp_path_factory.mktemp("empty-models"))}
    with serve_app(env, tmp_path_factory.mktemp("log") / "fallback.log") as served:
        yield served.url


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed: run scripts/test.sh, which installs it")
    from playwright.sync_api import sync_playwright

    # launch() gives every run a fresh temporary profile (Playwright refuses an explicit --user-data-dir there).
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def open_page(browser, url: str, width: int = 1500, height: int = 1000) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(url)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def sam_page(browser, sam_url) -> Iterator[Page]:
    with open_page(browser, sam_url) as page:
        yield page


@pytest.fixture
def fallback_page(browser, fallback_url) -> Iterator[Page]:
    with open_page(browser, fallback_url) as page:
        yield page


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
