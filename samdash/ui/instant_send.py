"""Sends a finished drawing to the app the moment the mouse is released.

The drawable canvas sends its drawing 200 ms after the last change, a
debounce meant for long freehand edits. A prompt is complete on pointer-up,
so this component then presses the canvas's own "Update the app with this
drawing" button, which sends at once and cancels the pending send. Where the
button is not found the canvas's own delayed send still applies.
"""

from __future__ import annotations

import streamlit as st

SEND_BUTTON_LABEL = "Update the app with this drawing"

_JS = """
export default function({ parentElement, data }) {
    const host = parentElement instanceof ShadowRoot ? parentElement.host : parentElement;
    // Called again on every rerun; Streamlit keeps the cleanup each call returns, so every call returns it.
    if (host.__stopListening) return host.__stopListening;
    let button = null;
    const down = (event) => {
        const canvas = event.composedPath().find((node) => node.classList?.contains('upper-canvas'));
        button = canvas?.closest('.dc-root')?.querySelector(`button[aria-label="${data.label}"]`) ?? null;
    };
    const up = () => {
        const pressed = button;
        button = null;
        // A zero delay runs after the canvas has handled this same event and stored the finished shape.
        if (pressed) setTimeout(() => {
            pressed.click();
            host.dataset.sent = String(Number(host.dataset.sent || 0) + 1);
        }, 0);
    };
    document.addEventListener('pointerdown', down, true);
    document.addEventListener('pointerup', up, true);
    host.__stopListening = () => {
        delete host.__stopListening;
        document.removeEventListener('pointerdown', down, true);
        document.removeEventListener('pointerup', up, true);
    };
    return host.__stopListening;
}
"""

_component = st.components.v2.component("samdash.instant_send", html="<div></div>", js=_JS)


def send_drawings_on_release() -> None:
    """Mount once per page, anywhere: it acts on every drawable canvas of the page."""
    _component(key="instant_send", data={"label": SEND_BUTTON_LABEL}, width="stretch", height=1)
