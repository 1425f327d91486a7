from __future__ import annotations

import gc
import threading
import weakref
from types import SimpleNamespace

import numpy as np
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.uploaded_file_manager import UploadedFileRec

from samdash.engine import EmbeddingCache
from samdash.errors import CheckpointError

from samdash.sam_engine import SamEngine
from samdash.engine_pool import EnginePool
from samdash.ui.sessions import Janitor
from samdash.ui.state import SessionData
from tests.tiny_sam import build_tiny_sam


def _builder(cache: EmbeddingCache, built: list[SamEngine], name: str = "tiny"):
    def build() -> SamEngine:
        engine = SamEngine(build_tiny_sam(), name, cache)
        built.append(engine)
        return engine

    return build


def test_sessions_that_chose_one_model_share_one_engine():
    pool, cache, built = EnginePool(), EmbeddingCache(64 << 20), []
    first = pool.acquire("alice", "tiny", _builder(cache, built))
    second = pool.acquire("bob", "tiny", _builder(cache, built))
    assert first is second and first.result(30) is built[0]
    assert len(built) == 1 and len(pool) == 1


def test_a_model_loads_on_a_thread_of_its_own_while_the_session_goes_on():
    pool, cache, built = EnginePool(), EmbeddingCache(64 << 20), []
    release = threading.Event()
    build = _builder(cache, built)

    def slow() -> SamEngine:
        assert release.wait(30)
        return build()

    future = pool.acquire("alice", "tiny", slow)  # returns at once, the load still waiting
    assert not future.done() and len(pool) == 0
    assert pool.acquire("bob", "tiny", slow) is future  # a second session waits for the same load
    release.set()
    assert future.result(30) is built[0] and len(pool) == 1
    assert pool.acquire("carol", "tiny", slow).result(0) is built[0]  # loaded: done at once


def test_a_model_every_session_left_while_it_loaded_is_let_go_once_loaded():
    pool, cache, built = EnginePool(), EmbeddingCache(64 << 20), []
    release = threading.Event()
    build = _builder(cache, built)
    future = pool.acquire("alice", "tiny", lambda: release.wait(30) and build())
    pool.release("alice")
    release.set()
    model_ref = weakref.ref(future.result(30).model)
    assert len(pool) == 0
    del future
    built.clear()
    gc.collect()
    assert model_ref() is None, "a model nobody waits for must be freed once loaded"


def test_an_engine_nobody_uses_is_released_with_its_embeddings(scene):
    pool, cache, built = EnginePool(), EmbeddingCache(64 << 20), []
    engine = pool.acquire("alice", "a", _builder(cache, built, "a")).result(30)
    pool.acquire("bob", "a", _builder(cache, built, "a"))
    engine.embed(scene, "scene")
    other = SamEngine(build_tiny_sam(), "b", cache)
    other.embed(scene, "scene")
    model_ref = weakref.ref(engine.model)
    pool.release("alice")
    assert len(pool) == 1  # bob still uses it
    pool.acquire("bob", "b", lambda: other).result(30)  # bob switches model: nobody uses "a" now
    assert len(pool) == 1 and len(cache) == 1 and cache.get(("b", "scene")) is not None
    del engine
    built.clear()
    gc.collect()
    assert model_ref() is None, "a released model must be freed"


def test_a_failed_load_leaves_nothing_behind_and_the_next_one_loads():
    pool, cache, built = EnginePool(), EmbeddingCache(64 << 20), []
    read = []

    def broken() -> SamEngine:
        weights = np.zeros(1 << 20)  # a checkpoint half read when the load fails
        read.append(weakref.ref(weights))
        raise CheckpointError("checkpoint unreadable")

    failed = pool.acquire("alice", "tiny", broken)
    with pytest.raises(CheckpointError, match="checkpoint unreadable"):
        failed.result(30)
    assert len(pool) == 0
    gc.collect()
    assert read[0]() is None, "the failure the sessions are shown must not keep the load's frames"
    assert pool.acquire("alice", "tiny", _builder(cache, built)).result(30) is built[0]


def test_concurrent_first_requests_load_the_model_once():
    pool, cache, built = EnginePool(), EmbeddingCache(64 << 20), []
    build = _builder(cache, built)
    engines = []
    threads = [threading.Thread(target=lambda i=i: engines.append(pool.acquire(f"s{i}", "tiny", build).result(30))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(built) == 1 and len(engines) == 4 and all(e is built[0] for e in engines)


def test_the_janitor_clears_a_session_only_after_its_grace_period(scene):
    pool, cache, built = EnginePool(), EmbeddingCache(64 << 20), []
    janitor = Janitor(pool, grace_seconds=120)
    data = SessionData()
    data.cache("resized")["x"] = np.zeros((3000, 4000, 3), np.uint8)
    janitor.track("alice", data)
    pool.acquire("alice", "tiny", _builder(cache, built)).result(30)
    active = {"alice"}
    assert janitor.sweep(active.__contains__, now=1e9) == []  # connected: seen now
    active.clear()
    assert janitor.sweep(active.__contains__, now=1e9 + 60) == []  # gone, but may still reconnect
    assert data.cache("resized") and len(pool) == 1
    assert janitor.sweep(active.__contains__, now=1e9 + 121) == ["alice"]
    assert data.image is None and data.workspace is None and not data.cache("resized")
    assert len(pool) == 0


def test_the_janitor_lets_streamlit_forget_an_ended_sessions_uploads_and_downloads():
    """Streamlit drops a disconnected session without shutting it down: the callables of its download buttons
    (which hold its image) and its uploads would stay for the life of the server."""
    # Outside a script run Streamlit files everything under one session id.
    session = "dontcare"
    files = SimpleNamespace(
        uploaded_file_mgr=MemoryUploadedFileManager("/_stcore/upload_file"),
        media_file_mgr=MediaFileManager(MemoryMediaFileStorage("/media")),
    )
    image = np.zeros((300, 400, 3), np.uint8)
    held = weakref.ref(image)
    files.media_file_mgr.add_deferred(lambda pixels=image: pixels.tobytes(), "image/png", "1.2.3")
    files.uploaded_file_mgr.add_file(session, UploadedFileRec("f1", "scene.jpg", "image/jpeg", b"x" * 1000))
    janitor = Janitor(EnginePool(), grace_seconds=120, files=lambda: files)
    janitor.track(session, SessionData())
    del image
    gc.collect()
    assert held() is not None and files.uploaded_file_mgr.get_files(session, ["f1"])
    assert janitor.sweep(lambda _: False, now=1e12) == [session]
    assert held() is None
    assert files.uploaded_file_mgr.get_files(session, ["f1"]) == []
