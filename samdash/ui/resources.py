"""Process-wide objects: one model per checkpoint and one embedding cache, shared by every session."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import streamlit as st

from samdash.config import Settings
from samdash.engine import EmbeddingCache, Segmenter
from samdash.grabcut import GrabCutEngine
from samdash.segmenter import sam_engine


@st.cache_resource(show_spinner=False)
def embedding_cache(max_bytes: int) -> EmbeddingCache:
    return EmbeddingCache(max_bytes)


@st.cache_resource(show_spinner="Loading the model (once per server process)…", max_entries=2)
def _cached_sam(model_type: str | None, checkpoint: str | None, file_stamp: tuple[int, int], settings: Settings) -> Segmenter:
    del file_stamp  # part of the cache key only: a replaced checkpoint file loads afresh
    settings = replace(settings, checkpoint=Path(checkpoint) if checkpoint else None)
    return sam_engine(model_type, settings, embedding_cache(settings.embedding_cache_mb << 20))


def sam_segmenter(model_type: str | None, checkpoint: Path, settings: Settings) -> Segmenter:
    """The SAM engine for a checkpoint file that exists (errors are not cached, so a fixed file loads next time)."""
    stat = checkpoint.stat()
    explicit = str(checkpoint) if settings.checkpoint is not None else None
    return _cached_sam(model_type, explicit, (stat.st_size, stat.st_mtime_ns), settings)


@st.cache_resource(show_spinner=False)
def fallback_segmenter(cache_mb: int) -> Segmenter:
    return GrabCutEngine(embedding_cache(cache_mb << 20))
