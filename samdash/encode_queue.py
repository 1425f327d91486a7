"""Image encodes, one at a time per process, the ones a user waits for first.

An encode takes every core for seconds: two at once would each take twice as
long and double the peak memory. So all encodes of a process go through one
queue served by one background thread. A user waiting for an image
(``URGENT``) goes before encoding a project's next images ahead of time
(``AHEAD``); the same image asked for twice is encoded once, and asking for an
image that waits as ``AHEAD`` with ``URGENT`` moves it up.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np

from samdash.engine import Embedding, Segmenter, cached_embedding

URGENT = 0
AHEAD = 1
# Queued encode-ahead jobs beyond this many drop the oldest: a project's next few images, not a backlog.
MAX_AHEAD = 8

T = TypeVar("T")


@dataclass
class _Job:
    priority: int
    order: int
    fn: Callable[[], Any]
    future: Future = field(default_factory=Future)

    @property
    def waiting(self) -> bool:
        return not (self.future.running() or self.future.done())


class EncodeQueue:
    """Jobs by key, run in priority order by one thread, started when there is work and gone when there is none."""

    def __init__(self) -> None:
        self._jobs: dict[Hashable, _Job] = {}  # queued and running
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, priority: int, key: Hashable, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn`` under ``key``; a job under the same key, queued or running, is reused (and moved up to
        ``priority`` when that is more urgent) and its future returned."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.future.cancelled():
                job = self._jobs[key] = _Job(priority, next(self._order), fn)
                if priority == AHEAD:
                    self._bound_ahead()
            elif priority < job.priority:
                job.priority = priority
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="samdash-encode")
                self._thread.start()
            return job.future

    def cancel(self, key: Hashable) -> bool:
        """Drop an encode-ahead job that has not started; True if it was dropped."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.priority != AHEAD or not job.future.cancel():
                return False
            del self._jobs[key]
            return True

    def ahead(self) -> list[Hashable]:
        """Keys of the encode-ahead jobs still waiting, oldest first."""
        with self._lock:
            return [key for key, job in self._jobs.items() if job.priority == AHEAD and job.waiting]

    def _bound_ahead(self) -> None:
        waiting = [key for key, job in self._jobs.items() if job.priority == AHEAD and job.waiting]
        for key in waiting[: max(0, len(waiting) - MAX_AHEAD)]:
            self._jobs.pop(key).future.cancel()

    def _next(self) -> tuple[Hashable, _Job] | None:
        """The most urgent waiting job, marked running; None (and the thread is let go) when there is none.

        Once the process is exiting nothing more starts: it waits for the encode under way, not for the queue.
        """
        with self._lock:
            if not threading.main_thread().is_alive():
                for job in self._jobs.values():
                    job.future.cancel()
                self._jobs.clear()
            for key in [key for key, job in self._jobs.items() if job.future.cancelled()]:
                del self._jobs[key]  # cancelled while it waited: its function (and what it holds) goes now
            while True:
                waiting = [(job.priority, job.order, key) for key, job in self._jobs.items() if job.waiting]
                if not waiting:
                    self._thread = None
                    return None
                _, _, key = min(waiting)
                job = self._jobs[key]
                if job.future.set_running_or_notify_cancel():
                    return key, job
                del self._jobs[key]  # cancelled since the purge above

    def _run(self) -> None:
        while (picked := self._next()) is not None:
            key, job = picked
            try:
                result = job.fn()
            except BaseException as exc:  # noqa: BLE001 - the waiter gets whatever the job raised
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
            finally:
                with self._lock:
                    if self._jobs.get(key) is job:
                        del self._jobs[key]


# The process's queue: every encode of the page goes through it.
shared = EncodeQueue()


def encode_ahead(
    segmenter: Segmenter, images: Sequence[tuple[str, Callable[[], np.ndarray]]], queue: EncodeQueue = shared
) -> list[Future]:
    """Encode these images (content hash, loader of the RGB pixels) in the background, in this order, once
    nothing is urgent; encode-ahead queued earlier for other images is dropped.

    An image already in memory is skipped; one on disk is read into memory
    when its turn comes. A loader is called only then, so nothing large waits
    in the queue.
    """
    keys = [(segmenter.cache_id, content_hash) for content_hash, _ in images]
    for key in queue.ahead():
        if key not in keys:
            queue.cancel(key)
    return [
        queue.submit(AHEAD, key, partial(_embedding, segmenter, content_hash, load))
        for key, (content_hash, load) in zip(keys, images)
        if segmenter.cache.get(key) is None
    ]


def _embedding(segmenter: Segmenter, content_hash: str, load: Callable[[], np.ndarray]) -> Embedding:
    return cached_embedding(segmenter, content_hash) or segmenter.embed(load(), content_hash)
