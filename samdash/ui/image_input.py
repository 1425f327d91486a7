"""Adding images: uploads (several at once) go into the current project; a bundled sample to try things on.

A file that cannot be used is named in a message; the other files are still
added, and the current image and its objects are kept.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from samdash.config import Settings
from samdash.errors import SamdashError
from samdash.imaging import SUPPORTED_EXTENSIONS, LoadedImage, load_image, load_image_file
from samdash.store import ImageInfo, Store
from samdash.ui.feedback import explain
from samdash.ui.projects import add_to_project, open_image
from samdash.ui.state import current_image, session, show

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
SAMPLES = {"Cat": "cat.jpg", "Coffee cup": "coffee.jpg", "Astronaut": "astronaut.jpg"}


@st.cache_data(show_spinner=False, max_entries=4)
def _sample(filename: str, max_pixels: int) -> LoadedImage:
    return load_image_file(SAMPLES_DIR / filename, max_pixels=max_pixels)


def _uploader_key() -> str:
    # A new key empties the uploader once its files are in the project: they are not held twice.
    return f"upload-{st.session_state.setdefault('upload_round', 0)}"


def _on_upload(store: Store | None) -> None:
    uploads = st.session_state.get(_uploader_key()) or []
    if not uploads:  # a new, empty uploader reports itself once: nothing to add, and it must stay the same one
        return
    settings: Settings = st.session_state["settings"]
    errors = []
    # Shown once all are in: the first new image, else the first one (all were in the project already), with the
    # pixels decoded here, so that a 12 MP image is not decoded twice.
    first_new: tuple[ImageInfo, LoadedImage] | None = None
    first: tuple[ImageInfo, LoadedImage] | None = None
    for upload in uploads:
        try:
            data = upload.getvalue()
            image = load_image(data, name=upload.name, max_pixels=settings.max_image_pixels)
            if store is None:  # no project store: the upload is shown, not saved
                show(image)
                continue
            info, added = add_to_project(store, image, data)
        except (SamdashError, OSError) as exc:
            errors.append(explain(exc, f"adding {upload.name}"))
            continue
        if added and first_new is None:
            first_new = info, image
        if first is None:
            first = info, image
    if store is not None and first is not None:
        try:
            open_image(store, *(first_new or first))
        except (SamdashError, OSError) as exc:
            errors.append(explain(exc, "opening the image"))
    st.session_state["upload_errors"] = errors
    st.session_state["upload_round"] += 1


def _on_sample(store: Store | None) -> None:
    name = st.session_state.get("sample")
    if not name:
        return
    settings: Settings = st.session_state["settings"]
    path = SAMPLES_DIR / SAMPLES[name]
    image = _sample(SAMPLES[name], settings.max_image_pixels)
    st.session_state.pop("upload_errors", None)
    if store is not None and session().project_id is not None:
        try:
            open_image(store, add_to_project(store, image, path.read_bytes())[0])
            return
        except (SamdashError, OSError) as exc:
            st.session_state["upload_errors"] = [explain(exc, f"adding the sample {name}")]
    show(image, file=path)  # saved with the first object made on it


def image_picker(settings: Settings, store: Store | None) -> None:
    """The upload and sample pickers; with no image yet, the first sample is shown."""
    upload_col, sample_col = st.columns([3, 1], vertical_alignment="bottom")
    with upload_col:
        st.file_uploader(
            "Add images",
            type=list(SUPPORTED_EXTENSIONS),
            accept_multiple_files=True,
            key=_uploader_key(),
            on_change=_on_upload,
            args=(store,),
            help="PNG, JPEG, WebP, TIFF, BMP or GIF; several at once. They are added to the project, saved as you work.",
        )
    with sample_col:
        st.selectbox(
            "…or a sample", list(SAMPLES), index=None, placeholder="Pick a sample", key="sample", on_change=_on_sample, args=(store,)
        )
    # In a container that is always there: the working area below keeps its place on the page.
    notice = st.container(key="upload-error")
    if errors := st.session_state.get("upload_errors"):
        kept = " The current image and its objects are kept." if current_image() is not None else ""
        notice.error("\n\n".join(errors) + kept, icon="⚠️")
    if current_image() is None:
        filename = next(iter(SAMPLES.values()))
        show(_sample(filename, settings.max_image_pixels), file=SAMPLES_DIR / filename)
