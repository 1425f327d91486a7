"""Turn any failure into a message on the page, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from samdash.errors import SamdashError

log = logging.getLogger("samdash")


def explain(exc: BaseException, action: str) -> str:
    """One or two sentences: what happened and what to do."""
    if isinstance(exc, SamdashError):
        return str(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return (
            f"Ran out of memory while {action}. Try a smaller image, close other sessions, "
            "or pick a smaller model (vit_b or MobileSAM) in the sidebar."
        )
    return f"Something went wrong while {action}: {exc}. Your objects are kept; try again."


def described(exc: BaseException, action: str) -> str:
    """The message to show for a failure; one a user cannot cause is logged with its traceback too."""
    if not isinstance(exc, SamdashError):
        log.error("while %s", action, exc_info=exc)
    return explain(exc, action)


@contextmanager
def reported(action: str) -> Iterator[None]:
    """Run a block; show its failure as ``st.error`` and carry on with the rest of the page."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the page must survive anything the block raises
        st.error(described(exc, action), icon="⚠️")
