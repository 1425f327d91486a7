"""Candidate masks of the active object, and the list of all objects."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from samdash.drawings import Workspace
from samdash.imaging import LoadedImage
from samdash.render import hex_to_rgb, preview, rgb_to_hex
from samdash.segments import Segment
from samdash.ui.display import fit_size, jpeg_data_url, resized
from samdash.ui.state import session

THUMB_WIDTH = 240


def _score_label(score: float) -> str:
    return "score n/a" if math.isnan(score) else f"IoU {score:.2f}"


def _thumbnail(base: np.ndarray, segment: Segment, index: int) -> str:
    """A candidate's thumbnail as a data URL, kept while the candidates stay the same (reruns are frequent)."""
    cache: dict[tuple, str] = session().cache("thumbnails")
    key = (segment.candidates.token, index, segment.color, base.shape)
    if key not in cache:
        if len(cache) > 24:
            cache.clear()
        cache[key] = jpeg_data_url(preview(base, segment.candidates.preview(index, (base.shape[1], base.shape[0])), segment.color))
    return cache[key]


# Buttons change objects in callbacks, before the run that follows: that run shows and saves the change.


def _pick(segment: Segment, index: int) -> None:
    segment.pick = index


def _activate(workspace: Workspace, segment_id: int) -> None:
    workspace.active_id = segment_id


def candidate_picker(workspace: Workspace, image: LoadedImage, engine_name: str) -> None:
    segment = workspace.active
    if segment is None:
        st.info("Draw a **box** or a **freehand region** around an object to segment it.", icon=":material/draw:")
        return
    st.markdown(f"**Candidates for {segment.name}** — {engine_name} proposes several masks; pick the one that fits.")
    base = resized(image, fit_size(image, THUMB_WIDTH))
    columns = st.columns(len(segment.candidates))
    for index, column in enumerate(columns):
        with column:
            thumb = _thumbnail(base, segment, index)
            chosen = index == segment.pick
            st.image(thumb, width="stretch")
            label = f"{'✓ ' if chosen else ''}#{index + 1} · {_score_label(float(segment.candidates.scores[index]))}"
            st.button(
                label,
                key=f"pick-{workspace.image_hash[:8]}-{segment.id}-{index}",
                type="primary" if chosen else "secondary",
                width="stretch",
                on_click=_pick,
                args=(segment, index),
            )


def object_list(workspace: Workspace) -> None:
    if not workspace.segments:
        return
    head, clear = st.columns([4, 1], vertical_alignment="bottom")
    head.markdown(f"**Objects ({len(workspace.segments)})**")
    clear.button("Clear all", icon=":material/delete_sweep:", width="stretch", key=f"clear-{workspace.image_hash[:8]}", on_click=workspace.clear)
    for segment in list(workspace.segments):
        key = f"{workspace.image_hash[:8]}-{segment.id}"
        active = segment.id == workspace.active_id
        swatch, name, facts, visible, select, delete = st.columns([0.6, 3, 2.4, 1.2, 1.2, 1.2], vertical_alignment="center")
        color = swatch.color_picker("Colour", rgb_to_hex(segment.color), key=f"color-{key}", label_visibility="collapsed")
        segment.color = hex_to_rgb(color)
        segment.name = name.text_input("Name", segment.name, key=f"name-{key}", label_visibility="collapsed") or segment.name
        facts.markdown(f"{segment.area:,} px · {_score_label(segment.score)}")
        segment.visible = visible.checkbox("Visible", segment.visible, key=f"visible-{key}")
        select.button(
            "Active" if active else "Select", key=f"select-{key}", disabled=active, width="stretch", on_click=_activate, args=(workspace, segment.id)
        )
        delete.button(
            "Delete", icon=":material/delete:", key=f"delete-{key}", help=f"Delete {segment.name}", width="stretch",
            on_click=workspace.remove, args=(segment.id,),
        )
