"""Driving the page through Streamlit's AppTest: drawings are injected as the canvas would send them."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
# The default image is the bundled cat sample, 451×300; the canvas shows it at half size here.
FIT = {"naturalWidth": 451, "naturalHeight": 300, "scaleX": 0.5, "scaleY": 0.5, "offsetX": 0, "offsetY": 0}
RECT = {"type": "rect", "left": 40, "top": 20, "width": 120, "height": 100, "strokeWidth": 3}


def circle(x: float, y: float, fill: str) -> dict:
    return {"type": "circle", "left": x - 7, "top": y - 7, "radius": 6, "strokeWidth": 2, "fill": fill}


def draw(at: AppTest, *objects: dict) -> None:
    """Send the whole drawing, as the canvas does after every change."""
    workspace = at.session_state["samdash"].workspace
    at.session_state[workspace.canvas_key] = {"drawing": {"raw": {"objects": list(objects)}, "data": None}, "backgroundFit": FIT}
    at.run()
    assert not at.exception
