"""Process-wide objects: one engine per chosen checkpoint and one embedding cache, shared by every session.

A SAM engine is held by the sessions that chose it and let go when none does
(``samdash.engine_pool``); the GrabCut fallback holds no model and stays.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import streamlit as st

from samdash.config import Settings
from samdash.engine import EmbeddingCache, Segmenter
from samdash.grabcut import GrabCutEngine
from samdash.ui.sessions import engine_pool
from samdash.ui.state import session_id


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

    future = engine_pool().acquire(session_id(), key, build)
    if not future.done():
        st.session_state["model_load"] = (key, future)  # not the engine itself: the session holds no model
    elif future.exception() is not None:
        failed[key] = future
    return future


def fallback_segmenter(cache_mb: int) -> Segmenter:
    """GrabCut: no model to hold, so the session lets go of any SAM engine it had."""
    engine_pool().release(session_id())
    return _grabcut(cache_mb)


@st.cache_resource(show_spinner=False)
def _grabcut(cache_mb: int) -> Segmenter:
    return GrabCutEngine(embedding_cache(cache_mb << 20))
