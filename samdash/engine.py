"""The segmentation engine: encode an image once, then answer many prompts.

SAM splits into a heavy image encoder (seconds on a CPU) and a light prompt
decoder (tens of milliseconds). Embeddings are therefore cached per
(model, image content) in a byte-bounded LRU shared by every session of the
process, and prompts are decoded without touching shared mutable state, so
Streamlit's session threads can call one engine at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

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


class Candidates:
    """Candidate masks for one prompt, in the model's order, with its predicted quality scores.

    Full-resolution masks are produced on demand from the low-resolution
    logits, one candidate at a time: a 12 MP image pays for the one mask the
    user looks at, not for all three.
    """

    def __init__(
        self,
        scores: np.ndarray,
        logits: np.ndarray | None,
        mask_of: Callable[[int], np.ndarray],
        decode_seconds: float,
        source: str = "",
        logits_extent: tuple[int, int] | None = None,
    ) -> None:
        self.scores = np.asarray(scores, np.float32)
        # Which engine made them: only that engine can take ``logits`` back as a mask input.
        self.source = source
        # The (height, width) of ``logits`` that covers the image (SAM pads its input to a square).
        self._extent = logits_extent
        # The engine's own low-resolution output, fed back to refine an object (None when there is none).
        self.logits = None if logits is None else np.asarray(logits, np.float32)
        self.decode_seconds = decode_seconds
        self._mask_of = mask_of
        self._masks: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def fixed(cls, masks: np.ndarray, scores: np.ndarray, source: str = "") -> "Candidates":
        """Candidates whose full-resolution masks are already known (e.g. from segment-everything)."""
        return cls(scores, None, lambda index: masks[index], 0.0, source)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def best(self) -> int:
        """Index of the highest predicted score (the first one when scores are unknown)."""
        return 0 if np.all(np.isnan(self.scores)) else int(np.nanargmax(self.scores))

    def mask(self, index: int) -> np.ndarray:
        """Full-resolution boolean mask of one candidate (computed once)."""
        with self._lock:
            if index not in self._masks:
                self._masks[index] = self._mask_of(index)
            return self._masks[index]

    def preview(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """A small boolean mask at ``size`` = (width, height) for thumbnails, straight from the logits.

        Much cheaper than a full-resolution mask on a large image; only for display.
        """
        if self.logits is None:
            mask = self.mask(index).astype(np.uint8) * 255
            return cv2.resize(mask, size, interpolation=cv2.INTER_AREA) >= 128
        height, width = self._extent or self.logits.shape[1:]
        return cv2.resize(self.logits[index, :height, :width], size, interpolation=cv2.INTER_LINEAR) > 0

    @property
    def masks(self) -> np.ndarray:
        return np.stack([self.mask(i) for i in range(len(self))])


class Segmenter(Protocol):
    """What the page and the CLI need from an engine, SAM or the offline fallback."""

    name: str
    is_fallback: bool
    cache_id: str
    cache: EmbeddingCache

    def embed(self, image: np.ndarray, content_hash: str) -> Embedding: ...

    def predict(self, embedding: Embedding, prompt: Prompt) -> Candidates: ...


def cached_embedding(segmenter: Segmenter, content_hash: str) -> Embedding | None:
    """The image's embedding when it is already computed, without queueing behind another image's encode."""
    return segmenter.cache.get((segmenter.cache_id, content_hash))


class EmbeddingCache:
    """Thread-safe LRU bounded in bytes; concurrent requests for one key compute it once."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], Embedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, str], threading.Lock] = {}

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[str, str]) -> Embedding | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def get_or_compute(self, key: tuple[str, str], compute: Callable[[], Embedding]) -> Embedding:
        item = self.get(key)
        if item is not None:
            return item
        with self._lock:
            key_lock = self._in_flight.setdefault(key, threading.Lock())
        with key_lock:
            item = self.get(key)
            if item is None:
                item = compute()
                self._put(item)
        with self._lock:
            self._in_flight.pop(key, None)
        return item

    def _put(self, item: Embedding) -> None:
        with self._lock:
            if item.key in self._items:
                return
            self._items[item.key] = item
            self._bytes += item.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes


ImageEncoder = Callable[[torch.Tensor], torch.Tensor]


class SamEngine:
    """SAM's encoder and decoder behind the :class:`Segmenter` interface.

    ``encoder`` may replace the model's own image encoder with a faster
    backend that computes the same function (see ``samdash.backends``);
    ``cache_id`` tells checkpoints apart in the shared embedding cache.
    """

    is_fallback = False

    def __init__(
        self,
        model: Sam,
        name: str,
        cache: EmbeddingCache,
        encoder: ImageEncoder | None = None,
        cache_id: str | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.cache_id = cache_id or name
        self.cache = cache
        self.encoder_calls = 0
        self._encoder = encoder or model.image_encoder
        self._transform = ResizeLongestSide(model.image_encoder.img_size)
        self._device = next(model.parameters()).device
        # One encode at a time: two at once would double the peak memory and share the same cores anyway.
        self._encode_lock = threading.Lock()

    def embed(self, image: np.ndarray, content_hash: str) -> Embedding:
        key = (self.cache_id, content_hash)
        return self.cache.get_or_compute(key, lambda: self._encode(image, key))

    @torch.inference_mode()
    def _encode(self, image: np.ndarray, key: tuple[str, str]) -> Embedding:
        with self._encode_lock:
            start = time.perf_counter()
            resized = self._transform.apply_image(np.ascontiguousarray(image))
            tensor = torch.as_tensor(resized, device=self._device).permute(2, 0, 1).contiguous()[None]
            features = self._encoder(self.model.preprocess(tensor))
            self.encoder_calls += 1
            seconds = time.perf_counter() - start
        return Embedding(
            key=key,
            original_size=tuple(image.shape[:2]),
            input_size=tuple(tensor.shape[-2:]),
            features=features,
            nbytes=features.element_size() * features.nelement(),
            encode_seconds=seconds,
        )

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
        logits = low_res[0].cpu().numpy()
        return Candidates(
            scores=scores[0].cpu().numpy(),
            logits=logits,
            mask_of=lambda index: self._upscale(logits[index], embedding),
            decode_seconds=time.perf_counter() - start,
            source=self.cache_id,
            logits_extent=tuple(-(-side * logits.shape[-1] // self.model.image_encoder.img_size) for side in embedding.input_size),
        )

    @torch.inference_mode()
    def _upscale(self, logits: np.ndarray, embedding: Embedding) -> np.ndarray:
        """SAM's own post-processing of one low-res mask, so masks match ``SamPredictor`` exactly."""
        tensor = torch.from_numpy(logits)[None, None].to(self._device)
        full = self.model.postprocess_masks(tensor, embedding.input_size, embedding.original_size)
        return (full[0, 0] > self.model.mask_threshold).cpu().numpy()
