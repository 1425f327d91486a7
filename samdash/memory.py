"""Giving memory back to the operating system, and reading how much the process holds.

Python frees a session's arrays when the session goes, but glibc's malloc
keeps freed blocks of its per-thread arenas for reuse, so a server that served
eight analysts stays at its peak long after they left. ``give_back`` asks it
to return what it can.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only: musl and macOS have no malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


def give_back() -> None:
    """Collect garbage (sessions hold reference cycles) and return free heap pages to the system."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def rss_bytes() -> int:
    """Resident memory of this process now (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
