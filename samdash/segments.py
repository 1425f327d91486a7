"""The segmented objects of one image: what the page lists, draws and exports.

An object is plain data: its prompt, SAM's candidates (low-resolution logits
and scores), which one is picked, and the picked mask run-length encoded. It
holds no engine, model or embedding, and no full-size array: the pixels are
decoded on demand into a small shared cache (``samdash.masks``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from samdash.brush import Stroke, paint
from samdash.engine import Candidates, Embedding, MaskGeometry, Segmenter
from samdash.masks import CompactMask
from samdash.prompts import Prompt, box_prompt
from samdash.render import Color, Layer, contours_of, palette_color

# The side of the in-or-out picture kept as "logits" by an object whose mask SAM did not make (for thumbnails).
_PREVIEW_SIDE = 256


@dataclass(frozen=True)
class SegmentState:
    """What a refinement changes, kept so that undoing it on the canvas restores the object.

    ``prompt`` is kept without its mask input: that is the previous state's
    picked logits, which the undo history already holds. ``mask`` is the
    picked candidate's with the brush strokes painted on top.
    """

    prompt: Prompt
    candidates: Candidates
    pick: int
    mask: CompactMask
    strokes: tuple[Stroke, ...] = ()

    @classmethod
    def of(cls, prompt: Prompt, candidates: Candidates, pick: int | None = None, strokes: tuple[Stroke, ...] = ()) -> "SegmentState":
        """The state a prediction gives, its best candidate picked unless told otherwise, ``strokes`` on top."""
        pick = candidates.best if pick is None else pick
        return cls(prompt.without_mask_input(), candidates, pick, CompactMask.encode(paint(candidates.mask(pick), strokes)), strokes)

    @classmethod
    def fixed(cls, mask: np.ndarray, score: float | None, source: str) -> "SegmentState":
        """An object whose mask SAM did not make (imported, or a polygon drawn by hand): exact, with its box as the
        prompt and no logits SAM can take back, so refining it starts from the box and the new points."""
        height, width = mask.shape
        compact = CompactMask.encode(mask)
        x, y, w, h = compact.bbox
        scale = _PREVIEW_SIDE / max(height, width)
        small = (max(1, round(height * scale)), max(1, round(width * scale)))
        preview = cv2.resize(mask.astype(np.uint8), small[::-1], interpolation=cv2.INTER_AREA) > 0
        candidates = Candidates(
            np.array([math.nan if score is None else score], np.float32), preview[None], MaskGeometry((height, width), small),
            source=source,
        )
        return cls(box_prompt((x, y, x + w, y + h), width, height), candidates, 0, compact)

    def stroked(self, stroke: Stroke) -> "SegmentState":
        """This state with one more brush stroke."""
        return replace(self, strokes=(*self.strokes, stroke), mask=CompactMask.encode(paint(self.mask.decode(), (stroke,))))

    def compacted(self) -> "SegmentState":
        """The same state in less memory, for undo history (see ``Candidates.compacted``)."""
        return replace(self, candidates=self.candidates.compacted(self.pick))


@dataclass(eq=False)
class Segment:
    """One object: a name, a colour, a label (its class, by id in the project's label set), and the state its
    prompts made."""

    id: int
    name: str
    color: Color
    state: SegmentState
    visible: bool = True
    label_id: int | None = None
    # Outline of the picked mask, traced once: reruns redraw it without decoding the mask again.
    _outline: tuple[CompactMask, list[np.ndarray]] | None = field(default=None, repr=False)

    @property
    def prompt(self) -> Prompt:
        return self.state.prompt

    @property
    def candidates(self) -> Candidates:
        return self.state.candidates

    @property
    def pick(self) -> int:
        return self.state.pick

    @pick.setter
    def pick(self, index: int) -> None:
        """Choose another candidate: its mask replaces the picked one."""
        if index != self.state.pick:
            self.state = SegmentState.of(self.prompt, self.candidates, index, self.state.strokes)

    @property
    def compact_mask(self) -> CompactMask:
        return self.state.mask

    @property
    def mask(self) -> np.ndarray:
        """The full-size boolean mask (read-only), decoded on demand."""
        return self.state.mask.decode()

    @property
    def score(self) -> float:
        return float(self.candidates.scores[self.pick])

    @property
    def area(self) -> int:
        return self.state.mask.area

    def outline(self) -> list[np.ndarray]:
        """Contours of the picked mask in image pixels, traced once per mask."""
        if self._outline is None or self._outline[0] is not self.state.mask:
            self._outline = (self.state.mask, contours_of(self.mask))
        return self._outline[1]

    def traced_outline(self) -> list[np.ndarray] | None:
        """The outline of the picked mask if it has been traced already; None otherwise (nothing is traced here)."""
        return self._outline[1] if self._outline is not None and self._outline[0] is self.state.mask else None

    def keep_outline(self, contours: list[np.ndarray]) -> None:
        """The outline of the picked mask, traced earlier (read back with the object), so it is not traced again."""
        self._outline = (self.state.mask, contours)

    def layer(self, color: Color | None = None) -> Layer:
        """What the renderer draws for this object (in its own colour unless another is given)."""
        return Layer(color or self.color, self.outline())

    @classmethod
    def create(cls, segment_id: int, state: SegmentState) -> "Segment":
        """A new object with a default name and colour."""
        return cls(id=segment_id, name=f"object {segment_id}", color=palette_color(segment_id - 1), state=state)

    def refine(self, segmenter: Segmenter, embedding: Embedding, point: tuple[float, float], label: int) -> None:
        """Add an include/exclude point, feeding back the picked candidate's logits, and re-pick the best; the brush
        strokes go on top of the new mask.

        Logits from another engine (the model was switched meanwhile, or none made the mask) mean nothing to this
        one and are left out.
        """
        own = self.candidates.source == segmenter.cache_id
        prompt = self.prompt.refined(point, label, self.candidates.logits_of(self.pick)[None] if own else None)
        candidates = segmenter.predict(embedding, prompt)  # may refuse the prompt: change nothing before it answers
        self.restore(SegmentState.of(prompt, candidates, strokes=self.state.strokes))

    def saved(self) -> SegmentState:
        return self.state.compacted()

    def restore(self, state: SegmentState) -> None:
        self.state = state
