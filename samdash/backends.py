"""Faster ways to run SAM's image encoder, all computing the same function.

On a CPU the encoder decides how long a new image takes and how much memory
the process needs: in stock SAM each global-attention block builds a
heads × 4096 × 4096 attention map (≈ 0.8 GB for vit_b). Backends, by name:

- ``eager``: the model's own ``image_encoder``, untouched.
- ``sdpa``: the same weights run through :class:`SdpaImageEncoder`, which
  hands the decomposed relative-position bias to PyTorch's fused
  ``scaled_dot_product_attention`` one band of query rows at a time, so no
  full attention map or full bias ever exists.
- ``openvino``: the same encoder exported with ``torch.export``, converted
  to OpenVINO and compiled for the CPU in fp32. Fastest on a CPU, at the
  price of a second, repacked copy of the weights plus OpenVINO's working
  memory (peak ≈ 2.0 GB for vit_b against ≈ 1.4 GB for ``sdpa``) and a
  few seconds of conversion when the model is loaded.

Every backend reads the caller's parameters and none changes the model, so
other code can keep using it as it is.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.modeling.image_encoder import (
    Attention,
    Block,
    ImageEncoderViT,
    get_rel_pos,
    window_partition,
    window_unpartition,
)

from samdash.sam_engine import ImageEncoder
from samdash.errors import SamdashError

BACKENDS = ("eager", "sdpa", "openvino")

# Bytes of attention bias built at once; bands of query rows are sized to fit. Measured on
# vit_b's global blocks: smaller bands starve the fused kernel (4 MB: 1.8× slower), larger
# ones only add memory (in OpenVINO 512 MB costs 330 MB more) for no speed.
_BIAS_BUDGET = 128 << 20


def available_backends() -> list[str]:
    """The backends this installation can run."""
    names = ["eager", "sdpa"]
    if importlib.util.find_spec("openvino") is not None:
        names.append("openvino")
    return names


def default_backend() -> str:
    """``sdpa``: within every target for speed, memory and exactness, with nothing to convert or install.

    ``openvino`` encodes vit_b ≈ 1.4× faster on a CPU but holds ≈ 0.6 GB more
    and takes ≈ 8 s to convert when the model is loaded.
    """
    return "sdpa"


def make_encoder(model: Sam, backend: str = "auto") -> ImageEncoder:
    """An image encoder for ``model`` run by ``backend`` ("auto" or "" picks :func:`default_backend`).

    It takes SAM's preprocessed (1, 3, S, S) tensor and returns the (1, 256, S/16, S/16) embedding.
    """
    name = backend.strip().lower() or "auto"
    if name == "auto":
        name = default_backend()
    if name not in BACKENDS:
        raise SamdashError(f"Unknown encoder backend {backend!r}; choose auto or one of: {', '.join(BACKENDS)}.")
    encoder = model.image_encoder
    if name == "eager":
        return encoder
    # Only SAM's own ViT has the global attention this module rewrites; other encoders run as they are.
    lean = SdpaImageEncoder(encoder) if isinstance(encoder, ImageEncoderViT) else encoder
    if name == "sdpa":
        return lean
    if name not in available_backends():
        raise SamdashError("The openvino encoder backend needs the openvino package (pip install openvino).")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise SamdashError(f"The openvino encoder backend runs on the CPU, but the model is on {device}.")
    return OpenVinoEncoder(lean, encoder.img_size)


def attention(attn: Attention, x: torch.Tensor, bias_budget: int = _BIAS_BUDGET) -> torch.Tensor:
    """What ``attn(x)`` computes for x of shape (B, H, W, dim), without its (B·heads, HW, HW) map.

    The bias of a query at (i, j) towards a key at (k, l) is rel_h[i, j, k] +
    rel_w[i, j, l]; it is spelled out as an additive mask for one band of
    query rows at a time, and the fused kernel never stores the scores.
    """
    batch, height, width, _ = x.shape
    heads = attn.num_heads
    tokens = height * width
    qkv = attn.qkv(x).reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each (B, heads, HW, head_dim)
    if not attn.use_rel_pos:
        out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    else:
        grid_q = q.reshape(batch, heads, height, width, -1)
        # Contiguous, so that each band's sum below comes out in the layout SDPA reads (no copy).
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, get_rel_pos(height, height, attn.rel_pos_h)).contiguous()
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, get_rel_pos(width, width, attn.rel_pos_w)).contiguous()
        band = max(1, min(height, bias_budget // (batch * heads * width * tokens * q.element_size())))
        bands = []
        for top in range(0, height, band):
            rows = slice(top, top + band)
            bias = (rel_h[:, :, rows, :, :, None] + rel_w[:, :, rows, :, None, :]).flatten(2, 3).flatten(3, 4)
            queries = q[:, :, top * width : (top + band) * width]
            bands.append(F.scaled_dot_product_attention(queries, k, v, attn_mask=bias, scale=attn.scale))
            del bias  # before the next band's is built, so that only one exists at a time
        out = bands[0] if len(bands) == 1 else torch.cat(bands, dim=2)
    out = out.view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
    return attn.proj(out)


def _block(block: Block, x: torch.Tensor, bias_budget: int) -> torch.Tensor:
    """``block(x)`` with :func:`attention` in place of the block's own."""
    shortcut = x
    x = block.norm1(x)
    if block.window_size > 0:
        height, width = x.shape[1], x.shape[2]
        windows, padded = window_partition(x, block.window_size)
        x = window_unpartition(attention(block.attn, windows, bias_budget), block.window_size, padded, (height, width))
    else:
        x = attention(block.attn, x, bias_budget)
    x = shortcut + x
    return x + block.mlp(block.norm2(x))


class SdpaImageEncoder(torch.nn.Module):
    """SAM's ViT image encoder with fused, banded attention, reading the original's parameters."""

    def __init__(self, encoder: ImageEncoderViT, bias_budget: int = _BIAS_BUDGET) -> None:
        super().__init__()
        self.encoder = encoder
        self.bias_budget = bias_budget

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoder = self.encoder
        x = encoder.patch_embed(x)
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        for block in encoder.blocks:
            x = _block(block, x, self.bias_budget)
        return encoder.neck(x.permute(0, 3, 1, 2))


class OpenVinoEncoder:
    """A PyTorch encoder compiled by OpenVINO for the CPU, in full fp32.

    ``torch.export`` is used for the conversion because it traces without
    running the model: OpenVINO's default TorchScript route took 60 s and
    3 GB for vit_b, this one ≈ 8 s and ≈ 0.1 GB. fp32 is pinned because
    OpenVINO otherwise picks bf16 where the CPU reports it, which drifts from
    PyTorch. Calls are serialised: one request owns the compiled model's
    working memory, and two encodes at once would only share the same cores.
    """

    def __init__(self, module: torch.nn.Module, input_size: int) -> None:
        import openvino as ov

        example = (torch.zeros(1, 3, input_size, input_size),)
        with torch.no_grad():
            converted = ov.convert_model(torch.export.export(module, example))
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        self._compiled = ov.Core().compile_model(converted, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        with self._lock:
            self._request.infer({0: array})
            out = self._request.get_output_tensor(0).data.copy()
        return torch.from_numpy(out)
