"""Page-level text: the title and, when SAM is unavailable, what to do about it."""

from __future__ import annotations

import streamlit as st

from samdash.config import Settings
from samdash.ui.sidebar import ModelState


def header() -> None:
    st.title("samdash")
    st.caption(
        "Draw a box, a freehand region, or include/exclude points on the image; "
        "Segment Anything outlines the object. Everything runs on this machine."
    )


def fallback_banner(model: ModelState, settings: Settings) -> None:
    """In a container that is there with or without the banner: the working area below keeps its place on the page
    (see samdash/ui/workspace.py for why that matters)."""
    slot = st.container(key="fallback")
    if model.fallback_reason is None:
        return
    slot.warning(
        f"**SAM is not available** ({model.fallback_reason}), so segmentation uses "
        f"**{model.segmenter.name}**: fine for clear-cut objects, much weaker than SAM. "
        "To use SAM, press **Download** in the sidebar, or put a checkpoint file into "
        f"`{settings.model_dir}` (or point `SAMDASH_CHECKPOINT` at one) and reload.",
        icon=":material/cloud_off:",
    )
