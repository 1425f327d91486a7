"""The sidebar: which model, on which device, its checkpoint, and how results are drawn."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

import streamlit as st

from samdash.config import Settings
from samdash.download import progress_text
from samdash.engine import Segmenter
from samdash.errors import SamdashError
from samdash.checkpoints import CATALOGUE, DEFAULT_MODEL, checkpoint_state, download_checkpoint, locate_checkpoint
from samdash.render import Color, hex_to_rgb
from samdash.ui.feedback import explain
from samdash.ui.resources import fallback_segmenter, sam_segmenter

CUSTOM = "custom"
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DisplayOptions:
    thickness: int = 2
    fill_opacity: float = 0.0
    only_active: bool = False
    single_color: Color | None = None


@dataclass(frozen=True)
class ModelState:
    """The model the page segments with: a SAM engine, possibly still loading, or the fallback."""

    engine: Future[Segmenter]
    # What is loading, for the status line.
    name: str
    # Why SAM is not in use, when the fallback is.
    fallback_reason: str | None = None

    @property
    def segmenter(self) -> Segmenter | None:
        """The engine, or None until it has loaded (a load that failed shows in the sidebar on the next full run).

        Read at each run, not once: a drawing reruns the working area with the state of the last full run.
        """
        engine = self.engine
        return engine.result() if engine.done() and engine.exception() is None else None


def _fallback(settings: Settings, reason: str) -> ModelState:
    ready: Future[Segmenter] = Future()
    ready.set_result(fallback_segmenter(settings.embedding_cache_mb))
    return ModelState(ready, ready.result().name, reason)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.0f} MB"


def _model_label(key: str) -> str:
    if key == CUSTOM:
        return "Custom checkpoint (path)…"
    spec = CATALOGUE[key]
    return f"{spec.description} · {_size(spec.size_bytes)}"


def _download(model_type: str, settings: Settings) -> None:
    spec = CATALOGUE[model_type]
    bar = st.progress(0.0, text=f"Starting download of {spec.filename}…")
    start = time.monotonic()

    def progress(done: int, total: int | None) -> None:
        total = total or spec.size_bytes
        bar.progress(min(done / total, 1.0), text=progress_text(done, total, start))

    try:
        download_checkpoint(model_type, settings, progress=progress)
    except SamdashError as exc:
        bar.empty()
        st.error(explain(exc, "downloading the checkpoint"), icon="⚠️")
        return
    bar.empty()
    st.rerun()


def model_panel(settings: Settings) -> ModelState:
    st.header("Model")
    keys = [*CATALOGUE, CUSTOM]
    preferred = CUSTOM if settings.checkpoint else (settings.model_type or DEFAULT_MODEL)
    choice = st.selectbox(
        "Segment Anything model",
        keys,
        index=keys.index(preferred) if preferred in keys else 0,
        format_func=_model_label,
        key="model_choice",
        help=(
            "SAM ViT-B, ViT-L and ViT-H are Meta's models: larger ones give finer masks and encode more slowly. "
            "MobileSAM encodes an image about 5× faster than ViT-B on a CPU, with somewhat coarser masks."
        ),
    )
    device = st.selectbox("Device", DEVICES, index=DEVICES.index(settings.device) if settings.device in DEVICES else 0)
    settings = replace(settings, device=device)
    if choice == CUSTOM:
        path = st.text_input("Checkpoint file", value=str(settings.checkpoint or ""), placeholder="/path/to/sam_finetuned.pth")
        types = ["detect from the file", *CATALOGUE]
        picked = st.selectbox("Architecture", types, index=types.index(settings.model_type) if settings.model_type in types else 0)
        model_type = None if picked == types[0] else picked
        if not path.strip():
            return _fallback(settings, "no custom checkpoint path is set")
        settings = replace(settings, checkpoint=Path(path.strip()).expanduser(), model_type=model_type)
    else:
        model_type = choice
        settings = replace(settings, checkpoint=None)
    try:
        checkpoint = locate_checkpoint(model_type or DEFAULT_MODEL, settings)
    except SamdashError as exc:
        st.error(explain(exc, "looking for the checkpoint"), icon="⚠️")
        return _fallback(settings, str(exc))
    if checkpoint is None:
        state = checkpoint_state(model_type, settings)
        spec = CATALOGUE[model_type]
        st.markdown(f"Checkpoint **{'partly downloaded' if state == 'partial' else 'missing'}**: `{spec.filename}`")
        st.caption(f"Looked in `{settings.model_dir}`")
        label = "Resume download" if state == "partial" else f"Download ({_size(spec.size_bytes)})"
        if st.button(label, type="primary", icon=":material/download:"):
            _download(model_type, settings)
        return _fallback(settings, f"the {spec.filename} checkpoint is not downloaded")
    st.markdown(f"Checkpoint **present**: `{checkpoint.name}`")
    try:
        engine = sam_segmenter(model_type, checkpoint, settings)
        failure = engine.exception() if engine.done() else None
    except Exception as exc:  # noqa: BLE001 - any load failure falls back with a message
        failure = exc
    if failure is not None:
        st.error(explain(failure, f"loading {checkpoint.name}"), icon="⚠️")
        return _fallback(settings, f"{checkpoint.name} could not be loaded")
    _encoder_note(engine.result() if engine.done() else None, settings)
    return ModelState(engine, CATALOGUE[model_type].description if model_type in CATALOGUE else checkpoint.name)


def _encoder_note(engine: Segmenter | None, settings: Settings) -> None:
    """Where images are encoded, when not here; and why not there, when the remote encoder failed."""
    if settings.encoder != "ray":
        return
    remote = getattr(engine, "remote", None)
    problem = getattr(engine, "remote_problem", None)
    if remote is not None:
        st.caption(f"Images are encoded on {remote.where}; prompts are decoded here.")
    if problem:
        st.warning(problem, icon=":material/cloud_off:")


def display_panel() -> DisplayOptions:
    st.header("Display")
    thickness = st.slider("Outline thickness", 1, 8, 2)
    fill = st.slider("Fill opacity", 0.0, 1.0, 0.0, 0.05, help="Tint each object's area as well as outlining it.")
    only_active = st.toggle("Show only the active object")
    per_object = st.toggle("Each object in its own colour", value=True)
    single = None if per_object else hex_to_rgb(st.color_picker("Outline colour", "#ff2d55"))
    return DisplayOptions(thickness, fill, only_active, single)
