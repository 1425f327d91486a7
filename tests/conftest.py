from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from samdash.engine import EmbeddingCache

from samdash.sam_engine import SamEngine
from tests.loopback import Behaviour, serve
from tests.tiny_sam import build_tiny_sam


@pytest.fixture(autouse=True)
def data_dir(monkeypatch, tmp_path_factory) -> Path:
    """Each test's own data directory: no test reads another's stored embeddings or writes into the user's."""
    path = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("SAMDASH_DATA_DIR", str(path))
    return path


@pytest.fixture
def tiny_page_env(monkeypatch, tiny_checkpoint, tmp_path, data_dir) -> Path:
    """The environment the page starts in for page tests: the tiny SAM on the CPU; returns the data directory."""
    for name in ("SAMDASH_MODEL_TYPE", "SAMDASH_DOWNLOAD_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAMDASH_CHECKPOINT", str(tiny_checkpoint))
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("SAMDASH_DEVICE", "cpu")
    return data_dir


@pytest.fixture(scope="session")
def tiny_sam():
    return build_tiny_sam()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_sam) -> Path:
    """The tiny SAM saved as a checkpoint file, for tests that load it the way users do."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny_sam.pth"
    torch.save(tiny_sam.state_dict(), path)
    return path


@pytest.fixture
def tiny_engine(tiny_sam) -> SamEngine:
    return SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20))


@pytest.fixture(scope="session")
def scene() -> np.ndarray:
    """A 480×640 RGB image: a bright disc and a dark square on a noisy background."""
    rng = np.random.default_rng(7)
    image = rng.integers(90, 140, size=(480, 640, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:480, :640]
    image[(yy - 200) ** 2 + (xx - 220) ** 2 < 80**2] = (230, 60, 40)
    image[300:420, 420:560] = (30, 40, 160)
    return image


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    """A loopback HTTP server for download tests: its base URL and the behaviour each test sets."""
    behaviour = Behaviour()
    with serve(behaviour) as base:
        yield base, behaviour
