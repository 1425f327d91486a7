"""Resumable, verified HTTP(S) downloads with the standard library.

Checkpoints are hundreds of megabytes to gigabytes, so a dropped connection
must not cost the bytes already fetched, and a damaged file must never be
mistaken for a good one: bytes go to ``<name>.part`` beside the target, are
hashed as they arrive, and only a file with the expected size and SHA-256 is
renamed into place.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from samdash.errors import DownloadError

Progress = Callable[[int, int | None], None]

# Seconds to wait before the n-th retry is n times this; tests set it to 0.
RETRY_PAUSE_S = 1.0
USER_AGENT = "samdash-downloader"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
_HASH_BLOCK = 1 << 20


class _Dropped(Exception):
    """The transfer broke off; worth a resumed retry."""

    def __init__(self, reason: str, *, connecting: bool = False) -> None:
        super().__init__(reason)
        self.connecting = connecting  # no answer at all, not a transfer cut short


class _PartFile:
    """The temporary file and a running SHA-256 that always covers exactly its bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest, self.done = hash_file(path) if path.exists() else (hashlib.sha256(), 0)

    def restart(self) -> None:
        self.path.write_bytes(b"")
        self.digest = hashlib.sha256()
        self.done = 0

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def hash_file(path: Path) -> tuple[hashlib._Hash, int]:
    """The file's SHA-256 (still open, so a resumed download can go on adding to it) and its length.

    Read in blocks, so a checkpoint of gigabytes needs little memory.
    """
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as fp:
        while block := fp.read(_HASH_BLOCK):
            digest.update(block)
            done += len(block)
    return digest, done


def progress_text(done: int, total: int, started: float) -> str:
    """Progress such as "120 / 375 MB · 11.8 MB/s", worded alike in the page and the CLI.

    ``started`` is the download's start on the ``time.monotonic`` clock.
    """
    rate = done / max(time.monotonic() - started, 1e-3) / 1e6
    return f"{done / 1e6:,.0f} / {total / 1e6:,.0f} MB · {rate:.1f} MB/s"


def download_file(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    size: int | None,
    progress: Progress | None = None,
    chunk_size: int = 1 << 20,
    timeout: float = 30,
    retries: int = 3,
) -> Path:
    """Fetch ``url`` into ``dest``, resuming a leftover ``.part`` file and dropped connections.

    ``progress(bytes_done, total_or_None)`` is called as bytes arrive. Raises
    ``DownloadError`` when the server cannot be reached, answers with an
    error, or delivers bytes whose size or SHA-256 differ from the expected
    ones (the bad part file is then deleted).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = _PartFile(dest.with_name(dest.name + ".part"))
        if size is not None and part.done > size:
            part.restart()
        total = _fetch_with_retries(url, part, size, progress, chunk_size, timeout, retries)
        _verify(part, dest.name, sha256, size if size is not None else total)
        os.replace(part.path, dest)
    except OSError as exc:  # network errors are handled inside; this is the local disk
        raise DownloadError(f"Could not save the download to {dest}: {exc.strerror or exc}.") from None
    return dest


def _fetch_with_retries(
    url: str,
    part: _PartFile,
    size: int | None,
    progress: Progress | None,
    chunk_size: int,
    timeout: float,
    retries: int,
) -> int | None:
    """Resume after drops, pausing a little longer each time; return the full size when known."""
    failures = 0
    while True:
        try:
            return _fetch(url, part, size, progress, chunk_size, timeout)
        except _Dropped as exc:
            # A host that cannot be reached at all is reported at once; only a
            # transfer that already started is worth waiting for.
            if (exc.connecting and failures == 0) or failures >= retries:
                raise DownloadError(f"Could not download {url}: {exc}.") from None
            failures += 1
            time.sleep(RETRY_PAUSE_S * failures)


def _fetch(
    url: str,
    part: _PartFile,
    size: int | None,
    progress: Progress | None,
    chunk_size: int,
    timeout: float,
) -> int | None:
    """One request: append the rest of the file to ``part``; return the full size when known."""
    if size is not None and part.done == size:
        return size  # a complete leftover: only verification is left
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    except ValueError as exc:
        raise DownloadError(f"Could not download {url}: {exc}.") from None
    if part.done:
        request.add_header("Range", f"bytes={part.done}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and part.done:
            return _range_not_satisfiable(exc, part)
        exc.close()
        raise DownloadError(f"Could not download {url}: the server answered {exc.code} {exc.reason}.") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Dropped(_reason(exc), connecting=True) from None
    with response:
        total = _start(response, part, url)
        if size is not None and total is not None and total != size:
            part.discard()
            raise DownloadError(f"Could not download {url}: the server offers {total:,} bytes, expected {size:,}.")
        total = total if total is not None else size
        if progress:
            progress(part.done, total)
        length = response.length  # bytes this response promises, when it says
        received = 0
        with open(part.path, "ab") as out:
            while True:
                try:
                    chunk = response.read(chunk_size)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Dropped(_reason(exc)) from None
                if not chunk:
                    break
                out.write(chunk)
                part.digest.update(chunk)
                part.done += len(chunk)
                received += len(chunk)
                if progress:
                    progress(part.done, total)
            out.flush()
            os.fsync(out.fileno())
    if (length is not None and received < length) or (total is not None and part.done < total):
        raise _Dropped(f"the connection closed after {part.done:,} of {total or '?'} bytes")
    return total


def _start(response: http.client.HTTPResponse, part: _PartFile, url: str) -> int | None:
    """Align ``part`` with what the server sends (a resumed range or the whole file); return the full size."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None:
            raise DownloadError(
                f"Could not download {url}: the server sent a partial answer without a usable Content-Range."
            )
        start = int(match[1])
        if start != part.done:
            asked = part.done
            part.restart()
            raise _Dropped(f"the server resumed at byte {start:,} instead of {asked:,}")
        return None if match[2] == "*" else int(match[2])
    if part.done:
        part.restart()  # the server ignored the Range header and sends everything again
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _range_not_satisfiable(exc: urllib.error.HTTPError, part: _PartFile) -> int:
    """A 416 means the part already holds the whole file, or is longer than it and useless."""
    match = re.fullmatch(r"bytes \*/(\d+)", (exc.headers.get("Content-Range") or "").strip())
    if match and int(match[1]) == part.done:
        return part.done
    part.restart()
    raise _Dropped("the partial file did not fit the server's copy; starting again")


def _verify(part: _PartFile, name: str, sha256: str | None, size: int | None) -> None:
    if size is not None and part.done != size:
        part.discard()
        raise DownloadError(f"Download of {name} is incomplete or wrong: expected {size:,} bytes, got {part.done:,}.")
    if sha256 is not None and part.digest.hexdigest() != sha256.lower():
        part.discard()
        raise DownloadError(
            f"Download of {name} is corrupt: expected SHA-256 {sha256.lower()}, got {part.digest.hexdigest()}."
        )


def _reason(exc: BaseException) -> str:
    """The human part of a network error (urllib wraps the socket error in ``reason``)."""
    reason = getattr(exc, "reason", None) or exc
    return str(reason) or type(reason).__name__
