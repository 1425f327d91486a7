"""SAM behind the engine's interface: its image encoder, once per image, and its prompt decoder, per prompt."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from samdash.embedding_disk import DiskEmbeddings
from samdash.engine import Candidates, Embedding, EmbeddingCache, MaskGeometry
from samdash.errors import EncoderError
from samdash.prompts import Prompt

ImageEncoder = Callable[[torch.Tensor], torch.Tensor]


class RemoteEncoder(Protocol):
    """An image encoder elsewhere (``samdash.ray_encoder``): the image resized by SAM's transform in, features out."""

    where: str

    def encode(self, resized: np.ndarray) -> tuple[np.ndarray, float]: ...


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
        remote: RemoteEncoder | None = None,
        fallback_local: bool = False,
    ) -> None:
        self.model = model
        self.name = name
        self.cache_id = cache_id or name
        self.cache = cache
        self.disk = disk
        self.encoder_calls = 0
        self._encoder = encoder or model.image_encoder
        # Images go to ``remote`` when given; when it fails, they are encoded here only if ``fallback_local``.
        self.remote = remote
        self.fallback_local = fallback_local
        self.remote_problem: str | None = None  # the last remote failure that a local encode stood in for
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
            features = self._remote_features(resized) if self.remote is not None else None
            if features is None:
                tensor = torch.as_tensor(resized, device=self._device).permute(2, 0, 1).contiguous()[None]
                features = self._encoder(self.model.preprocess(tensor))
                self.encoder_calls += 1
            seconds = time.perf_counter() - start
        embedding = Embedding(
            key=key,
            original_size=tuple(image.shape[:2]),
            input_size=tuple(resized.shape[:2]),
            features=features,
            nbytes=features.element_size() * features.nelement(),
            encode_seconds=seconds,
        )
        if self.disk is not None:
            self.disk.save(replace(embedding, features=features.cpu().numpy()))
        return embedding

    def _remote_features(self, resized: np.ndarray) -> torch.Tensor | None:
        """The remote encoder's features; None when it failed and a local encode stands in."""
        try:
            features, _ = self.remote.encode(resized)
        except EncoderError as exc:
            if not self.fallback_local:
                raise
            self.remote_problem = f"{exc}; images are encoded here meanwhile"
            return None
        self.remote_problem = None
        return torch.from_numpy(np.array(features)).to(self._device)  # Ray's arrays are read-only views

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
