"""Segment everything: SAM's automatic mask generator, its results added as ordinary objects.

The run goes on beside the script thread and a small fragment polls it: a
click inside a fragment does not interrupt a script that is busy, so only
this way can Cancel stop a run. Objects are added in one go when the run
ends; a cancelled run adds none.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

import streamlit as st

from samdash.drawings import Workspace
from samdash.engine import Embedding, Segmenter
from samdash.imaging import LoadedImage
from samdash.ui.feedback import described
from samdash.ui.state import EverythingRun, session

if TYPE_CHECKING:  # the generator needs PyTorch, imported only once a SAM model is in use
    from samdash.everything import EverythingParams

NOTE_KEY = "everything_note"
# One run at a time per process: each holds a batch of candidates in memory and wants every core.
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samdash-everything")


def _params(defaults: EverythingParams) -> EverythingParams:
    left, right = st.columns(2)
    side = left.slider(
        "Points per side", 4, 64, 16, help=f"A grid of this many points squared is tried (SAM's default is {defaults.points_per_side}); fewer is faster on a CPU."
    )
    min_area = right.number_input("Minimum region area (px)", 0, 100_000, defaults.min_mask_region_area, step=50)
    iou = left.slider("Predicted IoU threshold", 0.0, 1.0, defaults.pred_iou_thresh, 0.01)
    stability = right.slider("Stability score threshold", 0.0, 1.0, defaults.stability_score_thresh, 0.01)
    return replace(defaults, points_per_side=side, pred_iou_thresh=iou, stability_score_thresh=stability, min_mask_region_area=int(min_area))


def everything_panel(workspace: Workspace, segmenter: Segmenter | None, embedding: Embedding | None, image: LoadedImage) -> None:
    """Always one expander, whatever it holds (the working area keeps its layout from run to run).

    ``segmenter`` is None while the model loads.
    """
    with st.expander("Segment everything", icon=":material/auto_awesome_mosaic:"):
        if segmenter is None:  # its settings need PyTorch, which the model is being loaded with
            st.info("Finding every object is possible once the model has loaded.", icon=":material/hourglass_top:")
            return
        if segmenter.is_fallback:
            st.info(
                f"Finding every object needs SAM; {segmenter.name} can only cut out what you point at. "
                "Download a SAM checkpoint in the sidebar to use this.",
                icon=":material/block:",
            )
            return
        from samdash.everything import EverythingParams, segment_everything  # PyTorch is loaded with the SAM model

        params = _params(EverythingParams())
        if embedding is None:  # the same elements as when it is ready, so the page keeps its layout
            st.button("Find all objects", type="primary", icon=":material/auto_awesome:", disabled=True, help="Once the image is encoded")
            return
        data = session()
        run = data.everything
        if run is not None and run.workspace is not workspace:  # another image since: its run is of no use
            run.cancel.set()
            run = data.everything = None
        if st.button("Find all objects", type="primary", icon=":material/auto_awesome:", disabled=run is not None) and run is None:
            run = data.everything = EverythingRun(workspace, segmenter.cache_id)
            run.future = _pool.submit(segment_everything, segmenter.model, image.rgb, embedding, params, run.progress, run.cancel.is_set)
        if run is not None:
            _follow()
        elif note := st.session_state.pop(NOTE_KEY, None):
            failed, text = note
            (st.error if failed else st.info)(text, icon="⚠️" if failed else ":material/cancel:")


@st.fragment(run_every=0.5)
def _follow() -> None:
    """Progress and Cancel while the run goes on; its objects once it is done."""
    run = session().everything
    if run is None:
        return
    if st.button("Cancel", key="everything-cancel", icon=":material/cancel:"):
        run.cancel.set()
        _end((False, "Cancelled: no objects were added."))
    if not run.future.done():
        if not run.future.running():
            text = "Waiting for another segment-everything run to finish…"
        elif run.done < run.total or run.total == 0:
            text = f"Point batch {run.done + 1} of {run.total or '…'}"
        else:
            text = "Bringing the masks found to full size…"
        st.progress(run.done / max(run.total, 1), text=text)
        return
    try:
        found = run.future.result()
    except Exception as exc:  # noqa: BLE001 - the page must survive anything the run raised
        _end((True, described(exc, "segmenting everything")))
    for item in found:
        run.workspace.add_new(item.to_segment(run.workspace.next_id, run.source))
    _end(None)


def _end(note: tuple[bool, str] | None) -> NoReturn:
    """Forget the run and redraw the page (with the new objects, or with the note: failed?, text)."""
    session().everything = None
    st.session_state[NOTE_KEY] = note
    st.rerun(scope="app")
