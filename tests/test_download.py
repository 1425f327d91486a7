"""Downloads against a real local HTTP server that can drop connections and ignore Range."""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from samdash import checkpoints, download
from samdash.config import Settings
from samdash.download import download_file
from samdash.errors import DownloadError
from tests.loopback import PAYLOAD, PAYLOAD_SHA


@pytest.fixture(autouse=True)
def _no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "RETRY_PAUSE_S", 0.0)


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def test_full_download_reports_progress(server, tmp_path):
    base, behaviour = server
    dest = tmp_path / "sub" / "file.bin"
    calls: list[tuple[int, int | None]] = []
    result = download_file(
        f"{base}/file.bin",
        dest,
        sha256=PAYLOAD_SHA,
        size=len(PAYLOAD),
        progress=lambda d, t: calls.append((d, t)),
        chunk_size=50_000,
    )
    assert result == dest and dest.read_bytes() == PAYLOAD
    assert not _part(dest).exists()
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == len(PAYLOAD) and len(calls) > 3
    assert {t for _, t in calls} == {len(PAYLOAD)}
    assert behaviour.requests == [None]


def test_works_without_expected_size_or_hash(server, tmp_path):
    base, _ = server
    dest = download_file(f"{base}/file.bin", tmp_path / "f", sha256=None, size=None)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("stall", [False, True], ids=["closed", "stalled"])
def test_dropped_connection_resumes_with_range(server, tmp_path, stall):
    base, behaviour = server
    behaviour.drop_after, behaviour.drops_left, behaviour.stall = 100_000, 2, stall
    dest = tmp_path / "file.bin"
    download_file(f"{base}/file.bin", dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), chunk_size=8192, timeout=0.3)
    assert dest.read_bytes() == PAYLOAD
    assert behaviour.requests[0] is None
    assert len(behaviour.requests) == 3
    assert all(r is not None and r.startswith("bytes=") and r != "bytes=0-" for r in behaviour.requests[1:])


def test_gives_up_after_retries(server, tmp_path):
    base, behaviour = server
    behaviour.drop_after, behaviour.drops_left = 1000, 100
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="connection closed"):
        download_file(f"{base}/file.bin", dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), retries=2)
    assert len(behaviour.requests) == 3
    assert not dest.exists()
    assert _part(dest).stat().st_size == 3000  # kept for the next attempt


def test_leftover_part_file_is_resumed(server, tmp_path):
    base, behaviour = server
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(PAYLOAD[:123_456])
    calls: list[int] = []
    download_file(
        f"{base}/file.bin", dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), progress=lambda d, t: calls.append(d)
    )
    assert dest.read_bytes() == PAYLOAD
    assert behaviour.requests == ["bytes=123456-"]
    assert calls[0] == 123_456 and calls[-1] == len(PAYLOAD)


def test_complete_leftover_needs_no_request(server, tmp_path):
    base, behaviour = server
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(PAYLOAD)
    download_file(f"{base}/file.bin", dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and behaviour.requests == []


def test_complete_leftover_of_unknown_size_is_accepted_on_416(server, tmp_path):
    base, behaviour = server
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(PAYLOAD)
    download_file(f"{base}/file.bin", dest, sha256=PAYLOAD_SHA, size=None)
    assert dest.read_bytes() == PAYLOAD and behaviour.requests == [f"bytes={len(PAYLOAD)}-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    base, behaviour = server
    behaviour.ignore_range = True
    dest = tmp_path / "file.bin"
    _part(dest).write_bytes(b"x" * 5000)  # wrong bytes: must not survive a restart
    download_file(f"{base}/file.bin", dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert behaviour.requests == ["bytes=5000-"]


def test_wrong_bytes_raise_and_leave_nothing(server, tmp_path):
    base, behaviour = server
    behaviour.files["/file.bin"] = b"y" * len(PAYLOAD)
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError) as info:
        download_file(f"{base}/file.bin", dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    message = str(info.value)
    got = hashlib.sha256(b"y" * len(PAYLOAD)).hexdigest()
    assert "file.bin" in message and PAYLOAD_SHA in message and got in message
    assert not dest.exists() and not _part(dest).exists()


def test_wrong_size_raises_before_downloading(server, tmp_path):
    base, _ = server
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match=r"offers 307,200 bytes, expected 1,000"):
        download_file(f"{base}/file.bin", dest, sha256=None, size=1000)
    assert not dest.exists() and not _part(dest).exists()


def test_http_error_is_one_sentence(server, tmp_path):
    base, _ = server
    dest = tmp_path / "missing.bin"
    expected = r"^Could not download http://127\.0\.0\.1:\d+/missing\.bin: the server answered 404"
    with pytest.raises(DownloadError, match=expected):
        download_file(f"{base}/missing.bin", dest, sha256=None, size=None)
    assert not dest.exists() and not _part(dest).exists()


def test_unreachable_host_fails_at_once(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file.bin"
    with pytest.raises(DownloadError, match=re.escape(f"Could not download {url}: ")):
        download_file(url, tmp_path / "file.bin", sha256=None, size=None, timeout=5)


def test_download_checkpoint_uses_download_base(server, tmp_path, monkeypatch):
    base, behaviour = server
    spec = checkpoints.CheckpointSpec("vit_b", "file.bin", PAYLOAD_SHA, len(PAYLOAD), "test file")
    monkeypatch.setitem(checkpoints.CATALOGUE, "vit_b", spec)
    monkeypatch.setenv("SAMDASH_DOWNLOAD_BASE", base)  # no trailing slash: joined all the same
    monkeypatch.setenv("SAMDASH_MODEL_DIR", str(tmp_path / "models"))
    settings = Settings.from_env()
    assert checkpoints.checkpoint_state("vit_b", settings) == "missing"
    path = checkpoints.download_checkpoint("vit_b", settings)
    assert path == tmp_path / "models" / "file.bin" and path.read_bytes() == PAYLOAD
    assert checkpoints.checkpoint_state("vit_b", settings) == "present"
    assert checkpoints.locate_checkpoint("vit_b", settings) == path
    checkpoints.download_checkpoint("vit_b", replace(settings, download_base=base + "/"))
    assert len(behaviour.requests) == 1  # already present: not fetched again


def test_a_downloaded_checkpoint_is_not_hashed_again_to_verify_it(server, tmp_path, monkeypatch):
    base, _ = server
    spec = checkpoints.CheckpointSpec("vit_b", "file.bin", PAYLOAD_SHA, len(PAYLOAD), "test file")
    monkeypatch.setitem(checkpoints.CATALOGUE, "vit_b", spec)
    path = checkpoints.download_checkpoint("vit_b", Settings(model_dir=tmp_path, download_base=base))

    def no_hashing(path: Path) -> None:
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(checkpoints, "hash_file", no_hashing)
    checkpoints.verify_checkpoint(path, spec)  # the digest computed while downloading was remembered


def test_partial_state_and_resume_through_catalogue(server, tmp_path, monkeypatch):
    base, behaviour = server
    spec = checkpoints.CheckpointSpec("vit_b", "file.bin", PAYLOAD_SHA, len(PAYLOAD), "test file")
    monkeypatch.setitem(checkpoints.CATALOGUE, "vit_b", spec)
    settings = Settings(model_dir=tmp_path, download_base=base + "/")
    _part(tmp_path / "file.bin").write_bytes(PAYLOAD[:1000])
    assert checkpoints.checkpoint_state("vit_b", settings) == "partial"
    assert checkpoints.locate_checkpoint("vit_b", settings) is None  # never the part file
    checkpoints.download_checkpoint("vit_b", settings)
    assert behaviour.requests == ["bytes=1000-"]
    assert checkpoints.checkpoint_state("vit_b", settings) == "present"


def test_second_download_of_the_same_file_is_refused(server, tmp_path, monkeypatch):
    base, _ = server
    spec = checkpoints.CheckpointSpec("vit_b", "file.bin", PAYLOAD_SHA, len(PAYLOAD), "test file")
    monkeypatch.setitem(checkpoints.CATALOGUE, "vit_b", spec)
    settings = Settings(model_dir=tmp_path, download_base=base)
    refusals: list[str] = []

    def progress(done: int, total: int | None) -> None:
        if not refusals:  # another session asks while this download runs
            with pytest.raises(DownloadError) as info:
                checkpoints.download_checkpoint("vit_b", settings)
            refusals.append(str(info.value))

    checkpoints.download_checkpoint("vit_b", settings, progress=progress)
    assert refusals == ["file.bin is already being downloaded; it will be ready when that finishes."]
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD
