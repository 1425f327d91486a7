"""Engines shared by the sessions of one server, each kept only while some session uses it.

A SAM model is hundreds of MB to GB. Sessions that chose the same model share
one engine; when the last session using a model leaves or picks another, the
engine and its cached embeddings are let go.

A model loads on a thread of its own (importing PyTorch and reading a
checkpoint take seconds): the page shows the image and its saved objects
meanwhile instead of a blank page.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor

from samdash.engine import Segmenter
from samdash.errors import SamdashError

log = logging.getLogger("samdash")


class EnginePool:
    """Engines (as futures while they load) by key, each with the set of holders (sessions) that use it."""

    def __init__(self) -> None:
        self._engines: dict[Hashable, Future[Segmenter]] = {}
        self._holders: dict[Hashable, set[str]] = {}
        self._lock = threading.Lock()
        # One load at a time: two models loading at once would only slow each other down and double the peak.
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samdash-model-load")

    def __contains__(self, key: Hashable) -> bool:
        """Whether the engine for ``key`` is loaded or loading."""
        with self._lock:
            return key in self._engines

    def __len__(self) -> int:
        """Engines loaded and held."""
        with self._lock:
            return sum(future.done() and future.exception() is None for future in self._engines.values())

    def acquire(self, holder: str, key: Hashable, build: Callable[[], Segmenter]) -> Future[Segmenter]:
        """The engine for ``key``: a done future when it is loaded, else the future of its load (started here on
        first use, and shared by every holder that asks meanwhile); ``holder`` lets go of any other engine it held.

        A load that fails leaves nothing in the pool: the next request loads afresh.
        """
        self.release(holder, keep=key)
        with self._lock:
            self._holders.setdefault(key, set()).add(holder)
            future = self._engines.get(key)
            started = future is None
            if started:
                future = self._engines[key] = self._loader.submit(_load, build)
        if started:  # outside the lock: a load already done calls back at once, in this thread
            future.add_done_callback(lambda done: self._loaded(key, done))
        return future

    def _loaded(self, key: Hashable, future: Future[Segmenter]) -> None:
        """A load that failed is forgotten; one nobody waits for any more (every holder left meanwhile) is let go."""
        with self._lock:
            if self._engines.get(key) is future and (future.exception() is not None or not self._holders.get(key)):
                del self._engines[key]
                self._holders.pop(key, None)

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
                    future = self._engines[key]
                    if future.done():  # one still loading is let go when it is done (``_loaded``)
                        del self._engines[key]
                        if future.exception() is None:
                            dropped.append(future.result())
        for engine in dropped:
            engine.cache.discard(lambda cache_key, gone=engine.cache_id: cache_key[0] != gone)


def _load(build: Callable[[], Segmenter]) -> Segmenter:
    try:
        return build()
    except Exception as exc:
        if not isinstance(exc, SamdashError):  # not the user's doing: the log gets the whole story
            log.error("while loading a model", exc_info=exc)
        # The future keeps the error for the sessions to show; without its traceback, it keeps none of the load's
        # frames (and the half-read checkpoint they hold).
        raise exc.with_traceback(None)
