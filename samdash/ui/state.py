"""Per-user state: the current project and image, its objects and the session's display caches, in one object.

Everything heavy a browser session holds lives in one ``SessionData``, so
that when the session ends all of it can be let go at once
(``samdash.ui.sessions``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from samdash.drawings import Workspace
from samdash.engine import Embedding
from samdash.imaging import LoadedImage
from samdash.store import SavedImage

if TYPE_CHECKING:  # the generator needs PyTorch, imported only once a SAM model is in use
    from samdash.everything import FoundMask

SESSION_KEY = "samdash"


@dataclass(eq=False)
class EverythingRun:
    """A segment-everything run under way: what it adds to, how far it has got, and how to stop it."""

    workspace: Workspace
    source: str
    future: Future[list[FoundMask]] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    total: int = 0

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total


@dataclass(eq=False)
class SessionData:
    image: LoadedImage | None = None
    workspace: Workspace | None = None
    project_id: str | None = None
    # The current image in the project store, and what was last saved of it; None while nothing is saved.
    saved: SavedImage | None = None
    # The file behind an image not saved yet (a bundled sample): stored with the first object made on it.
    unsaved_file: Path | None = None
    everything: EverythingRun | None = None
    # What the URL should say (``?project=…&image=…``); None until the session has read the URL it was opened with.
    url: dict[str, str] | None = None
    # This session's encode under way: (cache key, future).
    encode: tuple[tuple[str, str], Future[Embedding]] | None = None
    # Whether the page has shown its canvas once; until then a model load is held back (``samdash.ui.resources``):
    # (when it was held back, what starts it).
    page_shown: bool = False
    held_model: tuple[float, Callable[[], None]] | None = None
    _caches: dict[str, dict[Any, Any]] = field(default_factory=dict)

    def cache(self, name: str) -> dict[Any, Any]:
        """A small per-session cache (display copies, thumbnails), gone with the session."""
        return self._caches.setdefault(name, {})

    def clear(self) -> None:
        if self.encode is not None:
            self.encode[1].cancel()
        if self.everything is not None:
            self.everything.cancel.set()
        self.image = self.workspace = self.encode = self.saved = self.everything = self.held_model = None
        self._caches.clear()


def session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def session() -> SessionData:
    data = st.session_state.get(SESSION_KEY)
    if data is None:
        from samdash.ui.sessions import track  # the janitor imports this module

        data = st.session_state[SESSION_KEY] = SessionData()
        track(session_id(), data)
    return data


def current_image() -> LoadedImage | None:
    return session().image


def show(image: LoadedImage, workspace: Workspace | None = None, saved: SavedImage | None = None, file: Path | None = None) -> None:
    """Make ``image`` the current one, with its objects as saved (or none) and what was saved of them."""
    data = session()
    data.image = image
    data.workspace = workspace or Workspace(image.content_hash)
    data.saved = saved
    data.unsaved_file = file if saved is None else None
