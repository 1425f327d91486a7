"""Per-user state kept in ``st.session_state``: the current image and its objects."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from samdash.imaging import LoadedImage
from samdash.segments import Segment, SegmentState

IMAGE_KEY = "image"
WORKSPACE_KEY = "workspace"


@dataclass(frozen=True)
class Applied:
    """One canvas drawing turned into a change of one object, and how to take it back."""

    key: Hashable
    raw: dict[str, Any]  # the Fabric object, to draw it again when the canvas is remounted
    segment_id: int | None = None  # None: the drawing was refused and changed nothing
    before: SegmentState | None = None  # the object before a refinement; None when the drawing created it


@dataclass
class Workspace:
    """The objects of one image, and which canvas drawings made them.

    The canvas is the record of prompts: a drawing undone, deleted or moved
    there takes back what it did here, and a redone or moved one is applied
    again.
    """

    image_hash: str
    segments: list[Segment] = field(default_factory=list)
    active_id: int | None = None
    next_id: int = 1
    # The canvas drawings applied so far, in drawing order.
    applied: list[Applied] = field(default_factory=list)
    # Bumped to remount the canvas with ``drawing`` (after a deletion or "clear all").
    generation: int = 0
    drawing: dict[str, Any] | None = None
    last_decode_ms: float | None = None

    @property
    def active(self) -> Segment | None:
        return self.segment(self.active_id)

    @property
    def canvas_key(self) -> str:
        return f"canvas-{self.image_hash[:16]}-{self.generation}"

    def add(self, segment: Segment) -> None:
        self.segments.append(segment)
        self.active_id = segment.id
        self.next_id = max(self.next_id, segment.id + 1)

    def segment(self, segment_id: int | None) -> Segment | None:
        return next((s for s in self.segments if s.id == segment_id), None)

    def take_back_missing(self, keys: Sequence[Hashable]) -> int:
        """Undo what the drawings no longer on the canvas did; return where the canvas's new drawings start.

        Applied drawings are matched to the canvas in order: from the first one
        that differs (undone, deleted or moved there), everything after it is
        taken back, latest first, and its canvas drawings count as new.
        """
        start = 0
        while start < min(len(keys), len(self.applied)) and self.applied[start].key == keys[start]:
            start += 1
        for entry in reversed(self.applied[start:]):
            segment = self.segment(entry.segment_id)
            if segment is None:
                continue
            if entry.before is not None:
                segment.restore(entry.before)
                continue
            self._drop(segment.id)
            if segment.id == self.next_id - 1:
                self.next_id = segment.id  # a redo gets the same name and colour back
        del self.applied[start:]
        return start

    def remove(self, segment_id: int) -> None:
        self._drop(segment_id)
        self.applied = [entry for entry in self.applied if entry.segment_id != segment_id]
        self._redraw()

    def clear(self) -> None:
        self.segments = []
        self.active_id = None
        self.applied = []
        self._redraw()

    def _drop(self, segment_id: int) -> None:
        self.segments = [s for s in self.segments if s.id != segment_id]
        if self.active_id == segment_id:
            self.active_id = self.segments[-1].id if self.segments else None

    def _redraw(self) -> None:
        """Remount the canvas with the drawings that still stand (refused ones are left off)."""
        self.applied = [entry for entry in self.applied if entry.segment_id is not None]
        self.drawing = {"objects": [entry.raw for entry in self.applied]} if self.applied else None
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
