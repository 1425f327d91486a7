"""Reports the width of the column it sits in, so the canvas can fill it.

The canvas takes a fixed size in pixels, and Streamlit does not tell the
script how wide a column is; this small component measures it in the browser.
It also keeps the width in a cookie, which the browser sends when a page
opens: after a reload or a server restart, the first run draws the canvas at
the width this browser measured last, without waiting for a measure.
"""

from __future__ import annotations

import streamlit as st

_JS = """
export default function(component) {
    const { setStateValue, parentElement } = component;
    // With isolated styles the parent is a shadow root: measure its host element.
    const element = parentElement instanceof ShadowRoot ? parentElement.host : parentElement;
    // The page was drawn at the width in the cookie, if this browser had one when the page opened.
    let last = Number((document.cookie.match(/(?:^|; )COOKIE=(\\d+)/) || [])[1] || 0);
    const report = () => {
        const width = Math.floor(element.getBoundingClientRect().width);
        if (width > 0 && Math.abs(width - last) >= 24) {
            last = width;
            document.cookie = `COOKIE=${width}; path=/; max-age=31536000; SameSite=Lax`;
            setStateValue('width', width);
        }
    };
    const observer = new ResizeObserver(report);
    observer.observe(element);
    report();
    return () => observer.disconnect();
}
"""

_COOKIE = "samdash_column_px"
_probe = st.components.v2.component("samdash.width_probe", html="<div></div>", js=_JS.replace("COOKIE", _COOKIE))


def column_width(key: str, default: int) -> int | None:
    """Width in CSS pixels of the enclosing container.

    The width this browser measured last (its cookie) until it has measured the column again. Without one, None
    the first time a session asks: the caller leaves the place empty for now, and the browser's answer reruns the
    area at once. Drawn at a guessed width instead, the canvas would be drawn again at the right width a moment
    later, its background sent twice, and a box drawn in between would stay where it was while the image under it
    shrinks or grows. ``default`` if the browser has not answered by the next run (there is no browser, as in
    AppTest).
    """
    result = _probe(key=key, default={"width": None}, on_width_change=lambda: None, width="stretch", height=1)
    width = result.get("width") if result else None
    if width:
        return int(width)
    remembered = _remembered_width()
    if remembered is not None:
        return remembered
    asked: set[str] = st.session_state.setdefault("width_asked", set())
    if key not in asked:
        asked.add(key)
        return None
    return default


def _remembered_width() -> int | None:
    """The column's width as this browser last measured it, sent as a cookie when the page opened."""
    value = str(st.context.cookies.get(_COOKIE, ""))  # anything but a plain number (a forged cookie) is ignored
    return int(value) if value.isdigit() and 0 < int(value) <= 10_000 else None
