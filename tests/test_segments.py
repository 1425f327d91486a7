from __future__ import annotations

import numpy as np

from samdash.engine import EmbeddingCache
from samdash.grabcut import GrabCutEngine
from samdash.prompts import EXCLUDE, box_prompt
from samdash.segments import Segment


def test_refining_feeds_back_the_picked_candidates_logits(tiny_engine, scene):
    embedding = tiny_engine.embed(scene, "scene")
    prompt = box_prompt((120, 100, 320, 300), 640, 480)
    segment = Segment.create(1, prompt, tiny_engine.predict(embedding, prompt))
    segment.pick = (segment.candidates.best + 1) % 3
    picked_logits = segment.candidates.logits[segment.pick]
    segment.refine(tiny_engine, embedding, (150.0, 120.0), EXCLUDE)
    np.testing.assert_array_equal(segment.prompt.mask_input[0], picked_logits)
    assert segment.prompt.labels.tolist() == [EXCLUDE]
    assert segment.pick == segment.candidates.best
    assert (segment.name, segment.color) == ("object 1", (230, 159, 0))


def test_a_model_switch_mid_object_drops_the_foreign_logits(tiny_engine, scene):
    grabcut = GrabCutEngine(EmbeddingCache(1 << 26))
    prompt = box_prompt((120, 100, 320, 300), 640, 480)
    segment = Segment.create(1, prompt, grabcut.predict(grabcut.embed(scene, "scene"), prompt))
    segment.refine(tiny_engine, tiny_engine.embed(scene, "scene"), (150.0, 120.0), EXCLUDE)
    assert segment.prompt.mask_input is None
    assert segment.candidates.source == tiny_engine.cache_id and len(segment.candidates) == 3
