"""Which segmenter the page and the CLI get: SAM when a checkpoint is at hand,
the GrabCut fallback otherwise, so the tool still works offline."""

from __future__ import annotations

from samdash.backends import make_encoder
from samdash.config import Settings
from samdash.embedding_disk import DiskEmbeddings
from samdash.engine import EmbeddingCache
from samdash.errors import SamdashError
from samdash.sam_engine import SamEngine
from samdash.models import load_model, select_device


def sam_engine(model_type: str | None, settings: Settings, cache: EmbeddingCache) -> SamEngine:
    """Load a checkpoint (raising ``CheckpointError`` when it is missing or broken) and wrap it in an engine
    that keeps its embeddings on disk under the data directory."""
    device = select_device(settings.device)
    loaded = load_model(model_type, settings, device)
    checkpoint = loaded.checkpoint.resolve()
    stat = checkpoint.stat()
    remote, problem = None, None
    if settings.encoder == "ray":
        from samdash.ray_encoder import RayEncoder, weights_fingerprint  # noqa: PLC0415 - Ray is optional

        try:
            remote = RayEncoder(settings.ray_address, settings.encoder_timeout_s, weights_fingerprint(loaded.model))
        except SamdashError as exc:  # unreachable, other weights, or Ray not installed
            if settings.encoder_fallback != "local":
                raise
            problem = f"{exc}; images are encoded here"
    engine = SamEngine(
        loaded.model,
        name=loaded.name,
        cache=cache,
        encoder=make_encoder(loaded.model, settings.encoder_backend),
        # A file replaced at the same path is another model: its embeddings on disk must not be taken for this one's.
        cache_id=f"{loaded.model_type}:{checkpoint}:{stat.st_size}:{stat.st_mtime_ns}",
        disk=DiskEmbeddings(settings.data_dir / "embeddings", settings.embedding_disk_mb << 20),
        remote=remote,
        fallback_local=settings.encoder_fallback == "local",
    )
    engine.remote_problem = problem
    return engine
