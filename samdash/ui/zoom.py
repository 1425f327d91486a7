"""Zoom and pan: which part of the image the canvas and the result show, kept per session for the image on screen.

A zoom or a pan never encodes the image again: SAM's embedding is of the whole image, and drawings made at any
zoom are mapped back to whole-image pixels. The canvas is remounted for the new view with the drawings moved
where their image points now lie.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from samdash.canvas import BackgroundFit
from samdash.drawings import Workspace
from samdash.imaging import LoadedImage
from samdash.ui.display import MAX_CANVAS_HEIGHT, jpeg_data_url, resized
from samdash.view import View

_VIEW = "samdash-view"
_REQUEST = "zoom-request"
# The zoom steps offered assume a canvas about this wide (the view itself is limited by the real width).
_LIKELY_CANVAS_PX = 640
_OVERVIEW_PX = 110
WHOLE = "Whole image"

ViewChange = Callable[[View, int], View]


def current_view(image: LoadedImage) -> View:
    """The view of this image the session last showed; the whole image for an image just opened."""
    saved = st.session_state.get(_VIEW)
    if saved is not None and saved[0] == image.content_hash:
        return saved[1]
    return View.whole((image.width, image.height))


def canvas_fit(view: View, width: int) -> BackgroundFit:
    """How the canvas ``width`` px wide fits ``view``: its background is exactly the view, scaled."""
    return view.fit(view.canvas_size(width, MAX_CANVAS_HEIGHT))


def show_view(workspace: Workspace, image: LoadedImage, view: View, width: int) -> View:
    """Show ``view`` from this run on, the canvas remounted with the drawings moved there."""
    st.session_state[_VIEW] = (image.content_hash, view)
    workspace.move_drawings(canvas_fit(view, width), view)
    return view


def _step_label(zoom: int) -> str:
    return WHOLE if zoom == 1 else f"{zoom}×"


def _ask_zoom() -> None:
    chosen = st.session_state.get("zoom")
    zoom = 1 if chosen in (None, WHOLE) else int(chosen.rstrip("×"))
    st.session_state[_REQUEST] = lambda view, width: view.at(view.centre, zoom, width)


def _ask_pan(right: float, down: float) -> None:
    st.session_state[_REQUEST] = lambda view, width: view.panned(right, down)


def zoom_bar(view: View, disabled: bool) -> tuple[ViewChange | None, DeltaGenerator]:
    """The zoom steps and the pan buttons; returns the change asked for (applied by the caller once the canvas's
    width is known) and a column beside them for the caller's use. One row, so the canvas below stays in sight."""
    request: ViewChange | None = st.session_state.pop(_REQUEST, None)
    steps = view.zoom_steps(_LIKELY_CANVAS_PX)
    # The control shows the zoom on screen (none of its steps after a zoom to a box); set before it is drawn.
    shown = round(view.zoom) if request is None else None
    st.session_state["zoom"] = _step_label(shown) if shown in steps and abs(view.zoom - shown) < 0.05 else None
    zoom_with, pan_with, beside = st.columns([4, 3, 3], vertical_alignment="bottom")
    zoom_with.segmented_control("Zoom", [_step_label(step) for step in steps], key="zoom", on_change=_ask_zoom,
                                disabled=disabled, help="Or draw in **Zoom to box** mode around the part to see.")
    with pan_with:
        buttons = st.columns(4, gap="small")
        for column, (icon, right, down) in zip(buttons, (("arrow_back", -0.5, 0), ("arrow_upward", 0, -0.5),
                                                           ("arrow_downward", 0, 0.5), ("arrow_forward", 0.5, 0))):
            column.button("", icon=f":material/{icon}:", key=f"pan-{icon}", on_click=_ask_pan, args=(right, down),
                          disabled=disabled or view.is_whole, width="stretch", help="Move half a view")
    return request, beside


def overview(image: LoadedImage, view: View) -> None:
    """A small copy of the whole image with the view's rectangle on it, and the view's pixel range, while zoomed in."""
    if view.is_whole:
        return
    whole = View.whole((image.width, image.height))
    size = whole.canvas_size(_OVERVIEW_PX, _OVERVIEW_PX)
    small = resized(image, size).copy()
    scale = size[0] / image.width
    corner = (round(view.x * scale), round(view.y * scale))
    far = (round((view.x + view.width) * scale) - 1, round((view.y + view.height) * scale) - 1)
    cv2.rectangle(small, corner, far, (255, 196, 0), 2)
    st.image(jpeg_data_url(small), width=_OVERVIEW_PX,
             caption=f"{view.label()}: x {view.x}–{view.x + view.width}, y {view.y}–{view.y + view.height}")
