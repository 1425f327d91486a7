"""Letting go of what a browser session held once the session has ended.

Streamlit keeps a disconnected session for ``server.disconnectedSessionTTL``
seconds, so that a reconnect (a network blip, a laptop waking) resumes it, and
then drops it without shutting it down: the session's uploaded files and the
callables of its download buttons (which hold its image and objects) stay in
Streamlit's file managers for the life of the server. A janitor thread clears
each session's image, objects and caches, releases its model and its files,
once it has been gone that long, then returns the freed memory to the system.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import streamlit as st
from streamlit import runtime
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.uploaded_file_manager import UploadedFileManager

from samdash.engine_pool import EnginePool
from samdash.memory import give_back
from samdash.ui.state import SessionData

SWEEP_SECONDS = 10.0


@dataclass
class _Tracked:
    data: SessionData
    last_seen: float


class FileManagers(Protocol):
    """Where Streamlit keeps a session's uploads and its download buttons' files: its runtime."""

    uploaded_file_mgr: UploadedFileManager
    media_file_mgr: MediaFileManager


def _streamlit_runtime() -> FileManagers | None:
    return runtime.get_instance() if runtime.exists() else None


class Janitor:
    def __init__(self, pool: EnginePool, grace_seconds: float, files: Callable[[], FileManagers | None] = _streamlit_runtime) -> None:
        self.pool = pool
        self.grace_seconds = grace_seconds
        self.files = files
        self._sessions: dict[str, _Tracked] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def track(self, session_id: str, data: SessionData) -> None:
        with self._lock:
            self._sessions[session_id] = _Tracked(data, time.monotonic())
            if self._thread is None and runtime.exists():
                self._thread = threading.Thread(target=self._run, name="samdash-janitor", daemon=True)
                self._thread.start()

    def sweep(self, is_active: Callable[[str], bool], now: float) -> list[str]:
        """Clear the sessions gone for longer than the grace period; return their ids."""
        ended: list[tuple[str, SessionData]] = []
        with self._lock:
            for session_id, tracked in list(self._sessions.items()):
                if is_active(session_id):
                    tracked.last_seen = now
                elif now - tracked.last_seen > self.grace_seconds:
                    ended.append((session_id, tracked.data))
                    del self._sessions[session_id]
        for session_id, data in ended:
            data.clear()
            self.pool.release(session_id)
            self._forget_files(session_id)
        if ended:
            give_back()
        return [session_id for session_id, _ in ended]

    def _forget_files(self, session_id: str) -> None:
        """What Streamlit's shutdown of a session would release: its uploads, and its download buttons' files and
        callables (both managers are safe to call from any thread)."""
        managers = self.files()
        if managers is None:
            return
        managers.uploaded_file_mgr.remove_session_files(session_id)
        managers.media_file_mgr.clear_session_refs(session_id)
        managers.media_file_mgr.remove_orphaned_files()

    def _run(self) -> None:
        while True:
            time.sleep(SWEEP_SECONDS)
            try:
                is_active = runtime.get_instance().is_active_session
            except RuntimeError:  # the server has stopped
                break
            self.sweep(is_active, time.monotonic())
        with self._lock:
            self._thread = None


@st.cache_resource(show_spinner=False)
def engine_pool() -> EnginePool:
    return EnginePool()


@st.cache_resource(show_spinner=False)
def janitor() -> Janitor:
    return Janitor(engine_pool(), float(st.get_option("server.disconnectedSessionTTL")))


def track(session_id: str, data: SessionData) -> None:
    janitor().track(session_id, data)
