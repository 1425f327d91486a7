from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from samdash.engine import Embedding, EmbeddingCache, cached_embedding

from samdash.sam_engine import SamEngine
from samdash.prompts import Prompt, box_prompt, point_prompt


def _prompts(height: int, width: int) -> list[Prompt]:
    base = box_prompt((120, 100, 320, 300), width, height)
    return [
        base,
        point_prompt((220, 200), 1, width, height),
        Prompt(
            box=(400.0, 280.0, 580.0, 440.0),
            points=np.array([[480, 360], [100, 50]], np.float32),
            labels=np.array([1, 0], np.int32),
        ),
    ]


def test_masks_match_sam_predictor_bit_for_bit(tiny_sam, tiny_engine, scene):
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(scene)
    embedding = tiny_engine.embed(scene, "scene")
    for prompt in _prompts(*scene.shape[:2]):
        expected_masks, expected_scores, expected_logits = predictor.predict(
            point_coords=prompt.points if len(prompt.points) else None,
            point_labels=prompt.labels if len(prompt.points) else None,
            box=np.asarray(prompt.box) if prompt.box is not None else None,
        )
        candidates = tiny_engine.predict(embedding, prompt)
        np.testing.assert_array_equal(candidates.masks, expected_masks)
        np.testing.assert_allclose(candidates.scores, expected_scores, atol=1e-5)
        np.testing.assert_allclose(candidates.logits, expected_logits, atol=1e-5)


def test_refinement_feeds_previous_logits_like_sam_predictor(tiny_sam, tiny_engine, scene):
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(scene)
    embedding = tiny_engine.embed(scene, "scene")
    first = tiny_engine.predict(embedding, box_prompt((120, 100, 320, 300), 640, 480))
    logits = first.logits[first.best][None]
    refined_prompt = box_prompt((120, 100, 320, 300), 640, 480).refined((150, 120), 0, logits)
    refined = tiny_engine.predict(embedding, refined_prompt)
    expected_masks, expected_scores, _ = predictor.predict(
        point_coords=refined_prompt.points,
        point_labels=refined_prompt.labels,
        box=np.asarray(refined_prompt.box),
        mask_input=logits,
    )
    np.testing.assert_array_equal(refined.masks, expected_masks)
    np.testing.assert_allclose(refined.scores, expected_scores, atol=1e-5)


def test_one_encode_per_image_however_many_prompts(tiny_engine, scene):
    other = np.ascontiguousarray(scene[::-1])
    for i in range(10):
        embedding = tiny_engine.embed(scene, "scene")
        tiny_engine.predict(embedding, point_prompt((50 + 40 * i, 200), 1, 640, 480))
    assert tiny_engine.encoder_calls == 1
    tiny_engine.embed(other, "other")
    assert tiny_engine.encoder_calls == 2


def test_cache_is_shared_between_engines_of_one_model(tiny_sam, scene):
    cache = EmbeddingCache(64 << 20)
    first, second = SamEngine(tiny_sam, "tiny", cache), SamEngine(tiny_sam, "tiny", cache)
    assert first.embed(scene, "scene") is second.embed(scene, "scene")
    assert first.encoder_calls + second.encoder_calls == 1


def test_cache_evicts_least_recently_used_within_its_byte_bound():
    def item(name: str) -> Embedding:
        return Embedding(("m", name), (1, 1), (1, 1), None, nbytes=40, encode_seconds=0.0)

    cache = EmbeddingCache(max_bytes=100)
    for name in "abc":
        cache.get_or_compute(("m", name), lambda name=name: item(name))
    assert len(cache) == 2 and cache.nbytes == 80
    assert cache.get(("m", "a")) is None
    cache.get(("m", "b"))
    cache.get_or_compute(("m", "d"), lambda: item("d"))
    assert cache.get(("m", "c")) is None and cache.get(("m", "b")) is not None


def test_concurrent_requests_for_one_image_encode_once(tiny_engine, scene):
    barrier = threading.Barrier(6)
    results = []

    def work() -> None:
        barrier.wait()
        results.append(tiny_engine.embed(scene, "scene"))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tiny_engine.encoder_calls == 1
    assert all(result is results[0] for result in results)


def test_eight_threads_get_what_one_thread_gets(tiny_sam, scene):
    rng = np.random.default_rng(3)
    images = [np.ascontiguousarray(np.roll(scene, shift=37 * i, axis=1)) for i in range(8)]
    jobs = []
    for i, image in enumerate(images):
        prompts = [
            box_prompt(tuple(rng.uniform([0, 0, 320, 240], [300, 220, 640, 480])), 640, 480),
            point_prompt(tuple(rng.uniform([0, 0], [640, 480])), 1, 640, 480),
        ]
        jobs.append((f"img{i}", image, prompts))

    def run(engine: SamEngine, job) -> list[tuple[np.ndarray, np.ndarray]]:
        name, image, prompts = job
        embedding = engine.embed(image, name)
        return [(c.masks, c.scores) for c in (engine.predict(embedding, p) for p in prompts)]

    serial_engine = SamEngine(tiny_sam, "tiny", EmbeddingCache(256 << 20))
    expected = [run(serial_engine, job) for job in jobs]

    shared = SamEngine(tiny_sam, "tiny", EmbeddingCache(256 << 20))
    got: dict[int, list] = {}
    barrier = threading.Barrier(len(jobs))

    def worker(i: int) -> None:
        barrier.wait()
        got[i] = run(shared, jobs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, results in enumerate(expected):
        for (masks, scores), (got_masks, got_scores) in zip(results, got[i]):
            np.testing.assert_array_equal(got_masks, masks)
            np.testing.assert_allclose(got_scores, scores, atol=1e-6)


def test_candidate_masks_are_made_on_demand_and_not_kept(tiny_engine, scene):
    candidates = tiny_engine.predict(tiny_engine.embed(scene, "scene"), box_prompt((10, 10, 200, 200), 640, 480))
    before = candidates.nbytes
    first = candidates.mask(0)
    assert first.shape == scene.shape[:2] and first.dtype == bool
    again = candidates.mask(0)
    assert again is not first and np.array_equal(again, first)
    assert candidates.nbytes == before
    assert 0 <= candidates.best < len(candidates) == 3


def test_an_embedding_is_sams_feature_map_and_a_prediction_its_low_res_logits(tiny_engine, scene):
    from samdash.engine import MaskGeometry

    embedding = tiny_engine.embed(scene, "scene")
    assert isinstance(embedding.features, torch.Tensor)
    assert embedding.features.shape == (1, 256, 64, 64)
    assert embedding.original_size == (480, 640) and embedding.input_size == (768, 1024)
    assert embedding.nbytes == 256 * 64 * 64 * 4
    candidates = tiny_engine.predict(embedding, box_prompt((10, 10, 200, 200), 640, 480))
    assert candidates.logits.shape == (3, 256, 256) and candidates.logits.dtype == np.float32
    assert candidates.geometry == MaskGeometry((480, 640), (768, 1024), 1024)
    assert candidates.source == tiny_engine.cache_id


@pytest.mark.parametrize("bad", [(5, 5, 5, 90), (700, 10, 900, 90)])
def test_boxes_without_area_in_the_image_are_refused(bad):
    from samdash.errors import PromptError

    with pytest.raises(PromptError, match="no area"):
        box_prompt(bad, 640, 480)


def test_previews_come_from_the_part_of_the_logits_that_covers_the_image():
    from samdash.engine import Candidates, MaskGeometry

    # SAM-style logits: a 480×640 image fills the top 192×256 of the 256×256 grid; a disc at image (320, 240), r 120.
    yy, xx = np.mgrid[:256, :256]
    logits = np.where((xx - 128) ** 2 + (yy - 96) ** 2 < 48**2, 5.0, -5.0).astype(np.float32)[None]
    candidates = Candidates(np.array([0.9]), logits, MaskGeometry((480, 640), (768, 1024), 1024))
    small = candidates.preview(0, (160, 120))
    ys, xs = np.nonzero(small)
    assert small.shape == (120, 160)
    assert abs(xs.mean() - 80) < 1 and abs(ys.mean() - 60) < 1
    assert abs((xs.max() - xs.min()) / 2 - 30) < 2


def test_logits_that_cover_the_image_are_scaled_to_it():
    from samdash.engine import Candidates, MaskGeometry

    logits = np.full((1, 120, 160), -1, np.int8)
    logits[0, 25:75, 50:100] = 1
    candidates = Candidates(np.array([np.nan]), logits, MaskGeometry((480, 640), (120, 160)))
    mask = candidates.mask(0)
    assert mask.shape == (480, 640) and mask[102:298, 202:398].all() and not mask[:96].any()
    assert abs(int(mask.sum()) - 200 * 200) < 4 * 200 * 2
    assert candidates.preview(0, (160, 120)).sum() == 50 * 50


def test_candidates_hold_no_engine_and_no_full_size_mask(tiny_engine, scene):
    import gc
    import weakref

    embedding = tiny_engine.embed(scene, "scene")
    candidates = tiny_engine.predict(embedding, box_prompt((120, 100, 320, 300), 640, 480))
    candidates.mask(0)
    referents = gc.get_referents(*gc.get_referents(candidates))
    assert not any(isinstance(obj, (SamEngine, torch.nn.Module, Embedding)) for obj in referents)
    assert candidates.nbytes == 3 * 4 + 3 * 256 * 256 * 4  # scores and low-res logits, nothing full-size
    embedding_ref = weakref.ref(embedding)
    tiny_engine.cache.discard(lambda key: False)
    del embedding
    gc.collect()
    assert embedding_ref() is None  # an evicted embedding is freed: candidates do not hold it
    assert candidates.mask(0).shape == (480, 640)


def test_compacted_candidates_give_the_same_masks_in_half_the_memory(tiny_engine, scene):
    embedding = tiny_engine.embed(scene, "scene")
    candidates = tiny_engine.predict(embedding, box_prompt((120, 100, 320, 300), 640, 480))
    compact = candidates.compacted(keep=1)
    assert compact.logits.dtype == np.float16 and compact.nbytes < 0.85 * candidates.nbytes
    np.testing.assert_array_equal(compact.logits_of(1), candidates.logits_of(1))
    np.testing.assert_array_equal(compact.mask(1), candidates.mask(1))
    for index in (0, 2):
        exact, close = candidates.mask(index), compact.mask(index)
        assert (exact != close).sum() <= 0.001 * max(1, exact.sum())


def test_a_cached_embedding_is_found_without_encoding(tiny_engine, scene):
    assert cached_embedding(tiny_engine, "scene") is None
    embedding = tiny_engine.embed(scene, "scene")
    assert cached_embedding(tiny_engine, "scene") is embedding and tiny_engine.encoder_calls == 1
    assert cached_embedding(tiny_engine, "another image") is None
