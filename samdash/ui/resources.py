"""Process-wide objects: one engine per chosen checkpoint and one embedding cache, shared by every session.

A SAM engine is held by the sessions that chose it and let go when none does
(``samdash.engine_pool``); the GrabCut fallback holds no model and stays.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import streamlit as st

from samdash.config import Settings
from samdash.engine import EmbeddingCache, Segmenter
from samdash.grabcut import GrabCutEngine
from samdash.ui.sessions import engine_pool
from samdash.ui.state import session, session_id

# The longest a model load waits for the page to show its canvas (a browser that never reports it).
HOLD_MODEL_S = 8.0


@st.cache_resource(show_spinner=False)
def embedding_cache(max_bytes: int) -> EmbeddingCache:
    return EmbeddingCache(max_bytes)


def sam_segmenter(model_type: str | None, checkpoint: Path, settings: Settings) -> Future[Segmenter]:
    """The SAM engine for a checkpoint file that exists, shared with the other sessions that use it: done at once
    when it is loaded, else loading on a thread of its own while the page shows what it can.

    A replaced file (other size or time) loads afresh; a load that failed is not kept, and this session does not
    try the same file again until the page is reloaded (each rerun would otherwise start the failing load over).
    """
    stat = checkpoint.stat()
    explicit = checkpoint if settings.checkpoint is not None else None
    key = (model_type, str(explicit), stat.st_size, stat.st_mtime_ns, settings)
    failed = st.session_state.setdefault("failed_model_loads", {})
    pending = st.session_state.pop("model_load", None)  # (key, future) of a load this session saw start
    if pending is not None and pending[0] == key and pending[1].done() and pending[1].exception() is not None:
        failed[key] = pending[1]
    if key in failed:
        return failed[key]
    settings = replace(settings, checkpoint=explicit)

    def build() -> Segmenter:
        from samdash.segmenter import sam_engine  # PyTorch: seconds and hundreds of MB, paid only for a SAM model

        return sam_engine(model_type, settings, embedding_cache(settings.embedding_cache_mb << 20))

    pool, data, holder = engine_pool(), session(), session_id()
    if data.page_shown or key in pool:
        future = pool.acquire(holder, key, build)
    else:
        # Importing PyTorch beside the page's first runs slows them several times over (they share the cores and
        # the GIL): the page shows its image, objects and canvas first, then the model loads.
        held = pending is not None and pending[0] == key and data.held_model is not None
        future = pending[1] if held else Future()
        since = data.held_model[0] if held else time.monotonic()  # a rerun does not hold it back any longer
        data.held_model = (since, lambda: _forward(pool.acquire(holder, key, build), future))
    if not future.done():
        st.session_state["model_load"] = (key, future)  # not the engine itself: the session holds no model
    elif future.exception() is not None:
        failed[key] = future
    return future


def start_held_model(shown: bool) -> None:
    """Start this session's held-back model load once its canvas is ``shown`` (or after a while without it)."""
    data = session()
    data.page_shown = data.page_shown or shown
    if data.held_model is not None and (data.page_shown or time.monotonic() - data.held_model[0] > HOLD_MODEL_S):
        _, start = data.held_model
        data.held_model = None
        data.page_shown = True
        start()


def _forward(source: Future[Segmenter], target: Future[Segmenter]) -> None:
    """``target`` completes as ``source`` does."""

    def done(finished: Future[Segmenter]) -> None:
        if finished.exception() is not None:
            target.set_exception(finished.exception())
        else:
            target.set_result(finished.result())

    source.add_done_callback(done)


def fallback_segmenter(cache_mb: int) -> Segmenter:
    """GrabCut: no model to hold, so the session lets go of any SAM engine it had."""
    engine_pool().release(session_id())
    return _grabcut(cache_mb)


@st.cache_resource(show_spinner=False)
def _grabcut(cache_mb: int) -> Segmenter:
    return GrabCutEngine(embedding_cache(cache_mb << 20))
