"""SAM image embeddings kept on disk, so a restarted server (or the CLI run again) does not encode an image twice.

One file per (engine cache id, image content hash), under a name hashed from
both (a cache id holds a checkpoint path). A file is written whole to a
temporary name in the same directory and renamed into place, and carries a
checksum of its payload, so neither a crash nor a half-written disk is ever
read back as an embedding: a file that does not check out is removed and
counts as missing. Several threads and processes may share a directory; the
bytes it holds stay under a budget by deleting the least recently used files,
with "used" recorded in each file's modification time when it is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from samdash.engine import Embedding

log = logging.getLogger(__name__)

_MAGIC = b"SAMDEMB1"
_HEADER_LENGTH = struct.Struct("<I")
_SUFFIX = ".emb"
_TEMP_SUFFIX = ".tmp"
# A temporary file this old was left by a writer that died: nobody will rename it.
_STALE_TEMP_SECONDS = 3600


class DiskEmbeddings:
    """Embeddings by (cache id, content hash) in ``directory``, at most ``max_bytes`` of them; 0 keeps none."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def _path(self, key: tuple[str, str]) -> Path:
        digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:32]
        return self.directory / f"{digest}{_SUFFIX}"

    def load(self, key: tuple[str, str]) -> Embedding | None:
        """The stored embedding, its features a float32 NumPy array as the encoder made them; None when missing."""
        if self.max_bytes <= 0:
            return None
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the stored embedding %s: %s", path, exc)
            return None
        try:
            embedding = _decode(data)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("removing the unreadable stored embedding %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None
        if embedding.key != key:  # another key under the same file name: not this image's
            return None
        try:
            _touch(path)
        except OSError:
            pass  # removed meanwhile by another process's eviction: the embedding read is still good
        return embedding

    def save(self, embedding: Embedding) -> None:
        """Store an embedding whose features are a NumPy array; a failure to write is logged, never raised."""
        features = np.ascontiguousarray(embedding.features)
        if self.max_bytes <= 0 or features.nbytes > self.max_bytes:
            return
        path = self._path(embedding.key)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = tempfile.NamedTemporaryFile(dir=self.directory, prefix=f".{path.stem}.", suffix=_TEMP_SUFFIX, delete=False)
            try:
                with handle:
                    handle.write(_encode(replace(embedding, features=features)))
                _touch(Path(handle.name))
                os.replace(handle.name, path)
            except BaseException:
                Path(handle.name).unlink(missing_ok=True)
                raise
            self._evict(keep=path)
        except OSError as exc:
            log.warning("cannot store the embedding in %s: %s", self.directory, exc)

    def _evict(self, keep: Path) -> None:
        """Delete the least recently used files until the directory is within its budget (``keep`` stays)."""
        files: list[tuple[int, int, str]] = []
        now = time.time()
        with os.scandir(self.directory) as entries:
            for entry in entries:
                try:
                    stat = entry.stat()
                    if entry.name.endswith(_SUFFIX):
                        files.append((stat.st_mtime_ns, stat.st_size, entry.path))
                    elif entry.name.endswith(_TEMP_SUFFIX) and now - stat.st_mtime > _STALE_TEMP_SECONDS:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    continue  # renamed or removed by another writer meanwhile
        total = sum(size for _, size, _ in files)
        for _, size, name in sorted(files):
            if total <= self.max_bytes:
                break
            if name == str(keep):
                continue
            Path(name).unlink(missing_ok=True)
            total -= size


def _touch(path: Path) -> None:
    """Mark a file most recently used, by the precise clock (a file system's own times can be a tick coarse)."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def _encode(embedding: Embedding) -> bytes:
    features: np.ndarray = embedding.features
    payload = features.tobytes()
    header = json.dumps(
        {
            "key": list(embedding.key),
            "dtype": features.dtype.str,
            "shape": list(features.shape),
            "original_size": list(embedding.original_size),
            "input_size": list(embedding.input_size),
            "encode_seconds": embedding.encode_seconds,
            "crc32": zlib.crc32(payload),
        }
    ).encode()
    return b"".join((_MAGIC, _HEADER_LENGTH.pack(len(header)), header, payload))


def _decode(data: bytes) -> Embedding:
    """The embedding in a file's bytes; ValueError (or KeyError, TypeError) when they are not one whole file."""
    start = len(_MAGIC) + _HEADER_LENGTH.size
    if len(data) < start or not data.startswith(_MAGIC):
        raise ValueError("not an embedding file")
    (length,) = _HEADER_LENGTH.unpack_from(data, len(_MAGIC))
    header = json.loads(data[start : start + length])
    dtype = np.dtype(header["dtype"])
    shape = tuple(int(side) for side in header["shape"])
    payload = memoryview(data)[start + length :]
    if len(payload) != dtype.itemsize * int(np.prod(shape)) or zlib.crc32(payload) != header["crc32"]:
        raise ValueError("truncated or damaged")
    features = np.frombuffer(payload, dtype).reshape(shape).copy()  # writable, as a tensor wants
    return Embedding(
        key=tuple(header["key"]),
        original_size=tuple(header["original_size"]),
        input_size=tuple(header["input_size"]),
        features=features,
        nbytes=features.nbytes,
        encode_seconds=float(header["encode_seconds"]),
    )
