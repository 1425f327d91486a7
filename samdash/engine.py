"""The segmentation engine: encode an image once, then answer many prompts.

SAM splits into a heavy image encoder (seconds on a CPU) and a light prompt
decoder (tens of milliseconds). Embeddings are therefore cached per
(model, image content) in a byte-bounded LRU shared by every session of the
process, and SAM's on disk too (``samdash.embedding_disk``), so a restarted
process does not encode again. Prompts are decoded without touching shared
mutable state, so Streamlit's session threads can call one engine at once.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from samdash.lru import ByteLRU
from samdash.prompts import Prompt

if TYPE_CHECKING:
    from samdash.embedding_disk import DiskEmbeddings


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


@torch.inference_mode()
def upscale(logits: np.ndarray, geometry: MaskGeometry) -> np.ndarray:
    """A full-size boolean mask from one low-resolution logit map.

    For SAM this is its own post-processing (``Sam.postprocess_masks`` and
    its threshold of 0), so masks match ``SamPredictor`` exactly.
    """
    height, width = geometry.original_size
    if geometry.model_side is None:
        # In or out, interpolated: a smooth outline, with an 8-bit full-size copy instead of a 32-bit one.
        inside = np.where(np.asarray(logits) > 0, np.uint8(255), np.uint8(0))
        return cv2.resize(inside, (width, height), interpolation=cv2.INTER_LINEAR) >= 128
    logits = np.asarray(logits, np.float32)
    side = geometry.model_side
    tensor = F.interpolate(torch.from_numpy(logits)[None, None], (side, side), mode="bilinear", align_corners=False)
    tensor = tensor[..., : geometry.input_size[0], : geometry.input_size[1]]
    full = F.interpolate(tensor, (height, width), mode="bilinear", align_corners=False)
    return (full[0, 0] > 0).numpy()


_tokens = itertools.count()


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
        logits: np.ndarray,
        geometry: MaskGeometry,
        decode_seconds: float = 0.0,
        source: str = "",
        exact: tuple[int, np.ndarray] | None = None,
    ) -> None:
        self.scores = np.asarray(scores, np.float32)
        logits = np.asarray(logits)
        self._shape: tuple[int, ...] = logits.shape
        self._packed = logits.dtype == bool
        # The engine's own low-resolution output, (n, h, w), in its own dtype; booleans packed 8 to a byte.
        self._stored = np.packbits(logits, axis=-1) if self._packed else logits
        self.geometry = geometry
        self.decode_seconds = decode_seconds
        # Which engine made them: only that engine can take ``logits`` back as a mask input.
        self.source = source
        # (index, float32 logits) of one candidate kept exactly when ``logits`` are rounded (see ``compacted``).
        self._exact = exact
        # Names this set in caches of things made from it (thumbnails): unlike ``id``, never reused.
        self.token = next(_tokens)

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
        if self._stored.dtype != np.float32:
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


ImageEncoder = Callable[[torch.Tensor], torch.Tensor]


class SamEngine:
    """SAM's encoder and decoder behind the :class:`Segmenter` interface.

    ``encoder`` may replace the model's own image encoder with a faster
    backend that computes the same function (see ``samdash.backends``);
    ``cache_id`` tells checkpoints apart in the shared embedding cache and
    on ``disk``, where every embedding encoded is kept and looked for first.
    """

    is_fallback = False

    def __init__(
        self,
        model: Sam,
        name: str,
        cache: EmbeddingCache,
        encoder: ImageEncoder | None = None,
        cache_id: str | None = None,
        disk: DiskEmbeddings | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.cache_id = cache_id or name
        self.cache = cache
        self.disk = disk
        self.encoder_calls = 0
        self._encoder = encoder or model.image_encoder
        self._transform = ResizeLongestSide(model.image_encoder.img_size)
        self._device = next(model.parameters()).device
        # One encode at a time: two at once would double the peak memory and share the same cores anyway.
        self._encode_lock = threading.Lock()

    def embed(self, image: np.ndarray, content_hash: str) -> Embedding:
        key = (self.cache_id, content_hash)
        return self.cache.get_or_compute(key, lambda: self.stored(content_hash) or self._encode(image, key))

    def stored(self, content_hash: str) -> Embedding | None:
        if self.disk is None:
            return None
        embedding = self.disk.load((self.cache_id, content_hash))
        if embedding is None:
            return None
        return replace(embedding, features=torch.from_numpy(embedding.features).to(self._device))

    @torch.inference_mode()
    def _encode(self, image: np.ndarray, key: tuple[str, str]) -> Embedding:
        with self._encode_lock:
            start = time.perf_counter()
            resized = self._transform.apply_image(np.ascontiguousarray(image))
            tensor = torch.as_tensor(resized, device=self._device).permute(2, 0, 1).contiguous()[None]
            features = self._encoder(self.model.preprocess(tensor))
            self.encoder_calls += 1
            seconds = time.perf_counter() - start
        embedding = Embedding(
            key=key,
            original_size=tuple(image.shape[:2]),
            input_size=tuple(tensor.shape[-2:]),
            features=features,
            nbytes=features.element_size() * features.nelement(),
            encode_seconds=seconds,
        )
        if self.disk is not None:
            self.disk.save(replace(embedding, features=features.cpu().numpy()))
        return embedding

    @torch.inference_mode()
    def predict(self, embedding: Embedding, prompt: Prompt, multimask: bool = True) -> Candidates:
        start = time.perf_counter()
        points = None
        if len(prompt.points):
            coords = self._transform.apply_coords(prompt.points, embedding.original_size)
            points = (
                torch.as_tensor(coords, dtype=torch.float, device=self._device)[None],
                torch.as_tensor(prompt.labels, dtype=torch.int, device=self._device)[None],
            )
        boxes = None
        if prompt.box is not None:
            box = self._transform.apply_boxes(np.asarray(prompt.box, np.float64), embedding.original_size)
            boxes = torch.as_tensor(box, dtype=torch.float, device=self._device)[None]
        masks = None
        if prompt.mask_input is not None:
            masks = torch.as_tensor(prompt.mask_input, dtype=torch.float, device=self._device).reshape(1, 1, 256, 256)
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        low_res, scores = self.model.mask_decoder(
            image_embeddings=embedding.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        return Candidates(
            scores=scores[0].cpu().numpy(),
            logits=low_res[0].cpu().numpy(),
            geometry=self.geometry(embedding),
            decode_seconds=time.perf_counter() - start,
            source=self.cache_id,
        )

    def geometry(self, embedding: Embedding) -> MaskGeometry:
        return MaskGeometry(embedding.original_size, embedding.input_size, self.model.image_encoder.img_size)
