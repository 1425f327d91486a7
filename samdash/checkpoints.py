"""Segment Anything checkpoint files: the catalogue, finding, downloading and verifying them.

A file under an official catalogue name is checked against the catalogue's
size and SHA-256, since a damaged one may still load, with wrong weights.
Nothing here needs PyTorch: the page lists, finds and downloads checkpoints
before any model is built (``samdash.models`` builds them).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from samdash.config import Settings
from samdash.download import Progress, download_file, hash_file
from samdash.errors import CheckpointError, DownloadError

DEFAULT_MODEL = "vit_b"
SAM_DOWNLOADS = "https://dl.fbaipublicfiles.com/segment_anything/"
# The official MobileSAM repository at a fixed commit, so the file behind the URL cannot change.
MOBILE_SAM_DOWNLOADS = "https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/f706ad9c4eb7f219c00d9050e46328518ffb65d2/weights/"
# Beside the checkpoints: each official file's SHA-256 as last computed, with the size and mtime it had then.
HASH_RECORD = ".verified.json"


@dataclass(frozen=True)
class CheckpointSpec:
    model_type: str
    filename: str
    sha256: str
    size_bytes: int
    description: str
    # Where the publisher serves the file (a directory URL; the file name is appended).
    source: str = SAM_DOWNLOADS


CATALOGUE: dict[str, CheckpointSpec] = {
    spec.model_type: spec
    for spec in (
        CheckpointSpec(
            "vit_b",
            "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            375_042_383,
            "SAM ViT-B (base)",
        ),
        CheckpointSpec(
            "vit_l",
            "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            1_249_524_607,
            "SAM ViT-L (large)",
        ),
        CheckpointSpec(
            "vit_h",
            "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            2_564_550_879,
            "SAM ViT-H (huge)",
        ),
        CheckpointSpec(
            "vit_t",
            "mobile_sam.pt",
            "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            40_728_226,
            "MobileSAM (fast)",
            MOBILE_SAM_DOWNLOADS,
        ),
    )
}


def checkpoint_spec(model_type: str) -> CheckpointSpec:
    """The catalogue entry, or a ``CheckpointError`` listing the known types."""
    try:
        return CATALOGUE[model_type]
    except KeyError:
        raise CheckpointError(
            f"There is no downloadable checkpoint for model type {model_type!r}; known types: {', '.join(CATALOGUE)}."
        ) from None


def checkpoint_url(spec: CheckpointSpec, settings: Settings) -> str:
    """The publisher's URL, or the file's place on the mirror ``settings.download_base`` when one is set."""
    base = settings.download_base or spec.source
    return base.rstrip("/") + "/" + spec.filename


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def locate_checkpoint(model_type: str, settings: Settings) -> Path | None:
    """The file to load: an explicit ``settings.checkpoint`` first, else the catalogue file in ``model_dir``.

    An explicit path that is missing is an error rather than a silent fallback,
    so a typo in ``SAMDASH_CHECKPOINT`` is noticed.
    """
    if settings.checkpoint is not None:
        path = settings.checkpoint
        if path.name.endswith(".part"):
            raise CheckpointError(f"Checkpoint {path} is an unfinished download, not a checkpoint.")
        if not path.is_file():
            what = "is a directory, not a file" if path.is_dir() else "does not exist"
            raise CheckpointError(f"Checkpoint {path} {what}.")
        return path
    path = settings.model_dir / checkpoint_spec(model_type).filename
    return path if path.is_file() else None


def checkpoint_state(model_type: str, settings: Settings) -> Literal["present", "missing", "partial"]:
    """Whether the checkpoint is on disk, absent, or half downloaded (a ``.part`` file exists)."""
    if settings.checkpoint is not None:
        return "present" if settings.checkpoint.is_file() else "missing"
    path = settings.model_dir / checkpoint_spec(model_type).filename
    if path.is_file():
        return "present"
    return "partial" if _part_path(path).is_file() else "missing"


_download_locks: dict[Path, threading.Lock] = {}
_download_locks_guard = threading.Lock()


def download_checkpoint(model_type: str, settings: Settings, progress: Progress | None = None) -> Path:
    """Fetch and verify a catalogue checkpoint into ``settings.model_dir``.

    Sessions of one server share the directory, so a second request for a
    file that is already being fetched is refused instead of writing the same
    part file twice.
    """
    spec = checkpoint_spec(model_type)
    dest = settings.model_dir / spec.filename
    with _download_locks_guard:
        lock = _download_locks.setdefault(dest.resolve(), threading.Lock())
    if not lock.acquire(blocking=False):
        raise DownloadError(f"{spec.filename} is already being downloaded; it will be ready when that finishes.")
    try:
        if dest.is_file() and dest.stat().st_size == spec.size_bytes:
            return dest
        path = download_file(
            checkpoint_url(spec, settings), dest, sha256=spec.sha256, size=spec.size_bytes, progress=progress
        )
        # Hashed while it arrived: the first load need not read it all again.
        _remember_hash(path, path.stat(), spec.sha256.lower())
        return path
    finally:
        lock.release()


def verify_checkpoint(path: Path, spec: CheckpointSpec) -> None:
    """Refuse an official checkpoint whose size or SHA-256 differ from the catalogue's.

    The size is checked on every load (a ``stat``). Hashing reads the whole
    file (seconds for vit_h), so the digest is remembered by the file's
    (size, mtime_ns) in ``HASH_RECORD`` beside the checkpoints rather than in
    memory: the CLI is a new process on every run and the server restarts, and
    within one server the page already keeps the loaded model per (size,
    mtime_ns), so a memory-only record would save nothing where it matters.
    The record holds the file's own digest, not a verdict, so a damaged file is
    hashed once too (the page retries a failed load on every rerun) and a
    catalogue change is checked without hashing again.
    """
    stat = path.stat()
    fix = (
        f"Delete it and download it again: python -m samdash download --model {spec.model_type}, "
        "or the Download button in the page's sidebar."
    )
    if stat.st_size != spec.size_bytes:
        raise CheckpointError(
            f"Checkpoint {path} is {stat.st_size:,} bytes, but the official {spec.filename} is "
            f"{spec.size_bytes:,} (an incomplete or damaged copy). {fix}"
        )
    actual = _remembered_hash(path, stat)
    if actual is None:
        actual = hash_file(path)[0].hexdigest()
        _remember_hash(path, stat, actual)
    if actual != spec.sha256.lower():
        raise CheckpointError(
            f"Checkpoint {path} is damaged: its SHA-256 is {actual}, "
            f"but the official {spec.filename}'s is {spec.sha256.lower()}. {fix}"
        )


def _hash_records(folder: Path) -> dict[str, object]:
    """The remembered digests by file name; a missing or unreadable record is empty (files are hashed again)."""
    try:
        records = json.loads((folder / HASH_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def _remembered_hash(path: Path, stat: os.stat_result) -> str | None:
    """The digest recorded for this file when it had this size and mtime, if there is one."""
    record = _hash_records(path.parent).get(path.name)
    if not isinstance(record, dict) or (record.get("size"), record.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
        return None
    sha256 = record.get("sha256")
    return sha256 if isinstance(sha256, str) else None


_hash_record_lock = threading.Lock()


def _remember_hash(path: Path, stat: os.stat_result, sha256: str) -> None:
    """Record a file's digest, written whole and renamed into place so a reader never sees half a record.

    Another process writing at the same moment may win and drop this entry;
    that file is then hashed once more. A read-only folder records nothing.
    """
    record = path.parent / HASH_RECORD
    temporary = record.with_name(f"{record.name}.{os.getpid()}.tmp")
    with _hash_record_lock:
        records = _hash_records(path.parent)
        records[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
        try:
            temporary.write_text(json.dumps(records, indent=1))
            os.replace(temporary, record)
        except OSError:
            temporary.unlink(missing_ok=True)
