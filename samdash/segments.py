"""The segmented objects of one image: what the page lists, draws and exports."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from samdash.engine import Candidates, Embedding, Segmenter
from samdash.prompts import Prompt
from samdash.render import Color, Layer, contours_of, palette_color


@dataclass(frozen=True)
class SegmentState:
    """What a refinement changes, kept so that undoing it on the canvas restores the object."""

    prompt: Prompt
    candidates: Candidates
    pick: int


@dataclass(eq=False)
class Segment:
    """One object: the prompt that made it, SAM's candidates, and which one the user picked."""

    id: int
    name: str
    color: Color
    prompt: Prompt
    candidates: Candidates
    pick: int
    visible: bool = True
    # Traced outlines per candidate index: reruns redraw them without tracing again.
    _contours: dict[int, list[np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def mask(self) -> np.ndarray:
        return self.candidates.mask(self.pick)

    @property
    def score(self) -> float:
        return float(self.candidates.scores[self.pick])

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def layer(self, color: Color | None = None) -> Layer:
        """What the renderer draws for this object (in its own colour unless another is given)."""
        if self.pick not in self._contours:
            self._contours[self.pick] = contours_of(self.mask)
        return Layer(self.mask, color or self.color, self._contours[self.pick])

    @classmethod
    def create(cls, segment_id: int, prompt: Prompt, candidates: Candidates) -> "Segment":
        """A new object with a default name and colour, its best candidate picked."""
        return cls(
            id=segment_id,
            name=f"object {segment_id}",
            color=palette_color(segment_id - 1),
            prompt=prompt,
            candidates=candidates,
            pick=candidates.best,
        )

    def refine(self, segmenter: Segmenter, embedding: Embedding, point: tuple[float, float], label: int) -> None:
        """Add an include/exclude point, feeding back the picked candidate's logits, and re-pick the best.

        Logits from another engine (the model was switched meanwhile) mean nothing to this one and are left out.
        """
        logits = self.candidates.logits
        own = logits is not None and self.candidates.source == segmenter.cache_id
        prompt = self.prompt.refined(point, label, logits[self.pick][None] if own else None)
        candidates = segmenter.predict(embedding, prompt)  # may refuse the prompt: change nothing before it answers
        self.restore(SegmentState(prompt, candidates, candidates.best))

    def saved(self) -> SegmentState:
        return SegmentState(self.prompt, self.candidates, self.pick)

    def restore(self, state: SegmentState) -> None:
        self.prompt, self.candidates, self.pick = state.prompt, state.candidates, state.pick
        self._contours.clear()
