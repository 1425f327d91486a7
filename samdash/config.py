"""Settings read from the environment, in one place, so the page, the CLI and
the tests agree on names and defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_model_dir() -> Path:
    """A per-user cache directory, following XDG where it is set."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "samdash" / "checkpoints"


def default_data_dir() -> Path:
    """Where projects live: a per-user data directory, following XDG where it is set."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "samdash"


def _env_paths(name: str) -> tuple[Path, ...]:
    """A list of directories, separated as in PATH."""
    value = os.environ.get(name, "").strip()
    return tuple(Path(part).expanduser().resolve() for part in value.split(os.pathsep) if part.strip())


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from exc


@dataclass(frozen=True)
class Settings:
    checkpoint: Path | None = None
    model_type: str | None = None
    model_dir: Path = field(default_factory=default_model_dir)
    # A mirror holding every checkpoint under its file name; None fetches each from its publisher.
    download_base: str | None = None
    device: str = "auto"
    encoder_backend: str = "auto"
    embedding_cache_mb: int = 512
    max_image_pixels: int = 50_000_000
    data_dir: Path = field(default_factory=default_data_dir)
    # Embeddings kept on disk under the data directory, so a restarted server does not encode again.
    embedding_disk_mb: int = 2048
    # Server-side folders a project may be created from; none by default.
    image_roots: tuple[Path, ...] = ()
    # Where images are encoded: "local", or "ray" (the samdash-encoder Ray Serve application at ray_address).
    encoder: str = "local"
    ray_address: str = "auto"
    # When the Ray encoder cannot answer: encode here ("local") or say so ("none").
    encoder_fallback: str = "none"
    encoder_timeout_s: int = 120

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            checkpoint=_env_path("SAMDASH_CHECKPOINT"),
            model_type=os.environ.get("SAMDASH_MODEL_TYPE", "").strip() or None,
            model_dir=_env_path("SAMDASH_MODEL_DIR") or default_model_dir(),
            download_base=os.environ.get("SAMDASH_DOWNLOAD_BASE", "").strip() or None,
            device=os.environ.get("SAMDASH_DEVICE", "").strip() or "auto",
            encoder_backend=os.environ.get("SAMDASH_ENCODER_BACKEND", "").strip() or "auto",
            embedding_cache_mb=_env_int("SAMDASH_EMBEDDING_CACHE_MB", 512),
            max_image_pixels=_env_int("SAMDASH_MAX_IMAGE_PIXELS", 50_000_000),
            data_dir=_env_path("SAMDASH_DATA_DIR") or default_data_dir(),
            embedding_disk_mb=_env_int("SAMDASH_EMBEDDING_DISK_MB", 2048),
            image_roots=_env_paths("SAMDASH_IMAGE_ROOTS"),
            encoder=os.environ.get("SAMDASH_ENCODER", "").strip().lower() or "local",
            ray_address=os.environ.get("SAMDASH_RAY_ADDRESS", "").strip() or "auto",
            encoder_fallback=os.environ.get("SAMDASH_ENCODER_FALLBACK", "").strip().lower() or "none",
            encoder_timeout_s=_env_int("SAMDASH_ENCODER_TIMEOUT_S", 120),
        )
