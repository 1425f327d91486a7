"""The objects of one image, kept in step with the canvas drawings that made them.

The canvas is the record of prompts. Every drawing applied is remembered with
the object it made or refined. When the canvas changes (undo, redo, a
deletion or a move there), each object whose drawings changed is rebuilt from
the drawings it still has, new drawings are applied, and a drawing that comes
back (a redo) returns to the object it belonged to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from samdash.canvas import Shape
from samdash.engine import Embedding, Segmenter
from samdash.errors import PromptError
from samdash.prompts import EXCLUDE, inside
from samdash.segments import Segment, SegmentState


def _usable(shape: Shape, size: tuple[int, int]) -> bool:
    """Whether the drawing makes a prompt for this image (a box dragged off the image does not)."""
    try:
        shape.to_prompt(*size)
    except PromptError:
        return False
    return True


@dataclass(frozen=True, eq=False)
class Applied:
    """One canvas drawing and the object it made or refined (None: refused, or its object is gone)."""

    shape: Shape
    segment_id: int | None = None
    # The object before this point refined it; None for the drawing that made the object.
    before: SegmentState | None = None

    @property
    def key(self) -> Hashable:
        return self.shape.key


@dataclass
class Workspace:
    """The objects of one image and the canvas drawings applied to them, in the order they were applied."""

    image_hash: str
    segments: list[Segment] = field(default_factory=list)
    active_id: int | None = None
    next_id: int = 1
    applied: list[Applied] = field(default_factory=list)
    # Bumped to remount the canvas with ``drawing`` (after a deletion or "clear all").
    generation: int = 0
    drawing: dict[str, Any] | None = None
    last_decode_ms: float | None = None
    # Drawings taken back, by key, with the object each refined: a redo returns to it.
    _taken_back: dict[Hashable, int] = field(default_factory=dict, repr=False)
    # Objects whose making drawing was taken back, by that drawing's key: a redo brings them back.
    _dropped: dict[Hashable, Segment] = field(default_factory=dict, repr=False)

    @property
    def active(self) -> Segment | None:
        return self.segment(self.active_id)

    @property
    def canvas_key(self) -> str:
        return f"canvas-{self.image_hash[:16]}-{self.generation}"

    def segment(self, segment_id: int | None) -> Segment | None:
        return next((s for s in self.segments if s.id == segment_id), None)

    def add(self, segment: Segment) -> None:
        self.segments.append(segment)
        self.active_id = segment.id
        self.next_id = max(self.next_id, segment.id + 1)

    def remove(self, segment_id: int) -> None:
        """Delete an object and its drawings (the canvas is remounted without them)."""
        self._drop(segment_id)
        self.applied = [entry for entry in self.applied if entry.segment_id != segment_id]
        self._redraw()

    def clear(self) -> None:
        self.segments = []
        self.active_id = None
        self.applied = []
        self._redraw()

    def sync(self, shapes: Sequence[Shape], segmenter: Segmenter, embedding: Embedding, size: tuple[int, int]) -> list[PromptError]:
        """Bring the objects in step with the drawings now on the canvas; return why new drawings were refused.

        ``size`` is the image's (width, height). Drawings are matched by key,
        so reordering them on the canvas changes nothing. One drawing replaced
        by one of the same sort (a box moved or resized, a point moved) is
        taken as an edit: its object is rebuilt with the new one in its place.
        """
        unmatched = Counter(shape.key for shape in shapes)
        gone = []
        for entry in self.applied:
            if unmatched[entry.key] > 0:
                unmatched[entry.key] -= 1
            else:
                gone.append(entry)
        new = []
        for shape in shapes:
            if unmatched[shape.key] > 0:
                unmatched[shape.key] -= 1
                new.append(shape)
        edit = None
        if len(gone) == 1 and len(new) == 1 and self._editable(gone[0], new[0], size):
            edit = (gone[0], new.pop())
        for segment_id in dict.fromkeys(entry.segment_id for entry in gone if entry.segment_id is not None):
            self._rebuild(segment_id, gone, edit, segmenter, embedding, size)
        self.applied = [entry for entry in self.applied if entry not in gone]
        errors = []
        # Objects coming back first, so that their points find them.
        for shape in sorted(new, key=lambda shape: shape.key not in self._dropped):
            try:
                self._apply(shape, segmenter, embedding, size)
            except PromptError as exc:
                self.applied.append(Applied(shape))
                errors.append(exc)
        return errors

    def _editable(self, old: Applied, shape: Shape, size: tuple[int, int]) -> bool:
        """Whether ``shape`` can take ``old``'s place: same sort, an object to rebuild, a prompt for this image."""
        return old.shape.makes_object == shape.makes_object and self.segment(old.segment_id) is not None and _usable(shape, size)

    def _rebuild(
        self,
        segment_id: int,
        gone: list[Applied],
        edit: tuple[Applied, Shape] | None,
        segmenter: Segmenter,
        embedding: Embedding,
        size: tuple[int, int],
    ) -> None:
        """Rebuild one object from its drawings, from the first one taken back or edited on."""
        edited, replacement = edit if edit is not None else (None, None)
        chain = [entry for entry in self.applied if entry.segment_id == segment_id]
        for entry in chain:
            if entry in gone and entry is not edited:
                self._taken_back[entry.key] = segment_id
        segment = self.segment(segment_id)
        if segment is None:  # its making drawing is gone already
            return
        first = next(i for i, entry in enumerate(chain) if entry in gone)
        restore_to = chain[first].before  # None for the drawing that made the object
        if chain[first] is edited:
            chain[first] = self._swap(edited, Applied(replacement, segment_id))
        elif restore_to is None:
            self._take_back_object(segment, chain)
            return
        if restore_to is None:
            segment.restore(self._fresh(chain[first].shape, segmenter, embedding, size))
            first += 1
        else:
            segment.restore(restore_to)
        self._replay(segment, [entry for entry in chain[first:] if entry not in gone], segmenter, embedding, size)

    def _take_back_object(self, segment: Segment, chain: list[Applied]) -> None:
        """The drawing that made an object is gone: the object goes (as that drawing made it, to come back on a redo)."""
        if len(chain) > 1 and chain[1].before is not None:
            segment.restore(chain[1].before)
        self._drop(segment.id)
        self._dropped[chain[0].key] = segment

    def _apply(self, shape: Shape, segmenter: Segmenter, embedding: Embedding, size: tuple[int, int]) -> None:
        """A box or region makes an object, a point refines the active one; a redone drawing returns to its own."""
        returning = self._dropped.pop(shape.key, None)
        if returning is not None and self.segment(returning.id) is None:
            # Points drawn on it that stayed on the canvas apply to it again.
            orphans = [entry for entry in self.applied if entry.segment_id == returning.id]
            self.add(returning)
            self.applied.insert(self.applied.index(orphans[0]) if orphans else len(self.applied), Applied(shape, returning.id))
            self._replay(returning, orphans, segmenter, embedding, size)
            return
        owner = self._taken_back.pop(shape.key, None)
        target = None if shape.makes_object else (self.segment(owner) or self.active)
        if target is None:
            if shape.label == EXCLUDE:
                raise PromptError("An exclude point needs an object to refine: draw a box or region first.")
            state = self._fresh(shape, segmenter, embedding, size)
            target = Segment.create(self.next_id, state.prompt, state.candidates)
            self.add(target)
            self.applied.append(Applied(shape, target.id))
        else:
            self.active_id = target.id
            self.applied.append(Applied(shape, target.id))
            self._replay(target, [self.applied[-1]], segmenter, embedding, size)
        self.last_decode_ms = target.candidates.decode_seconds * 1000

    def _replay(self, segment: Segment, points: list[Applied], segmenter: Segmenter, embedding: Embedding, size: tuple[int, int]) -> None:
        """Refine ``segment`` with each point in turn, recording its state before each."""
        for entry in points:
            before = segment.saved()
            segment.refine(segmenter, embedding, inside(entry.shape.points[0], *size), entry.shape.label)
            self._swap(entry, Applied(entry.shape, segment.id, before))
        self.last_decode_ms = segment.candidates.decode_seconds * 1000

    def _swap(self, old: Applied, new: Applied) -> Applied:
        self.applied[self.applied.index(old)] = new
        return new

    @staticmethod
    def _fresh(shape: Shape, segmenter: Segmenter, embedding: Embedding, size: tuple[int, int]) -> SegmentState:
        """An object as this drawing alone makes it, its best candidate picked."""
        prompt = shape.to_prompt(*size)
        candidates = segmenter.predict(embedding, prompt)
        return SegmentState(prompt, candidates, candidates.best)

    def _drop(self, segment_id: int) -> None:
        self.segments = [s for s in self.segments if s.id != segment_id]
        if self.active_id == segment_id:
            self.active_id = self.segments[-1].id if self.segments else None

    def _redraw(self) -> None:
        """Remount the canvas with the drawings whose objects stand (refused and orphaned ones are left off)."""
        self.applied = [entry for entry in self.applied if self.segment(entry.segment_id) is not None]
        self.drawing = {"objects": [entry.shape.raw for entry in self.applied]} if self.applied else None
        # A remounted canvas starts a new undo history: nothing taken back can come back.
        self._taken_back.clear()
        self._dropped.clear()
        self.generation += 1
