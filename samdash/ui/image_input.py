"""Choosing the image: an upload or a bundled sample. A failed upload keeps the current image and its objects."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from samdash.config import Settings
from samdash.errors import ImageError
from samdash.imaging import SUPPORTED_EXTENSIONS, LoadedImage, load_image, load_image_file
from samdash.ui.state import current_image, set_image

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
SAMPLES = {"Cat": "cat.jpg", "Coffee cup": "coffee.jpg", "Astronaut": "astronaut.jpg"}


@st.cache_data(show_spinner=False, max_entries=4)
def _sample(filename: str, max_pixels: int) -> LoadedImage:
    return load_image_file(SAMPLES_DIR / filename, max_pixels=max_pixels)


def _on_upload() -> None:
    upload = st.session_state.get("upload")
    if upload is None:
        return
    settings: Settings = st.session_state["settings"]
    try:
        set_image(load_image(upload.getvalue(), name=upload.name, max_pixels=settings.max_image_pixels))
        st.session_state.pop("upload_error", None)
    except ImageError as exc:
        st.session_state["upload_error"] = str(exc)


def _on_sample() -> None:
    name = st.session_state.get("sample")
    if name:
        settings: Settings = st.session_state["settings"]
        set_image(_sample(SAMPLES[name], settings.max_image_pixels))
        st.session_state.pop("upload_error", None)


def image_picker(settings: Settings) -> None:
    """The upload and sample pickers; the chosen image goes to the session (the first sample until one is chosen)."""
    st.session_state["settings"] = settings
    upload_col, sample_col = st.columns([3, 1], vertical_alignment="bottom")
    with upload_col:
        st.file_uploader(
            "Upload an image",
            type=list(SUPPORTED_EXTENSIONS),
            key="upload",
            on_change=_on_upload,
            help="PNG, JPEG, WebP, TIFF, BMP or GIF. A new image starts a new set of objects.",
        )
    with sample_col:
        st.selectbox("…or a sample", list(SAMPLES), index=None, placeholder="Pick a sample", key="sample", on_change=_on_sample)
    # In a container that is always there: the working area below keeps its place on the page.
    notice = st.container(key="upload-error")
    if error := st.session_state.get("upload_error"):
        kept = " The current image and its objects are kept." if current_image() is not None else ""
        notice.error(f"{error}{kept}", icon="⚠️")
    if current_image() is None:
        set_image(_sample(next(iter(SAMPLES.values())), settings.max_image_pixels))
