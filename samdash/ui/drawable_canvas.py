"""The drawable canvas, with its stylesheet delivered inline.

streamlit-drawable-canvas registers its component with its stylesheet as a
file: every canvas that mounts (a new image, a redraw after a deletion) loads
it from the Streamlit server with a ``<link>`` in its own shadow root. Until it
has arrived, the drawing layer is laid out below the background image instead
of on top of it, so a box dragged over the image lands on nothing and is lost
without a trace. On an idle server that lasts a frame; on a server busy with
several sessions it lasts seconds, long after the new image is shown.

Registered again here, under the same name, with the same script and markup
and the stylesheet's text: the style then comes with the canvas element and
applies from its first frame.
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st
import streamlit_drawable_canvas
from streamlit_drawable_canvas import st_canvas

__all__ = ["st_canvas"]

COMPONENT = "streamlit-drawable-canvas.streamlit_drawable_canvas"
_BUILD = Path(streamlit_drawable_canvas.__file__).resolve().parent / "frontend" / "build"
# The markup the package registers; its script draws into .canvas-root.
_HTML = '<div class="canvas-root"></div>'


def _inline_stylesheet() -> None:
    sheets = sorted(_BUILD.glob("index-*.css"))
    scripts = sorted(_BUILD.glob("index-*.js"))
    if len(sheets) != 1 or len(scripts) != 1:
        return  # laid out differently from the version this was written for: keep the package's own registration
    # A newline makes Streamlit take the text as inline CSS, not as a path (the sheet's selectors contain [ ]).
    css = "/* streamlit-drawable-canvas " + sheets[0].name + " */\n" + sheets[0].read_text()
    registry_log = logging.getLogger("streamlit.components.v2.component_registry")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)  # replacing the package's definition is the point: no warning
    try:
        st.components.v2.component(COMPONENT, js=scripts[0].name, css=css, html=_HTML, isolate_styles=True)
    finally:
        registry_log.setLevel(level)


_inline_stylesheet()
