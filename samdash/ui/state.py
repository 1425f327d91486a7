"""Per-user state kept in ``st.session_state``: the current image and its objects."""

from __future__ import annotations

import streamlit as st

from samdash.drawings import Workspace
from samdash.imaging import LoadedImage

IMAGE_KEY = "image"
WORKSPACE_KEY = "workspace"


def current_image() -> LoadedImage | None:
    return st.session_state.get(IMAGE_KEY)


def set_image(image: LoadedImage) -> None:
    st.session_state[IMAGE_KEY] = image


def workspace_for(image: LoadedImage) -> Workspace:
    """The workspace of this image; a different image starts a new, empty one."""
    workspace = st.session_state.get(WORKSPACE_KEY)
    if workspace is None or workspace.image_hash != image.content_hash:
        workspace = Workspace(image.content_hash)
        st.session_state[WORKSPACE_KEY] = workspace
    return workspace
