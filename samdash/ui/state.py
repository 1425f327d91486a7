"""Per-user state kept in ``st.session_state``: the current image and its objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from samdash.imaging import LoadedImage
from samdash.segments import Segment

IMAGE_KEY = "image"
WORKSPACE_KEY = "workspace"


@dataclass
class Workspace:
    """The objects of one image, and how far the canvas drawing has been read."""

    image_hash: str
    segments: list[Segment] = field(default_factory=list)
    active_id: int | None = None
    next_id: int = 1
    # Canvas objects already turned into prompts; later ones are new drawings.
    processed: int = 0
    # Bumped to remount the canvas with ``drawing`` (after a deletion or "clear all").
    generation: int = 0
    drawing: dict[str, Any] | None = None
    last_decode_ms: float | None = None

    @property
    def active(self) -> Segment | None:
        return next((s for s in self.segments if s.id == self.active_id), None)

    @property
    def canvas_key(self) -> str:
        return f"canvas-{self.image_hash[:16]}-{self.generation}"

    def add(self, segment: Segment) -> None:
        self.segments.append(segment)
        self.active_id = segment.id
        self.next_id = max(self.next_id, segment.id + 1)

    def remove(self, segment_id: int) -> None:
        self.segments = [s for s in self.segments if s.id != segment_id]
        if self.active_id == segment_id:
            self.active_id = self.segments[-1].id if self.segments else None
        self._redraw([obj for s in self.segments for obj in s.drawing])

    def clear(self) -> None:
        self.segments = []
        self.active_id = None
        self._redraw([])

    def _redraw(self, objects: list[dict[str, Any]]) -> None:
        self.drawing = {"objects": objects} if objects else None
        self.processed = len(objects)
        self.generation += 1


def current_image() -> LoadedImage | None:
    return st.session_state.get(IMAGE_KEY)


def set_image(image: LoadedImage) -> None:
    st.session_state[IMAGE_KEY] = image


def workspace_for(image: LoadedImage) -> Workspace:
    """The workspace of this image; a different image starts a new, empty one."""
    workspace = st.session_state.get(WORKSPACE_KEY)
    if workspace is None or workspace.image_hash != image.content_hash:
        workspace = Workspace(image.content_hash)
        st.session_state[WORKSPACE_KEY] = workspace
    return workspace
