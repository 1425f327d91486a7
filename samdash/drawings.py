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
from dataclasses import dataclass, field, replace
from typing import Any

from samdash.canvas import BackgroundFit, Shape, placed
from samdash.engine import Embedding, Segmenter
from samdash.errors import PromptError
from samdash.prompts import EXCLUDE, inside
from samdash.render import Color
from samdash.segments import Segment, SegmentState
from samdash.view import View

# What a polygon drawn by hand is known as in place of a model: no engine can take its "logits" back.
MANUAL_SOURCE = "polygon"


@dataclass(frozen=True, eq=False)
class Applied:
    """One canvas drawing and the object it made or refined.

    ``segment_id`` may name an object that is gone for now (the drawing that
    made it was taken back; it returns on a redo); None means the drawing was
    refused and changed nothing.
    """

    shape: Shape
    segment_id: int | None = None
    # The object before this drawing refined it; None for the drawing that made the object.
    before: SegmentState | None = None

    @property
    def key(self) -> Hashable:
        return self.shape.key


@dataclass
class _Context:
    """What applying drawings needs, and the refusals met on the way."""

    segmenter: Segmenter
    embedding: Embedding
    size: tuple[int, int]  # the image's (width, height)
    refused: list[PromptError] = field(default_factory=list)
    decode_seconds: float | None = None  # of the last prompt decoded

    def fresh(self, shape: Shape) -> SegmentState:
        """An object as this drawing alone makes it: SAM's best candidate, or a polygon's own pixels."""
        if shape.kind == "outline":
            mask = shape.outline_mask(self.size)
            if not mask.any():
                raise PromptError("The polygon covers no pixel of the image.")
            return SegmentState.fixed(mask, None, MANUAL_SOURCE)
        prompt = shape.to_prompt(*self.size)
        candidates = self.segmenter.predict(self.embedding, prompt)
        self.decode_seconds = candidates.decode_seconds
        return SegmentState.of(prompt, candidates)

    def change(self, segment: Segment, shape: Shape) -> None:
        """Refine ``segment`` with a point, or paint a brush stroke on it (it stays as it was when refused)."""
        if shape.kind == "stroke":
            segment.restore(segment.state.stroked(shape.stroke()))
            return
        segment.refine(self.segmenter, self.embedding, inside(shape.points[0], *self.size), shape.label)
        self.decode_seconds = segment.candidates.decode_seconds

    def usable(self, shape: Shape) -> bool:
        """Whether the drawing makes a prompt for this image (a box dragged off the image does not)."""
        try:
            shape.to_prompt(*self.size)
        except PromptError:
            return False
        return True


def _remember(memory: dict[Hashable, list[Any]], key: Hashable, value: Any) -> None:
    memory.setdefault(key, []).append(value)


def _recall(memory: dict[Hashable, list[Any]], key: Hashable) -> Any:
    """The latest value remembered under ``key`` (identical drawings are remembered in turn), or None."""
    values = memory.get(key)
    if not values:
        return None
    value = values.pop()
    if not values:
        del memory[key]
    return value


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
    # The label (id, colour) an object made from now on gets: the one picked before drawing. Not saved.
    new_label: tuple[int, Color] | None = None
    # Points taken back, by key, with the object each refined: a redo returns to it.
    _taken_back: dict[Hashable, list[int]] = field(default_factory=dict, repr=False)
    # Objects whose making drawing was taken back, by that drawing's key: a redo brings them back.
    _dropped: dict[Hashable, list[Segment]] = field(default_factory=dict, repr=False)
    # The view ``drawing`` was laid out for (None: as saved, whatever view that was): the page lays it out again
    # for the view it shows before the canvas mounts.
    drawing_view: View | None = field(default=None, repr=False)
    # Drawings to show on the next canvas that are not applied yet (made in a tab whose image another one saved).
    carried: list[Shape] = field(default_factory=list, repr=False)

    @classmethod
    def restored(
        cls, image_hash: str, segments: list[Segment], applied: list[Applied], active_id: int | None, next_id: int
    ) -> "Workspace":
        """A workspace as it was saved: the canvas mounts with its drawings, with an undo history of its own."""
        workspace = cls(image_hash, segments, active_id, next_id, applied)
        workspace._redraw()
        return workspace

    @property
    def active(self) -> Segment | None:
        return self.segment(self.active_id)

    @property
    def canvas_key(self) -> str:
        return f"canvas-{self.image_hash[:16]}-{self.generation}"

    def segment(self, segment_id: int | None) -> Segment | None:
        return next((s for s in self.segments if s.id == segment_id), None)

    def add_new(self, segment: Segment) -> None:
        """Add an object just made (not one coming back): it takes the label picked for new objects."""
        if self.new_label is not None:
            segment.label_id, segment.color = self.new_label
        self.add(segment)

    def add(self, segment: Segment) -> None:
        """Add an object in the order objects were made (a returning one goes back to its place); make it active."""
        place = next((i for i, other in enumerate(self.segments) if other.id > segment.id), len(self.segments))
        self.segments.insert(place, segment)
        self.active_id = segment.id
        self.next_id = max(self.next_id, segment.id + 1)

    def remove(self, segment_id: int) -> None:
        """Delete an object and its drawings (the canvas is remounted without them)."""
        self._drop(segment_id)
        self.applied = [entry for entry in self.applied if entry.segment_id != segment_id]
        self._redraw()

    def move_drawings(self, fit: BackgroundFit, view: View) -> None:
        """Remount the canvas for ``view`` (fitted by ``fit``), its drawings where their image points now lie.

        The browser writes the moved drawings back in its own way; :meth:`sync` knows them by their image points.
        """
        # Each drawing takes its new Fabric object (and with it a new key) at once: a drawing made in the new view
        # that happens to equal an old one's object is not taken for it.
        self.applied = [replace(entry, shape=replace(entry.shape, raw=placed(entry.shape, fit)))
                        for entry in self.applied if self.segment(entry.segment_id) is not None]
        objects = [entry.shape.raw for entry in self.applied] + [placed(shape, fit) for shape in self.carried]
        self.drawing = {"objects": objects} if objects else None
        self.carried = []
        self.drawing_view = view
        self._taken_back.clear()
        self._dropped.clear()
        self.generation += 1

    def clear(self) -> None:
        self.segments = []
        self.active_id = None
        self.applied = []
        self._redraw()

    def sync(self, shapes: Sequence[Shape], segmenter: Segmenter, embedding: Embedding, size: tuple[int, int]) -> list[PromptError]:
        """Bring the objects in step with the drawings now on the canvas; return why drawings were refused.

        ``size`` is the image's (width, height). Drawings are matched by key,
        so reordering them on the canvas changes nothing. One drawing replaced
        by another (both boxes or regions, or both points) in one update is
        taken as an edit: its object is rebuilt with the new one in its place.
        """
        ctx = _Context(segmenter, embedding, size)
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
        self._same_drawings(gone, new)
        returning = [shape for shape in new if shape.key in self._dropped or shape.key in self._taken_back]
        edit = None
        if len(gone) == 1 and len(new) == 1 and not returning and self._editable(gone[0], new[0], ctx):
            edit = (gone[0], new.pop())
        for segment_id in dict.fromkeys(entry.segment_id for entry in gone if entry.segment_id is not None):
            self._rebuild(segment_id, gone, edit, ctx)
        self.applied = [entry for entry in self.applied if entry not in gone]
        for shape in new:
            try:
                self._apply(shape, ctx)
            except PromptError as exc:
                self.applied.append(Applied(shape))
                ctx.refused.append(exc)
        if ctx.decode_seconds is not None:
            self.last_decode_ms = ctx.decode_seconds * 1000
        if edit is not None or len(returning) < len(new):
            # A drawing that is not a redo starts the canvas's redo history afresh.
            self._taken_back.clear()
            self._dropped.clear()
        return ctx.refused

    def _same_drawings(self, gone: list[Applied], new: list[Shape]) -> None:
        """Drawings the browser wrote anew (a canvas remounted at another zoom) are the same drawings: same kind,
        same image points within a pixel. They keep their objects and history; only their Fabric objects change."""
        for entry in list(gone):
            twin = next((shape for shape in new if shape.same_as(entry.shape)), None)
            if twin is not None:
                gone.remove(entry)
                new.remove(twin)
                self._swap(entry, replace(entry, shape=replace(twin, points=entry.shape.points, width=entry.shape.width)))

    def _editable(self, old: Applied, shape: Shape, ctx: _Context) -> bool:
        """Whether ``shape`` can take ``old``'s place: the same sort, an object to rebuild, a prompt for this image."""
        return old.shape.makes_object == shape.makes_object and self.segment(old.segment_id) is not None and ctx.usable(shape)

    def _rebuild(self, segment_id: int, gone: list[Applied], edit: tuple[Applied, Shape] | None, ctx: _Context) -> None:
        """Rebuild one object from its drawings, from the first one taken back or edited on."""
        edited, replacement = edit if edit is not None else (None, None)
        chain = [entry for entry in self.applied if entry.segment_id == segment_id]
        segment = self.segment(segment_id)
        for entry in chain:
            # Points (and, while their object is gone, every drawing of it) return to it on a redo;
            # the drawing that made an object is remembered with the object instead.
            if entry in gone and entry is not edited and (entry.before is not None or segment is None):
                _remember(self._taken_back, entry.key, segment_id)
        if segment is None:  # the drawing that made it is gone already
            return
        first = next(i for i, entry in enumerate(chain) if entry in gone)
        restore_to = chain[first].before  # None for the drawing that made the object
        if chain[first] is edited:
            chain[first] = self._swap(edited, Applied(replacement, segment_id))
        elif restore_to is None:
            self._take_back_object(segment, chain)
            return
        if restore_to is None:
            segment.restore(ctx.fresh(chain[first].shape))
            first += 1
        else:
            segment.restore(restore_to)
        self._replay(segment, [entry for entry in chain[first:] if entry not in gone], ctx)

    def _take_back_object(self, segment: Segment, chain: list[Applied]) -> None:
        """The drawing that made an object is gone: the object goes, as that drawing made it, until a redo."""
        if len(chain) > 1 and chain[1].before is not None:
            segment.restore(chain[1].before)
        self._drop(segment.id)
        _remember(self._dropped, chain[0].key, segment)

    def _apply(self, shape: Shape, ctx: _Context) -> None:
        """A box or region makes an object, a point refines the active one; a redone drawing returns to its own."""
        returning = _recall(self._dropped, shape.key)
        if returning is not None:
            # Its points that stayed on the canvas apply to it again.
            points = [entry for entry in self.applied if entry.segment_id == returning.id]
            self.add(returning)
            self.applied.insert(self.applied.index(points[0]) if points else len(self.applied), Applied(shape, returning.id))
            self._replay(returning, points, ctx)
            return
        owner = _recall(self._taken_back, shape.key)
        if owner is not None and self.segment(owner) is None:
            self.applied.append(Applied(shape, owner))  # its object is gone too: it waits for it
            return
        target = None if shape.makes_object else (self.segment(owner) or self.active)
        if target is None:
            if shape.kind == "stroke":
                raise PromptError("The brush paints on the selected object: make or select one first.")
            if shape.label == EXCLUDE:
                raise PromptError("An exclude point needs an object to refine: draw a box or region first.")
            state = ctx.fresh(shape)
            target = Segment.create(self.next_id, state)
            self.add_new(target)
            self.applied.append(Applied(shape, target.id))
        else:
            before = target.saved()
            ctx.change(target, shape)
            self.active_id = target.id
            self.applied.append(Applied(shape, target.id, before))

    def _replay(self, segment: Segment, points: list[Applied], ctx: _Context) -> None:
        """Refine ``segment`` with each point or stroke in turn, recording its state before each; a refused one is let go."""
        for entry in points:
            before = segment.saved()
            try:
                ctx.change(segment, entry.shape)
            except PromptError as exc:
                self._swap(entry, Applied(entry.shape))
                ctx.refused.append(exc)
                continue
            self._swap(entry, Applied(entry.shape, segment.id, before))

    def _swap(self, old: Applied, new: Applied) -> Applied:
        self.applied[self.applied.index(old)] = new
        return new

    def _drop(self, segment_id: int) -> None:
        self.segments = [s for s in self.segments if s.id != segment_id]
        if self.active_id == segment_id:
            self.active_id = self.segments[-1].id if self.segments else None

    def _redraw(self) -> None:
        """Remount the canvas with the drawings whose objects stand (refused and waiting ones are left off)."""
        self.applied = [entry for entry in self.applied if self.segment(entry.segment_id) is not None]
        self.drawing = {"objects": [entry.shape.raw for entry in self.applied]} if self.applied else None
        # A remounted canvas starts a new undo history: nothing taken back can come back.
        self._taken_back.clear()
        self._dropped.clear()
        self.generation += 1
