"""Which segmenter the page and the CLI get: SAM when a checkpoint is at hand,
the GrabCut fallback otherwise, so the tool still works offline."""

from __future__ import annotations

from samdash.backends import make_encoder
from samdash.config import Settings
from samdash.engine import EmbeddingCache, SamEngine
from samdash.models import load_model, select_device


def sam_engine(model_type: str | None, settings: Settings, cache: EmbeddingCache) -> SamEngine:
    """Load a checkpoint (raising ``CheckpointError`` when it is missing or broken) and wrap it in an engine."""
    device = select_device(settings.device)
    loaded = load_model(model_type, settings, device)
    return SamEngine(
        loaded.model,
        name=loaded.name,
        cache=cache,
        encoder=make_encoder(loaded.model, settings.encoder_backend),
        cache_id=f"{loaded.model_type}:{loaded.checkpoint.resolve()}",
    )
