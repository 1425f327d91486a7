from __future__ import annotations

import cv2
import numpy as np
import pytest

from samdash.errors import PromptError
from samdash.prompts import (
    EXCLUDE,
    INCLUDE,
    Prompt,
    box_prompt,
    clip_box,
    freehand_prompt,
    is_closed,
    point_prompt,
    region_prompt,
    stroke_prompt,
)


def _circle(cx: float, cy: float, r: float, n: int = 60, gap: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi * (1 - gap), n)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def test_box_corners_are_ordered_and_clipped():
    assert clip_box((300, 250, -20, 10), 200, 100) == (0.0, 10.0, 200.0, 100.0)
    assert box_prompt((50, 60, 10, 20), 200, 100).box == (10.0, 20.0, 50.0, 60.0)


def test_zero_area_box_is_refused():
    with pytest.raises(PromptError, match="no area"):
        box_prompt((10, 10, 10, 80), 200, 100)


def test_points_outside_the_image_are_refused():
    with pytest.raises(PromptError, match="outside"):
        point_prompt((250, 10), INCLUDE, 200, 100)


def test_a_prompt_needs_a_box_or_points():
    with pytest.raises(PromptError):
        Prompt()
    with pytest.raises(PromptError, match="Exclude points alone"):
        point_prompt((10, 10), EXCLUDE, 200, 100)


def test_closed_loop_becomes_box_plus_points_inside():
    loop = _circle(100, 80, 40)
    assert is_closed(loop)
    prompt = freehand_prompt(loop, 300, 200)
    assert prompt.box == pytest.approx((60, 40, 140, 120), abs=0.5)
    assert prompt.mask_input is None
    assert 1 <= len(prompt.points) <= 3 and np.all(prompt.labels == INCLUDE)
    contour = loop.astype(np.float32).reshape(-1, 1, 2)
    for x, y in prompt.points:
        assert cv2.pointPolygonTest(contour, (float(x), float(y)), True) > 10


def test_region_points_stay_inside_a_concave_shape():
    # An L shape: its bounding-box centre lies outside the region.
    shape = np.array([[0, 0], [100, 0], [100, 20], [20, 20], [20, 100], [0, 100]], np.float64) + 50
    prompt = region_prompt(shape, 300, 300)
    contour = shape.astype(np.float32).reshape(-1, 1, 2)
    for x, y in prompt.points:
        assert cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0


def test_region_on_a_huge_image_is_cheap_and_inside():
    prompt = region_prompt(_circle(2000, 1500, 1200), 4000, 3000)
    assert np.all(np.linalg.norm(prompt.points - (2000, 1500), axis=1) < 1200)


def test_open_stroke_becomes_include_points_along_it():
    stroke = np.array([[10, 10], [60, 10], [110, 10]], np.float64)
    assert not is_closed(stroke)
    prompt = freehand_prompt(stroke, 200, 100)
    assert prompt.box is None
    assert np.allclose(prompt.points[:, 1], 10)
    assert prompt.points[0, 0] == pytest.approx(10) and prompt.points[-1, 0] == pytest.approx(110)


def test_stroke_outside_the_image_is_refused():
    with pytest.raises(PromptError, match="outside"):
        stroke_prompt(np.array([[500, 500], [600, 600]]), 200, 100)


def test_region_with_no_area_is_refused():
    with pytest.raises(PromptError):
        region_prompt(np.array([[10, 10], [50, 10], [90, 10]]), 200, 100)


def test_refinement_appends_a_point_and_keeps_the_box():
    logits = np.zeros((1, 256, 256), np.float32)
    prompt = box_prompt((10, 10, 50, 50), 200, 100).refined((20, 20), EXCLUDE, logits)
    assert prompt.box == (10.0, 10.0, 50.0, 50.0)
    assert prompt.points.tolist() == [[20.0, 20.0]] and prompt.labels.tolist() == [EXCLUDE]
    assert prompt.mask_input is logits
