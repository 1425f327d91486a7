"""The process's encode queue: one job at a time, a waiting user before encode-ahead, one encode per image."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from samdash.embedding_disk import DiskEmbeddings
from samdash.encode_queue import AHEAD, MAX_AHEAD, URGENT, EncodeQueue, encode_ahead
from samdash.engine import EmbeddingCache
from samdash.sam_engine import SamEngine


@pytest.fixture
def queue() -> EncodeQueue:
    return EncodeQueue()


@pytest.fixture
def hold(queue) -> Iterator[Callable[[], None]]:
    """Occupy the queue's thread until the returned function is called, so jobs can be queued behind it."""
    started, release = threading.Event(), threading.Event()
    queue.submit(URGENT, "held", lambda: (started.set(), release.wait(30)))
    assert started.wait(10)
    yield release.set
    release.set()


def _recording(done: list[str], name: str) -> Callable[[], str]:
    def job() -> str:
        done.append(name)
        return name

    return job


def test_a_waiting_user_goes_before_encode_ahead(queue, hold):
    done: list[str] = []
    futures = [queue.submit(AHEAD, name, _recording(done, name)) for name in ("next 1", "next 2")]
    futures.append(queue.submit(URGENT, "opened", _recording(done, "opened")))
    hold()
    assert [f.result(10) for f in futures] == ["next 1", "next 2", "opened"]
    assert done == ["opened", "next 1", "next 2"]


def test_the_same_key_is_one_job_moved_up_when_a_user_waits_for_it(queue, hold):
    done: list[str] = []
    other = queue.submit(AHEAD, "next 1", _recording(done, "next 1"))
    ahead = queue.submit(AHEAD, "next 2", _recording(done, "next 2"))
    again = queue.submit(AHEAD, "next 2", _recording(done, "never"))
    opened = queue.submit(URGENT, "next 2", _recording(done, "never"))
    assert ahead is again is opened
    hold()
    assert opened.result(10) == "next 2" and other.result(10) == "next 1"
    assert done == ["next 2", "next 1"]


def test_a_running_job_is_shared_not_started_twice(queue):
    release, calls = threading.Event(), []

    def slow() -> int:
        calls.append(1)
        release.wait(10)
        return len(calls)

    first = queue.submit(URGENT, "image", slow)
    while not first.running():
        time.sleep(0.01)
    second = queue.submit(URGENT, "image", slow)
    release.set()
    assert second is first and first.result(10) == 1 and calls == [1]


def test_encode_ahead_can_be_cancelled_before_it_starts(queue, hold):
    done: list[str] = []
    ahead = queue.submit(AHEAD, "next", _recording(done, "next"))
    urgent = queue.submit(URGENT, "opened", _recording(done, "opened"))
    assert queue.cancel("next") and ahead.cancelled()
    assert not queue.cancel("opened") and not urgent.cancelled()  # a user waits for it
    assert not queue.cancel("held")  # running
    assert queue.ahead() == []
    again = queue.submit(AHEAD, "next", _recording(done, "next"))  # a cancelled key can be queued afresh
    hold()
    assert again.result(10) == "next" and done == ["opened", "next"]


def test_a_failed_job_fails_its_future_and_the_queue_goes_on(queue):
    def broken() -> None:
        raise RuntimeError("out of memory")

    failed = queue.submit(URGENT, "broken", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        failed.result(10)
    assert queue.submit(URGENT, "broken", lambda: "fine").result(10) == "fine"  # a failure is not kept


def test_jobs_run_one_at_a_time(queue):
    active, most, lock = [0], [0], threading.Lock()

    def job() -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1

    futures = [queue.submit(URGENT if i % 2 else AHEAD, i, job) for i in range(8)]
    for future in futures:
        future.result(10)
    assert most[0] == 1


def test_queued_encode_ahead_is_bounded_oldest_dropped(queue, hold):
    futures = [queue.submit(AHEAD, i, lambda: None) for i in range(MAX_AHEAD + 2)]
    assert [f.cancelled() for f in futures[:2]] == [True, True]
    assert queue.ahead() == list(range(2, MAX_AHEAD + 2))


_EXITING = """
import time
from samdash.encode_queue import AHEAD, URGENT, EncodeQueue
queue = EncodeQueue()
queue.submit(URGENT, "opened", lambda: (time.sleep(1), print("opened encoded", flush=True)))
for i in range(3):
    queue.submit(AHEAD, i, lambda i=i: (time.sleep(30), print("next", i, "encoded", flush=True)))
time.sleep(0.2)
"""


def test_an_exiting_process_finishes_the_encode_under_way_and_starts_no_other():
    done = subprocess.run([sys.executable, "-c", _EXITING], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["opened encoded"]


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def test_encode_ahead_loads_each_image_only_when_its_encode_runs(tiny_sam, queue, hold, tmp_path):
    engine = SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20), disk=DiskEmbeddings(tmp_path, 64 << 20))
    loaded: list[str] = []

    def loader(name: str, seed: int) -> Callable[[], np.ndarray]:
        return lambda: (loaded.append(name), _image(seed))[1]

    futures = encode_ahead(engine, [("one", loader("one", 1)), ("two", loader("two", 2))], queue)
    assert len(futures) == 2 and loaded == [] and engine.encoder_calls == 0  # nothing large is held while queued
    hold()
    embeddings = [f.result(60) for f in futures]
    assert loaded == ["one", "two"] and engine.encoder_calls == 2
    assert [engine.cache.get(("tiny", name)) for name in ("one", "two")] == embeddings
    assert encode_ahead(engine, [("one", loader("one", 1))], queue) == []  # in memory already: nothing to do
    # After a restart the images are on disk: read into memory, neither loaded nor encoded.
    restarted = SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20), disk=DiskEmbeddings(tmp_path, 64 << 20))
    for future in encode_ahead(restarted, [("one", loader("one", 1)), ("two", loader("two", 2))], queue):
        future.result(60)
    assert restarted.encoder_calls == 0 and loaded == ["one", "two"]
    assert restarted.cache.get(("tiny", "one")) is not None


def test_encode_ahead_for_other_images_drops_what_was_queued_before(tiny_sam, queue, hold):
    engine = SamEngine(tiny_sam, "tiny", EmbeddingCache(64 << 20))
    first = encode_ahead(engine, [(name, lambda: _image(0)) for name in ("a", "b", "c")], queue)
    second = encode_ahead(engine, [(name, lambda: _image(0)) for name in ("c", "d")], queue)
    assert [f.cancelled() for f in first] == [True, True, False]
    assert second[0] is first[2]  # still wanted: kept, not queued twice
    assert queue.ahead() == [("tiny", "c"), ("tiny", "d")]
    assert all(queue.cancel(key) for key in queue.ahead()) and queue.ahead() == []
