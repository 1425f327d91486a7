"""Segment everything: SAM's automatic mask generator, its results added as ordinary objects."""

from __future__ import annotations

import streamlit as st

from samdash.drawings import Workspace
from samdash.engine import Embedding, SamEngine, Segmenter
from samdash.everything import EverythingParams, segment_everything
from samdash.imaging import LoadedImage
from samdash.ui.feedback import reported


def _params() -> EverythingParams:
    defaults = EverythingParams()
    left, right = st.columns(2)
    side = left.slider(
        "Points per side", 4, 64, 16, help=f"A grid of this many points squared is tried (SAM's default is {defaults.points_per_side}); fewer is faster on a CPU."
    )
    min_area = right.number_input("Minimum region area (px)", 0, 100_000, defaults.min_mask_region_area, step=50)
    iou = left.slider("Predicted IoU threshold", 0.0, 1.0, defaults.pred_iou_thresh, 0.01)
    stability = right.slider("Stability score threshold", 0.0, 1.0, defaults.stability_score_thresh, 0.01)
    return EverythingParams(side, iou, stability, int(min_area), defaults.points_per_batch)


def everything_panel(workspace: Workspace, segmenter: Segmenter, embedding: Embedding | None, image: LoadedImage) -> None:
    """Always one expander, whatever it holds (the working area keeps its layout from run to run)."""
    with st.expander("Segment everything", icon=":material/auto_awesome_mosaic:"):
        if embedding is None:
            st.info("The image is not encoded yet.", icon=":material/hourglass_empty:")
            return
        if not isinstance(segmenter, SamEngine):
            st.info(
                f"Finding every object needs SAM; {segmenter.name} can only cut out what you point at. "
                "Download a SAM checkpoint in the sidebar to use this.",
                icon=":material/block:",
            )
            return
        params = _params()
        if not st.button("Find all objects", type="primary", icon=":material/auto_awesome:"):
            return
        bar = st.progress(0.0, text="Trying point prompts…")
        with reported("segmenting everything"):
            found = segment_everything(
                segmenter.model,
                image.rgb,
                embedding,
                params,
                progress=lambda done, total: bar.progress(done / total, text=f"Point batch {done} of {total}"),
            )
            for item in found:
                workspace.add(item.to_segment(workspace.next_id, segmenter.cache_id))
            bar.empty()
            st.rerun(scope="fragment")
