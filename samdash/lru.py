"""A thread-safe LRU bounded in bytes, shared by the caches every session of a process uses."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    """Least recently used items go first once the bytes held pass ``max_bytes``.

    Concurrent requests for one missing key compute it once; a computation
    that fails leaves nothing behind, so the next request tries again.
    The most recent item is kept even when it alone is over the bound.
    """

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[K, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._in_flight: dict[K, threading.Lock] = {}

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        item = self.get(key)
        if item is not None:
            return item
        with self._lock:
            key_lock = self._in_flight.setdefault(key, threading.Lock())
        try:
            with key_lock:
                item = self.get(key)
                if item is None:
                    item = compute()
                    self.put(key, item)
        finally:
            with self._lock:
                if self._in_flight.get(key) is key_lock:
                    del self._in_flight[key]
        return item

    def put(self, key: K, item: V) -> None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return
            self._items[key] = item
            self._bytes += self._size_of(item)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= self._size_of(evicted)

    def discard(self, keep: Callable[[K], bool]) -> int:
        """Drop every item whose key ``keep`` refuses; return how many went."""
        with self._lock:
            gone = [key for key in self._items if not keep(key)]
            for key in gone:
                self._bytes -= self._size_of(self._items.pop(key))
            return len(gone)
