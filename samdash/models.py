"""Segment Anything models: reading checkpoint files safely and building a model on a device.

Files are read with ``weights_only=True`` and checked against the model's
own parameter names and shapes before loading, so a wrong, truncated or
foreign file gives a sentence naming the file instead of a traceback. This is
the one module (with the engine and the backends) that needs PyTorch, which
costs seconds and hundreds of MB to import: the page imports it only to build
a model.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import Sam

from samdash.checkpoints import DEFAULT_MODEL, checkpoint_spec, locate_checkpoint, verify_checkpoint
from samdash.config import Settings
from samdash.errors import CheckpointError, SamdashError

PATCH_EMBED = "image_encoder.patch_embed.proj.weight"
# The first convolution of MobileSAM's TinyViT encoder (SAM's ViTs have none by this name).
TINY_VIT_STEM = "image_encoder.patch_embed.seq.0.c.weight"
MOBILE_SAM_PACKAGES = "mobilesam-mirror==1.0.0 timm==1.0.31"
_SAM_PREFIXES = ("image_encoder.", "mask_decoder.")
# Where training scripts tuck the weights inside a bigger dictionary.
_WRAPPER_KEYS = ("model", "state_dict")


@dataclass(frozen=True)
class Architecture:
    """How to build one model type, and how to recognise its weights.

    ``signature`` names a tensor and the size of its first dimension that
    only this architecture has (for SAM's ViTs: the image encoder's width).
    """

    build: Callable[[], torch.nn.Module]
    signature: tuple[str, int]


def build_mobile_sam() -> Sam:
    """MobileSAM: the official TinyViT image encoder with SAM's prompt encoder and mask decoder.

    The ``mobile_sam`` package (an optional dependency) builds the model. Its
    prompt encoder and mask decoder are SAM's own code, and its parts go into
    segment_anything's ``Sam`` (pre- and post-processing), so the engine,
    backends and exports treat it like any SAM model.
    """
    try:
        with warnings.catch_warnings():
            # mobile_sam imports timm's deprecated module paths and re-registers TinyViT names: noise, not faults.
            warnings.simplefilter("ignore")
            from mobile_sam import build_sam_vit_t
    except ImportError as exc:
        raise CheckpointError(
            f"MobileSAM needs the optional packages {MOBILE_SAM_PACKAGES} "
            f"(pip install {MOBILE_SAM_PACKAGES}); importing them failed: {exc}."
        ) from None
    mobile = build_sam_vit_t()
    return Sam(mobile.image_encoder, mobile.prompt_encoder, mobile.mask_decoder)


# Every model type the app can build, each with the tensor that tells its weights apart.
ARCHITECTURES: dict[str, Architecture] = {
    "vit_b": Architecture(sam_model_registry["vit_b"], (PATCH_EMBED, 768)),
    "vit_l": Architecture(sam_model_registry["vit_l"], (PATCH_EMBED, 1024)),
    "vit_h": Architecture(sam_model_registry["vit_h"], (PATCH_EMBED, 1280)),
    "vit_t": Architecture(build_mobile_sam, (TINY_VIT_STEM, 32)),
}


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    model_type: str
    checkpoint: Path

    @property
    def name(self) -> str:
        """How the page and the CLI call the model (MobileSAM's type name, vit_t, says little)."""
        return "MobileSAM" if self.model_type == "vit_t" else f"SAM {self.model_type}"


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a SAM state dict from a file without running pickled code.

    Accepts a bare state dict, one wrapped under ``"model"`` or
    ``"state_dict"``, and names prefixed with ``module.`` (saved from a
    ``DataParallel`` wrapper), as fine-tuning scripts commonly write them.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged or foreign file
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if refused:
            raise CheckpointError(
                f"Checkpoint {path} holds Python objects besides tensors ({refused[1]}), which are not loaded "
                "for safety; save just the weights with torch.save(model.state_dict(), path)."
            ) from None
        raise CheckpointError(
            f"Checkpoint {path} is not a readable PyTorch file (truncated, corrupt, or another format)."
        ) from None
    state = _unwrap(loaded)
    if state is None:
        raise CheckpointError(
            f"Checkpoint {path} is a PyTorch file but not a Segment Anything checkpoint: "
            "expected image_encoder.* and mask_decoder.* weights."
        )
    return state


def _unwrap(loaded: object) -> dict[str, torch.Tensor] | None:
    """The SAM weights inside what ``torch.load`` returned, or None when there are none."""
    if not isinstance(loaded, Mapping):
        return None
    for key in _WRAPPER_KEYS:
        if isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    state = {
        str(name).removeprefix("module."): value for name, value in loaded.items() if isinstance(value, torch.Tensor)
    }
    if all(any(name.startswith(prefix) for name in state) for prefix in _SAM_PREFIXES):
        return state
    return None


def _match_architecture(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    for model_type, arch in ARCHITECTURES.items():
        name, width = arch.signature
        tensor = state_dict.get(name)
        if tensor is not None and tensor.ndim > 0 and tensor.shape[0] == width:
            return model_type
    return None


_BLOCK = re.compile(r"image_encoder\.blocks\.(\d+)\.attn\.rel_pos_h")
# SAM's encoder sees a 64×64 grid of patches; a block with global attention has 2·64 − 1 relative positions.
_GLOBAL_REL_POS = 2 * 64 - 1


def custom_vit(state_dict: Mapping[str, torch.Tensor]) -> Architecture | None:
    """A SAM ViT of any width and depth (e.g. a distilled or fine-tuned one), read off its tensors.

    The encoder's width, depth, head count and global-attention blocks all show
    in the shapes of its patch embedding and relative-position tables.
    """
    patch = state_dict.get(PATCH_EMBED)
    rel_pos = {int(m[1]): t for name, t in state_dict.items() if (m := _BLOCK.fullmatch(name))}
    if patch is None or patch.ndim != 4 or not rel_pos or sorted(rel_pos) != list(range(len(rel_pos))):
        return None
    width, head_dim = patch.shape[0], rel_pos[0].shape[1]
    if head_dim == 0 or width % head_dim:
        return None
    global_blocks = [i for i, t in sorted(rel_pos.items()) if t.shape[0] == _GLOBAL_REL_POS]

    def build() -> torch.nn.Module:
        return _build_sam(
            encoder_embed_dim=width,
            encoder_depth=len(rel_pos),
            encoder_num_heads=width // head_dim,
            encoder_global_attn_indexes=global_blocks,
        )

    return Architecture(build, (PATCH_EMBED, width))


def infer_model_type(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which architecture the weights belong to, judged from tensor shapes."""
    model_type = _match_architecture(state_dict)
    if model_type is None:
        tensor = state_dict.get(PATCH_EMBED)
        found = f"an image encoder {tensor.shape[0]} wide" if tensor is not None and tensor.ndim else "no known encoder"
        raise CheckpointError(
            f"The weights have {found}, which matches none of the known model types: {', '.join(ARCHITECTURES)}."
        )
    return model_type


def build_model(
    model_type: str,
    state_dict: Mapping[str, torch.Tensor] | None,
    device: torch.device | str,
    *,
    source: Path | None = None,
) -> torch.nn.Module:
    """Build ``model_type``, load the weights strictly (random weights when None), and move it to ``device``.

    ``source`` only names the file in error messages.
    """
    try:
        arch = ARCHITECTURES[model_type]
    except KeyError:
        raise CheckpointError(f"Unknown model type {model_type!r}; known types: {', '.join(ARCHITECTURES)}.") from None
    what = f"Checkpoint {source}" if source is not None else "The weights"
    if state_dict is not None:
        actual = _match_architecture(state_dict)
        if actual is not None and actual != model_type:
            raise CheckpointError(f"{what} is a {actual} checkpoint, not {model_type}.")
    model = arch.build()
    if state_dict is None:
        return model.eval().to(device)
    return _load_into(model, state_dict, model_type, device, source)


def _load_into(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    model_type: str,
    device: torch.device | str,
    source: Path | None,
) -> torch.nn.Module:
    """Load weights strictly, with a short account of any mismatch instead of torch's long one."""
    what = f"Checkpoint {source}" if source is not None else "The weights"
    problem = _mismatch(model.state_dict(), state_dict)
    if problem:
        raise CheckpointError(f"{what} does not fit the {model_type} architecture: {problem}.")
    model.load_state_dict(state_dict, strict=True)
    return model.eval().to(device)


def _mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """A short account of how ``given`` differs from the model's own names and shapes ('' when it fits)."""
    missing = [name for name in expected if name not in given]
    unexpected = [name for name in given if name not in expected]
    reshaped = [
        f"{name} is {tuple(given[name].shape)}, expected {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in given and given[name].shape != tensor.shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights (e.g. {unexpected[0]})")
    if reshaped:
        parts.append(f"{len(reshaped)} with other shapes (e.g. {reshaped[0]})")
    return "; ".join(parts)


def load_model(model_type: str | None, settings: Settings, device: torch.device | str) -> LoadedModel:
    """Locate, read and build the model the settings ask for.

    Without a model type (argument or ``settings.model_type``) it is read off
    the weights, which lets a fine-tuned checkpoint from any path load with
    no catalogue entry and no checksum. A file found in ``model_dir`` under
    its catalogue name is verified first (:func:`verify_checkpoint`).
    """
    requested = model_type or settings.model_type
    path = locate_checkpoint(requested or DEFAULT_MODEL, settings)
    if path is None:
        spec = checkpoint_spec(requested or DEFAULT_MODEL)
        raise CheckpointError(
            f"Checkpoint {spec.filename} is not in {settings.model_dir}; download it first or set SAMDASH_CHECKPOINT."
        )
    if settings.checkpoint is None:  # the catalogue's own file; an explicit path may be any fine-tuned one
        verify_checkpoint(path, checkpoint_spec(requested or DEFAULT_MODEL))
    state = load_state_dict(path)
    if requested is None and _match_architecture(state) is None and (arch := custom_vit(state)) is not None:
        return LoadedModel(_load_into(arch.build(), state, "custom ViT", device, path), _custom_name(state), path)
    if requested is None:
        try:
            requested = infer_model_type(state)
        except CheckpointError as exc:
            raise CheckpointError(f"Checkpoint {path}: {exc}") from None
    model = build_model(requested, state, device, source=path)
    return LoadedModel(model, requested, path)


def _custom_name(state_dict: Mapping[str, torch.Tensor]) -> str:
    depth = sum(1 for name in state_dict if _BLOCK.fullmatch(name))
    return f"custom ViT ({state_dict[PATCH_EMBED].shape[0]} wide, {depth} blocks)"


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device must be usable."""
    choice = preference.strip().lower() or "auto"
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError):
        raise SamdashError(f"Unknown device {preference!r}; use auto, cpu, cuda or mps.") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SamdashError(f"Device {preference!r} was asked for, but PyTorch sees no CUDA GPU; use auto or cpu.")
        if device.index is not None and device.index >= count:
            raise SamdashError(f"Device {preference!r} was asked for, but only {count} CUDA GPU(s) exist.")
    elif device.type == "mps":
        if not _mps_available():
            raise SamdashError(f"Device {preference!r} was asked for, but Apple MPS is not available; use auto or cpu.")
    elif device.type != "cpu":
        raise SamdashError(f"Unknown device {preference!r}; use auto, cpu, cuda or mps.")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())
