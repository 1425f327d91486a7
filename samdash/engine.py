"""The segmentation engine: encode an image once, then answer many prompts.

SAM splits into a heavy image encoder (seconds on a CPU) and a light prompt
decoder (tens of milliseconds). Embeddings are therefore cached per
(model, image content) in a byte-bounded LRU shared by every session of the
process, and SAM's on disk too (``samdash.embedding_disk``), so a restarted
process does not encode again. Prompts are decoded without touching shared
mutable state, so Streamlit's session threads can call one engine at once.

This module holds what every engine shares and needs no PyTorch; SAM's own
engine is ``samdash.sam_engine``, GrabCut's ``samdash.grabcut``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from samdash.lru import ByteLRU
from samdash.prompts import Prompt


@dataclass(frozen=True, eq=False)
class Embedding:
    """An image as one engine sees it: reusable for any number of prompts."""

    key: tuple[str, str]  # (engine id, image content hash)
    original_size: tuple[int, int]  # (height, width) of the image
    input_size: tuple[int, int]  # (height, width) the model saw
    features: Any
    nbytes: int
    encode_seconds: float


@dataclass(frozen=True)
class MaskGeometry:
    """How low-resolution logits map onto the image: plain numbers, so candidates need no engine to make masks.

    ``model_side`` is the side of the square SAM pads its input to (None for
    logits that simply cover the image, as the GrabCut fallback's do).
    """

    original_size: tuple[int, int]  # (height, width) of the image
    input_size: tuple[int, int]  # (height, width) of the image as the model saw it
    model_side: int | None = None

    def extent(self, logits_shape: tuple[int, int]) -> tuple[int, int]:
        """The (height, width) of the logits that covers the image (SAM pads its input to a square)."""
        if self.model_side is None:
            return logits_shape
        return tuple(-(-side * logits_shape[-1] // self.model_side) for side in self.input_size)


def upscale(logits: np.ndarray, geometry: MaskGeometry) -> np.ndarray:
    """A full-size boolean mask from one low-resolution logit map.

    For SAM this is its own post-processing (``Sam.postprocess_masks`` and
    its threshold of 0), so masks match ``SamPredictor`` exactly. PyTorch is
    imported here, not with this module: only SAM's logits need it, and a
    server without a SAM model never loads it.
    """
    height, width = geometry.original_size
    if geometry.model_side is None:
        # In or out, interpolated: a smooth outline, with an 8-bit full-size copy instead of a 32-bit one.
        inside = np.where(np.asarray(logits) > 0, np.uint8(255), np.uint8(0))
        return cv2.resize(inside, (width, height), interpolation=cv2.INTER_LINEAR) >= 128
    import torch
    import torch.nn.functional as F

    logits = np.asarray(logits, np.float32)
    side = geometry.model_side
    with torch.inference_mode():
        tensor = F.interpolate(torch.from_numpy(logits)[None, None], (side, side), mode="bilinear", align_corners=False)
        tensor = tensor[..., : geometry.input_size[0], : geometry.input_size[1]]
        full = F.interpolate(tensor, (height, width), mode="bilinear", align_corners=False)
        return (full[0, 0] > 0).numpy()


_tokens = itertools.count()


@dataclass(frozen=True)
class DeferredLogits:
    """Logits not made yet, for ``Candidates`` read back from a project store: their shape and dtype, and what makes
    them (with the candidate kept exact, if any). A reopened image shows its objects from their masks; only the
    objects refined again, or whose candidates are shown, need their logits decompressed."""

    shape: tuple[int, ...]
    dtype: np.dtype
    load: Callable[[], tuple[np.ndarray, tuple[int, np.ndarray] | None]]


class Candidates:
    """Candidate masks for one prompt, in the model's order, with its predicted quality scores.

    Plain data: the engine's low-resolution logits (what SAM takes back to
    refine an object) and how they map onto the image. Full-size masks are
    made from them on demand, one candidate at a time, and not kept here.
    Boolean "logits" (an engine that only says in or out, like GrabCut) are
    kept as packed bits, an eighth of a byte a pixel, and read as ±1.
    """

    def __init__(
        self,
        scores: np.ndarray,
        logits: np.ndarray | DeferredLogits,
        geometry: MaskGeometry,
        decode_seconds: float = 0.0,
        source: str = "",
        exact: tuple[int, np.ndarray] | None = None,
    ) -> None:
        self.scores = np.asarray(scores, np.float32)
        if isinstance(logits, DeferredLogits):
            self._shape, self._dtype, self._deferred = logits.shape, np.dtype(logits.dtype), logits.load
        else:
            logits = np.asarray(logits)
            self._shape, self._dtype, self._deferred = logits.shape, logits.dtype, None
        self._packed = self._dtype == bool
        if self._deferred is None:
            self._keep(logits, exact)
        self.geometry = geometry
        self.decode_seconds = decode_seconds
        # Which engine made them: only that engine can take ``logits`` back as a mask input.
        self.source = source
        # Names this set in caches of things made from it (thumbnails): unlike ``id``, never reused.
        self.token = next(_tokens)

    def _keep(self, logits: np.ndarray, exact: tuple[int, np.ndarray] | None) -> None:
        # The engine's own low-resolution output, (n, h, w), in its own dtype; booleans packed 8 to a byte.
        self._stored_logits = np.packbits(logits, axis=-1) if self._packed else logits
        # (index, float32 logits) of one candidate kept exactly when ``logits`` are rounded (see ``compacted``).
        self._exact_logits = exact

    def _load(self) -> None:
        deferred = self._deferred
        if deferred is not None:  # two threads may both make them: the same arrays, and either is kept
            self._keep(*deferred())
            self._deferred = None

    @property
    def _stored(self) -> np.ndarray:
        self._load()
        return self._stored_logits

    @property
    def _exact(self) -> tuple[int, np.ndarray] | None:
        self._load()
        return self._exact_logits

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def logits(self) -> np.ndarray:
        """The logits, (n, h, w): float32 from SAM, float16 when compacted, int8 ±1 from a boolean engine."""
        if not self._packed:
            return self._stored
        return np.where(self._unpacked(self._stored), np.int8(1), np.int8(-1))

    def _unpacked(self, packed: np.ndarray) -> np.ndarray:
        return np.unpackbits(packed, axis=-1, count=self._shape[-1]).astype(bool)

    @property
    def nbytes(self) -> int:
        return self.scores.nbytes + self._stored.nbytes + (self._exact[1].nbytes if self._exact else 0)

    @property
    def exact(self) -> tuple[int, np.ndarray] | None:
        """(index, float32 logits) of the candidate kept exact when the others are rounded (see ``compacted``)."""
        return self._exact

    @property
    def best(self) -> int:
        """Index of the highest predicted score (the first one when scores are unknown)."""
        return 0 if np.all(np.isnan(self.scores)) else int(np.nanargmax(self.scores))

    def logits_of(self, index: int) -> np.ndarray:
        """One candidate's logits as float32 (h, w), the form an engine takes back as a mask input."""
        if self._exact is not None and self._exact[0] == index:
            return self._exact[1]
        if self._packed:
            return np.where(self._unpacked(self._stored[index]), np.float32(1), np.float32(-1))
        return np.asarray(self._stored[index], np.float32)

    def mask(self, index: int) -> np.ndarray:
        """Full-resolution boolean mask of one candidate (made afresh: keep it only as long as it is needed)."""
        return upscale(self.logits_of(index), self.geometry)

    @property
    def masks(self) -> np.ndarray:
        return np.stack([self.mask(i) for i in range(len(self))])

    def preview(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """A small boolean mask at ``size`` = (width, height) for thumbnails, straight from the logits."""
        height, width = self.geometry.extent(self._shape[1:])
        return cv2.resize(self.logits_of(index)[:height, :width], size, interpolation=cv2.INTER_LINEAR) > 0

    def compacted(self, keep: int) -> "Candidates":
        """The same candidates in less memory, for undo history.

        Logits are rounded to float16, except candidate ``keep`` (the picked
        one): what refines the object and makes its mask stays exact, so a
        refinement replayed after an undo gives the same result. The others
        only matter if the user picks them later, when a rounded mask may
        differ from the exact one on the odd edge pixel.
        """
        if self._dtype != np.float32:
            return self
        logits = rounded(self._stored, np.float16)
        return Candidates(self.scores, logits, self.geometry, self.decode_seconds, self.source, (keep, self.logits_of(keep).copy()))


def rounded(logits: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Logits in a smaller float type, clipped to its range (SAM's logits can exceed float16's)."""
    info = np.finfo(dtype)
    return np.clip(logits, info.min, info.max).astype(dtype)


class Segmenter(Protocol):
    """What the page and the CLI need from an engine, SAM or the offline fallback."""

    name: str
    is_fallback: bool
    cache_id: str
    cache: EmbeddingCache

    def embed(self, image: np.ndarray, content_hash: str) -> Embedding: ...

    def stored(self, content_hash: str) -> Embedding | None:
        """The image's embedding kept beyond the memory cache (on disk), read back; None when there is none."""

    def predict(self, embedding: Embedding, prompt: Prompt) -> Candidates: ...


def cached_embedding(segmenter: Segmenter, content_hash: str) -> Embedding | None:
    """The image's embedding when it is already computed, in memory or on disk, without queueing behind
    another image's encode; one read from disk joins the memory cache."""
    key = (segmenter.cache_id, content_hash)
    embedding = segmenter.cache.get(key)
    if embedding is None:
        embedding = segmenter.stored(content_hash)
        if embedding is not None:
            segmenter.cache.put(key, embedding)
    return embedding


class EmbeddingCache(ByteLRU[tuple[str, str], "Embedding"]):
    """Embeddings by (engine id, image hash), bounded in bytes and shared by every session of the process."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, lambda embedding: embedding.nbytes)
