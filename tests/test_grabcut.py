from __future__ import annotations

import threading

import numpy as np
import pytest

from samdash.engine import Candidates, EmbeddingCache
from samdash.errors import PromptError
from samdash.grabcut import GrabCutEngine
from samdash.prompts import EXCLUDE, INCLUDE, Prompt, box_prompt, point_prompt, region_prompt

HEIGHT, WIDTH = 480, 640
# The object: a red ellipse centred at (CX, CY) with semi-axes AX, AY.
CX, CY, AX, AY = 280, 240, 110, 80
# An adjacent blue block that touches the ellipse's right end.
DISTRACTOR = (385, 195, 470, 285)
DISTRACTOR_CENTRE = (440.0, 240.0)
TIGHT_BOX = (CX - AX - 25, CY - AY - 25, CX + AX + 25, CY + AY + 25)
# Loose enough to take the distractor in as well.
LOOSE_BOX = (CX - AX - 40, CY - AY - 40, DISTRACTOR[2] + 20, CY + AY + 40)


def _scene(
    height: int = HEIGHT,
    width: int = WIDTH,
    ellipse: tuple[float, float, float, float] = (CX, CY, AX, AY),
    distractor: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy green-grey image with a noisy red ellipse (and optionally a blue block), and the ellipse's true mask."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 36, size=(height, width, 3), dtype=np.uint8)
    image += np.array([72, 112, 72], np.uint8)
    cx, cy, ax, ay = ellipse
    yy, xx = np.ogrid[:height, :width]
    truth = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 < 1
    image[truth] += np.array([110, 0, 0], np.uint8)
    image[truth, 1:] -= np.array([60, 30], np.uint8)
    if distractor:
        x0, y0, x1, y1 = DISTRACTOR
        block = np.zeros_like(truth)
        block[y0:y1, x0:x1] = True
        image[block] = rng.integers(0, 36, size=(block.sum(), 3), dtype=np.uint8) + np.array([45, 55, 170], np.uint8)
        truth &= ~block
    return image, truth


def _iou(mask: np.ndarray, truth: np.ndarray) -> float:
    return float((mask & truth).sum() / (mask | truth).sum())


def _excluding(box: tuple[float, float, float, float], *points: tuple[float, float]) -> Prompt:
    return Prompt(box=box, points=np.array(points, np.float32), labels=np.full(len(points), EXCLUDE, np.int32))


def _best(candidates: Candidates) -> np.ndarray:
    return candidates.mask(candidates.best)


@pytest.fixture
def engine() -> GrabCutEngine:
    return GrabCutEngine(EmbeddingCache(256 << 20))


@pytest.fixture(scope="module")
def plain() -> tuple[np.ndarray, np.ndarray]:
    return _scene()


@pytest.fixture(scope="module")
def cluttered() -> tuple[np.ndarray, np.ndarray]:
    return _scene(distractor=True)


def test_box_around_the_object(engine, plain):
    image, truth = plain
    embedding = engine.embed(image, "plain")
    candidates = engine.predict(embedding, box_prompt(TIGHT_BOX, WIDTH, HEIGHT))
    assert _iou(_best(candidates), truth) >= 0.9
    assert candidates.masks.shape == (len(candidates), HEIGHT, WIDTH) and candidates.masks.dtype == bool
    # GrabCut predicts no quality: no score is made up, and the first candidate is the pick.
    assert np.isnan(candidates.scores).all() and candidates.best == 0
    assert candidates.logits.dtype == np.int8 and candidates.logits.shape == (len(candidates), HEIGHT, WIDTH)
    assert candidates.nbytes < len(candidates) * HEIGHT * WIDTH // 8 + 64  # kept as bits
    assert set(np.unique(candidates.logits)) <= {-1.0, 1.0}
    assert 1 <= len(candidates) <= 3
    assert len({candidates.logits[i].tobytes() for i in range(len(candidates))}) == len(candidates)


def test_holes_are_filled_in_the_first_candidate_and_kept_in_another(engine):
    image, truth = _scene()
    yy, xx = np.ogrid[:HEIGHT, :WIDTH]
    hole = (xx - CX) ** 2 + (yy - CY) ** 2 < 20**2
    image[hole] = np.roll(image, 200, axis=0)[hole]  # background texture from rows above the ellipse
    candidates = engine.predict(engine.embed(image, "donut"), box_prompt(TIGHT_BOX, WIDTH, HEIGHT))
    assert _iou(candidates.mask(0), truth) >= 0.9 and candidates.mask(0)[hole].all()
    others = [candidates.mask(i) for i in range(1, len(candidates))]
    assert any(_iou(mask, truth & ~hole) >= 0.9 and not mask[hole].any() for mask in others)


def test_exclude_point_rejects_an_adjacent_object_inside_a_loose_box(engine, cluttered):
    image, truth = cluttered
    embedding = engine.embed(image, "cluttered")
    x0, y0, x1, y1 = DISTRACTOR
    without = _best(engine.predict(embedding, box_prompt(LOOSE_BOX, WIDTH, HEIGHT)))
    assert without[y0:y1, x0:x1].mean() > 0.5  # the box alone takes the distractor too
    mask = _best(engine.predict(embedding, _excluding(LOOSE_BOX, DISTRACTOR_CENTRE)))
    assert mask[y0:y1, x0:x1].mean() < 0.05
    assert _iou(mask, truth) >= 0.9


def test_region_drawn_around_the_object(engine, plain):
    image, truth = plain
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    polygon = np.stack([CX + (AX + 20) * np.cos(angles), CY + (AY + 20) * np.sin(angles)], axis=1)
    candidates = engine.predict(engine.embed(image, "plain"), region_prompt(polygon, WIDTH, HEIGHT))
    assert _iou(_best(candidates), truth) >= 0.9


@pytest.mark.parametrize("axes", [(60, 45), (200, 150)], ids=["small", "larger-than-the-window"])
def test_include_point_alone(engine, axes):
    image, truth = _scene(ellipse=(WIDTH / 2, HEIGHT / 2, *axes))
    embedding = engine.embed(image, f"point-{axes}")
    candidates = engine.predict(embedding, point_prompt((WIDTH / 2 + 10, HEIGHT / 2 - 5), INCLUDE, WIDTH, HEIGHT))
    assert _iou(_best(candidates), truth) >= 0.9


def test_refinement_feeds_the_previous_logits_back(engine, cluttered):
    image, truth = cluttered
    embedding = engine.embed(image, "cluttered")
    first_prompt = box_prompt(LOOSE_BOX, WIDTH, HEIGHT)
    first = engine.predict(embedding, first_prompt)
    refined_prompt = first_prompt.refined(DISTRACTOR_CENTRE, EXCLUDE, first.logits[first.best][None])
    mask = _best(engine.predict(embedding, refined_prompt))
    assert not mask[int(DISTRACTOR_CENTRE[1]), int(DISTRACTOR_CENTRE[0])]
    assert _iou(mask, truth) >= 0.9
    # A point alone refines too: the previous object stands in for the box.
    click = point_prompt((CX, CY), INCLUDE, WIDTH, HEIGHT)
    clicked = engine.predict(embedding, click)
    spot = (CX - AX + 15, CY)
    again = engine.predict(embedding, click.refined(spot, EXCLUDE, clicked.logits[clicked.best][None]))
    assert not _best(again)[spot[1], spot[0]]


def test_previous_mask_from_another_engine_is_refused(engine, plain):
    image, _ = plain
    embedding = engine.embed(image, "plain")
    sam_logits = np.zeros((1, 256, 256), np.float32)
    prompt = point_prompt((CX, CY), INCLUDE, WIDTH, HEIGHT).refined((10, 10), EXCLUDE, sam_logits)
    with pytest.raises(PromptError, match="does not come from the GrabCut engine"):
        engine.predict(embedding, prompt)


def test_twelve_megapixel_image_gives_full_resolution_masks(engine):
    height, width = 3000, 4000
    image, truth = _scene(height, width, ellipse=(1900, 1500, 700, 520))
    embedding = engine.embed(image, "12mp")
    assert embedding.original_size == (height, width) and embedding.input_size == (480, 640)
    assert embedding.nbytes == 480 * 640 * 3
    # The working copy is BGR: the red ellipse is bright in its last channel.
    assert embedding.features[240, 300, 2] > embedding.features[240, 300, 0] + 60
    candidates = engine.predict(embedding, box_prompt((1100, 900, 2700, 2100), width, height))
    mask = _best(candidates)
    assert mask.shape == (height, width) and mask.dtype == bool
    assert _iou(mask, truth) >= 0.9
    assert candidates.logits.shape[1:] == (480, 640)


def test_embedding_is_cached(engine, plain, monkeypatch):
    image, _ = plain
    calls = []
    encode = engine._encode
    monkeypatch.setattr(engine, "_encode", lambda *args: calls.append(args) or encode(*args))
    first = engine.embed(image, "plain")
    second = GrabCutEngine(engine.cache).embed(image, "plain")
    assert first is second and len(calls) == 1
    assert engine.embed(image, "plain") is first and len(calls) == 1
    assert first.key == (engine.cache_id, "plain") and first.encode_seconds >= 0


def test_box_over_the_whole_image(engine, plain):
    image, truth = plain
    candidates = engine.predict(engine.embed(image, "plain"), box_prompt((0, 0, WIDTH, HEIGHT), WIDTH, HEIGHT))
    assert candidates.masks.shape[1:] == (HEIGHT, WIDTH)
    assert _iou(_best(candidates), truth) >= 0.9


def test_box_with_nothing_in_it_gives_an_empty_candidate(engine, plain):
    image, _ = plain
    candidates = engine.predict(engine.embed(image, "plain"), box_prompt((480, 330, 630, 470), WIDTH, HEIGHT))
    assert len(candidates) >= 1 and candidates.masks.shape[1:] == (HEIGHT, WIDTH)
    assert not _best(candidates).any()


def test_excludes_that_leave_no_object_are_a_prompt_error(engine):
    flat = np.full((200, 300, 3), 120, np.uint8)
    with pytest.raises(PromptError, match="leave nothing"):
        engine.predict(engine.embed(flat, "flat"), _excluding((10, 10, 200, 150), (50, 50)))


def test_threads_get_what_one_thread_gets(engine, cluttered):
    image, _ = cluttered
    embedding = engine.embed(image, "cluttered")
    prompts = [
        box_prompt(TIGHT_BOX, WIDTH, HEIGHT),
        _excluding(LOOSE_BOX, DISTRACTOR_CENTRE),
        box_prompt((370, 180, 490, 300), WIDTH, HEIGHT),
        point_prompt(DISTRACTOR_CENTRE, INCLUDE, WIDTH, HEIGHT),
    ]
    expected = [engine.predict(embedding, prompt).logits for prompt in prompts]
    got: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(prompts))

    def work(index: int) -> None:
        barrier.wait()
        got[index] = engine.predict(embedding, prompts[index]).logits

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, logits in enumerate(expected):
        np.testing.assert_array_equal(got[index], logits)
