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


class _PointsThrough(torch.nn.Module):
    """A prompt encoder that hands the decoder the points themselves (in the model's 1024 px frame)."""

    def forward(self, points, boxes, masks):
        coords, _ = points
        return coords.float(), torch.zeros(len(coords), 1)

    def get_dense_pe(self) -> torch.Tensor:
        return torch.zeros(1)


class _Discs(torch.nn.Module):
    """Three discs around each point, of sizes and edge sharpness that vary from point to point, each with a
    small island beside it: structured masks, so segment everything keeps many and its filters all matter."""

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
        xy = sparse_prompt_embeddings[:, 0, :] / 4  # 1024 px frame → 256 px low-res frame
        noise = torch.frac(torch.abs(torch.sin(xy[:, 0] * 12.9898 + xy[:, 1] * 78.233)) * 43758.5453)  # (B,) in [0, 1)
        low = torch.arange(256, dtype=torch.float32) + 0.5
        dx = low[None, None, :] - xy[:, 0, None, None]
        dy = low[None, :, None] - xy[:, 1, None, None]
        distance = torch.sqrt(dx**2 + dy**2)[:, None]  # (B, 1, 256, 256)
        radius = (6 + 30 * noise)[:, None, None, None] * torch.tensor([1.0, 1.7, 2.6])[None, :, None, None]
        sharpness = torch.tensor([0.3, 2.0, 9.0])[None, :, None, None]
        logits = (radius - distance) * sharpness
        island = torch.sqrt((dx[:, None] - radius - 5) ** 2 + dy[:, None] ** 2)
        logits = torch.maximum(logits, (1.5 - island) * 8)
        scores = 0.5 + 0.45 * torch.sin(noise[:, None] * 20 + torch.tensor([0.0, 2.0, 4.0])[None])
        return logits, scores


def with_disc_decoder(sam: Sam) -> Sam:
    """The same image encoder, with a prompt decoder that draws discs instead of SAM's random masks."""
    return Sam(sam.image_encoder, _PointsThrough(), _Discs()).eval()
