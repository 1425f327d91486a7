from __future__ import annotations

import gc

import numpy as np

from samdash.engine import Embedding, EmbeddingCache

from samdash.sam_engine import SamEngine
from samdash.grabcut import GrabCutEngine
from samdash.prompts import EXCLUDE, box_prompt
from samdash.segments import Segment, SegmentState


def _object(engine, scene) -> tuple[Segment, Embedding]:
    embedding = engine.embed(scene, "scene")
    prompt = box_prompt((120, 100, 320, 300), 640, 480)
    return Segment.create(1, SegmentState.of(prompt, engine.predict(embedding, prompt))), embedding


def test_refining_feeds_back_the_picked_candidates_logits(tiny_engine, scene):
    segment, embedding = _object(tiny_engine, scene)
    segment.pick = (segment.candidates.best + 1) % 3
    picked_logits = segment.candidates.logits[segment.pick]
    prompt = segment.prompt
    segment.refine(tiny_engine, embedding, (150.0, 120.0), EXCLUDE)
    expected = tiny_engine.predict(embedding, prompt.refined((150.0, 120.0), EXCLUDE, picked_logits[None]))
    without = tiny_engine.predict(embedding, prompt.refined((150.0, 120.0), EXCLUDE, None))
    np.testing.assert_array_equal(segment.candidates.logits, expected.logits)
    assert not np.array_equal(segment.candidates.logits, without.logits)
    assert segment.prompt.labels.tolist() == [EXCLUDE] and segment.prompt.mask_input is None
    assert segment.pick == segment.candidates.best
    np.testing.assert_array_equal(segment.mask, expected.mask(expected.best))
    assert (segment.name, segment.color) == ("object 1", (230, 159, 0))


def test_a_model_switch_mid_object_drops_the_foreign_logits(tiny_engine, scene):
    grabcut = GrabCutEngine(EmbeddingCache(1 << 26))
    segment, _ = _object(grabcut, scene)
    prompt = segment.prompt
    embedding = tiny_engine.embed(scene, "scene")
    segment.refine(tiny_engine, embedding, (150.0, 120.0), EXCLUDE)
    expected = tiny_engine.predict(embedding, prompt.refined((150.0, 120.0), EXCLUDE, None))
    np.testing.assert_array_equal(segment.candidates.logits, expected.logits)
    assert segment.candidates.source == tiny_engine.cache_id and len(segment.candidates) == 3


def test_picking_another_candidate_replaces_the_mask_and_its_outline(tiny_engine, scene):
    segment, _ = _object(tiny_engine, scene)
    other = (segment.pick + 1) % 3
    first_outline = segment.outline()
    segment.pick = other
    np.testing.assert_array_equal(segment.mask, segment.candidates.mask(other))
    assert segment.area == int(segment.candidates.mask(other).sum())
    assert segment.outline() is not first_outline


def test_an_object_holds_no_engine_model_embedding_or_full_size_array(tiny_engine, scene):
    segment, embedding = _object(tiny_engine, scene)
    segment.refine(tiny_engine, embedding, (150.0, 120.0), EXCLUDE)
    seen, stack = set(), [segment]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        assert not isinstance(obj, (SamEngine, Embedding)), f"an object reaches {type(obj).__name__}"
        assert not (isinstance(obj, np.ndarray) and obj.shape[-2:] == scene.shape[:2]), "an object keeps a full-size array"
        stack.extend(gc.get_referents(obj))


def test_undo_history_keeps_compact_states(tiny_engine, scene):
    segment, embedding = _object(tiny_engine, scene)
    before = segment.saved()
    assert before.candidates.logits.dtype == np.float16
    assert before.mask is segment.compact_mask  # the picked mask itself is kept exactly
    segment.refine(tiny_engine, embedding, (150.0, 120.0), EXCLUDE)
    segment.restore(before)
    np.testing.assert_array_equal(segment.mask, before.mask.decode())
