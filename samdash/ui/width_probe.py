"""Reports the width of the column it sits in, so the canvas can fill it.

The canvas takes a fixed size in pixels, and Streamlit does not tell the
script how wide a column is; this small component measures it in the browser.
"""

from __future__ import annotations

import streamlit as st

_JS = """
export default function(component) {
    const { setStateValue, parentElement } = component;
    // With isolated styles the parent is a shadow root: measure its host element.
    const element = parentElement instanceof ShadowRoot ? parentElement.host : parentElement;
    let last = 0;
    const report = () => {
        const width = Math.floor(element.getBoundingClientRect().width);
        if (width > 0 && Math.abs(width - last) >= 24) {
            last = width;
            setStateValue('width', width);
        }
    };
    const observer = new ResizeObserver(report);
    observer.observe(element);
    report();
    return () => observer.disconnect();
}
"""

_probe = st.components.v2.component("samdash.width_probe", html="<div></div>", js=_JS)


def column_width(key: str, default: int) -> int | None:
    """Width in CSS pixels of the enclosing container.

    None the first time a session asks, before the browser has measured the column: the caller leaves the place
    empty for now, and the browser's answer reruns the area at once. Drawn at a guessed width instead, the canvas
    would be drawn again at the right width a moment later, its background sent twice, and a box drawn in between
    would stay where it was while the image under it shrinks or grows. ``default`` if the browser has not answered
    by the next run (there is no browser, as in AppTest).
    """
    result = _probe(key=key, default={"width": None}, on_width_change=lambda: None, width="stretch", height=1)
    width = result.get("width") if result else None
    if width:
        return int(width)
    asked: set[str] = st.session_state.setdefault("width_asked", set())
    if key not in asked:
        asked.add(key)
        return None
    return default
