"""Engines shared by the sessions of one server, each kept only while some session uses it.

A SAM model is hundreds of MB to GB. Sessions that chose the same model share
one engine; when the last session using a model leaves or picks another, the
engine and its cached embeddings are let go.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

from samdash.engine import Segmenter


class EnginePool:
    """Engines by key, each with the set of holders (sessions) that use it."""

    def __init__(self) -> None:
        self._engines: dict[Hashable, Segmenter] = {}
        self._holders: dict[Hashable, set[str]] = {}
        self._lock = threading.Lock()
        # One load at a time per key: two sessions asking for a new model at once load it once.
        self._loading: dict[Hashable, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._engines)

    def acquire(self, holder: str, key: Hashable, build: Callable[[], Segmenter]) -> Segmenter:
        """The engine for ``key``, built on first use; ``holder`` lets go of any other engine it held.

        A build that fails leaves the holder with no engine and nothing half-made in the pool.
        """
        self.release(holder, keep=key)
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._holders[key].add(holder)
                return engine
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            try:
                with self._lock:
                    engine = self._engines.get(key)
                if engine is None:
                    engine = build()
                with self._lock:
                    engine = self._engines.setdefault(key, engine)
                    self._holders.setdefault(key, set()).add(holder)
                    return engine
            finally:
                with self._lock:
                    self._loading.pop(key, None)

    def release(self, holder: str, keep: Hashable | None = None) -> None:
        """``holder`` no longer uses any engine (but ``keep``); engines nobody uses go, with their embeddings."""
        dropped = []
        with self._lock:
            for key, holders in list(self._holders.items()):
                if key == keep or holder not in holders:
                    continue
                holders.discard(holder)
                if not holders:
                    del self._holders[key]
                    dropped.append(self._engines.pop(key))
        for engine in dropped:
            engine.cache.discard(lambda cache_key, gone=engine.cache_id: cache_key[0] != gone)
