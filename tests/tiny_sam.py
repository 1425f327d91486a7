"""A tiny randomly initialised SAM: the real classes with a small image encoder."""

from __future__ import annotations

import torch
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import Sam


def build_tiny_sam(seed: int = 0) -> Sam:
    torch.manual_seed(seed)
    return _build_sam(
        encoder_embed_dim=32,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=[1],
    )
