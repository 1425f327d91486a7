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


def canvas_state(*objects: dict) -> dict:
    """What the canvas reports: its drawing (``objects``, in canvas pixels) and how it fitted the image."""
    return {"drawing": {"raw": {"objects": list(objects)}, "data": None}, "backgroundFit": FIT}


def open_app(query: dict[str, str] | None = None) -> AppTest:
    """A new session of the page (at ``query``, as a URL gives it), run until its image is encoded."""
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    settle(at)
    return at


def settle(at: AppTest) -> None:
    """Once the model has loaded and the image is encoded, run the page again, as the browser does on its own."""
    assert not at.exception
    for _ in range(2):  # the canvas reports how it fits, and the model loads (a canvas laid out anew reports again)
        if at.session_state["samdash"].held_model is None:
            break
        workspace = at.session_state["samdash"].workspace
        at.session_state[workspace.canvas_key] = canvas_state()
        at.run()
    for _ in range(3):  # the model, then the image's encode
        load = at.session_state["model_load"][1] if "model_load" in at.session_state else None
        encode = at.session_state["samdash"].encode
        waiting = [future for future in (load, encode and encode[1]) if future is not None and not future.done()]
        if not waiting:
            return
        for future in waiting:
            future.exception(timeout=120)
        at.run()
        assert not at.exception


def draw(at: AppTest, *objects: dict) -> None:
    """Send the whole drawing, as the canvas does after every change."""
    workspace = at.session_state["samdash"].workspace
    at.session_state[workspace.canvas_key] = canvas_state(*objects)
    at.run()
    settle(at)
