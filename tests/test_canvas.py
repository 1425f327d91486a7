from __future__ import annotations

import numpy as np
import pytest

from samdash.canvas import EXCLUDE_COLOR, INCLUDE_COLOR, BackgroundFit, drawing_key, shapes_from_canvas
from samdash.prompts import EXCLUDE, INCLUDE

# A 2000×1000 image shown at half size with a 10 px top margin.
FIT = BackgroundFit(scale_x=0.5, scale_y=0.5, offset_x=0.0, offset_y=10.0)


def _rect(left, top, width, height, **extra):
    return {"type": "rect", "left": left, "top": top, "width": width, "height": height, "strokeWidth": 3, **extra}


def test_rect_becomes_a_box_in_image_pixels():
    (shape,) = shapes_from_canvas({"objects": [_rect(100, 60, 200, 100)]}, FIT)
    assert shape.kind == "box" and shape.makes_object
    assert shape.points.tolist() == [[200.0, 100.0], [600.0, 300.0]]
    assert shape.to_prompt(2000, 1000).box == (200.0, 100.0, 600.0, 300.0)


def test_resized_rect_uses_its_scale():
    (shape,) = shapes_from_canvas({"objects": [_rect(100, 60, 200, 100, scaleX=1.5, scaleY=0.5)]}, FIT)
    assert shape.points.tolist() == [[200.0, 100.0], [800.0, 200.0]]


def test_points_take_their_label_from_their_colour():
    def circle(fill):
        # Centre at (left + radius + strokeWidth / 2, top + radius + strokeWidth / 2) = (50, 60).
        return {"type": "circle", "left": 44, "top": 54, "radius": 5, "strokeWidth": 2, "fill": fill}

    include, exclude = shapes_from_canvas({"objects": [circle(INCLUDE_COLOR), circle(EXCLUDE_COLOR)]}, FIT)
    assert include.kind == "point" and not include.makes_object
    assert include.points.tolist() == [[100.0, 100.0]]
    assert (include.label, exclude.label) == (INCLUDE, EXCLUDE)


def _freehand(path, stroke=4, **extra):
    xs = [c for cmd in path for c in cmd[1::2]]
    ys = [c for cmd in path for c in cmd[2::2]]
    return {
        "type": "path",
        "path": path,
        "left": min(xs) - stroke / 2,
        "top": min(ys) - stroke / 2,
        "width": max(xs) - min(xs),
        "height": max(ys) - min(ys),
        "strokeWidth": stroke,
        **extra,
    }


def test_freehand_path_keeps_its_absolute_coordinates():
    path = [["M", 100, 60], ["Q", 150, 60, 200, 110], ["L", 100, 160]]
    (shape,) = shapes_from_canvas({"objects": [_freehand(path)]}, FIT)
    assert shape.kind == "freehand"
    expected = [[200, 100], [300, 100], [400, 200], [200, 300]]
    np.testing.assert_allclose(shape.points, expected)


def test_moved_freehand_path_follows_its_new_position():
    path = [["M", 100, 60], ["L", 200, 160]]
    obj = _freehand(path)
    obj["left"] += 30
    (shape,) = shapes_from_canvas({"objects": [obj]}, FIT)
    np.testing.assert_allclose(shape.points, [[260, 100], [460, 300]])


def test_closed_polygon_is_an_outline_whose_pixels_are_the_object():
    points = [{"x": 100, "y": 60}, {"x": 300, "y": 60}, {"x": 300, "y": 260}, {"x": 100, "y": 260}]
    obj = {"type": "polygon", "points": points, "left": 98.5, "top": 58.5, "width": 200, "height": 200, "strokeWidth": 3}
    (shape,) = shapes_from_canvas({"objects": [obj]}, FIT)
    assert shape.kind == "outline" and shape.makes_object
    assert shape.to_prompt(2000, 1000).box == pytest.approx((200, 100, 600, 500))  # what SAM refines it from
    mask = shape.outline_mask((2000, 1000))
    assert mask[100:501, 200:601].all() and mask.sum() == 401 * 401


def test_unknown_objects_and_empty_drawings_are_ignored():
    assert shapes_from_canvas(None, FIT) == []
    assert shapes_from_canvas({"objects": [{"type": "textbox", "text": "hi"}]}, FIT) == []


def test_a_drawing_keeps_its_key_until_it_is_moved_resized_or_recoloured():
    rect = {"type": "rect", "left": 40, "top": 20, "width": 120, "height": 100, "scaleX": 1, "scaleY": 1}
    point = {"type": "circle", "left": 93, "top": 53, "radius": 6, "fill": INCLUDE_COLOR}
    same = dict(rect, stroke="#00e5ff", visible=True)  # what a remounted canvas may add does not matter
    (shape,) = shapes_from_canvas({"objects": [rect]}, FIT)
    assert shape.raw is rect and shape.key == drawing_key(same)
    for changed in (dict(rect, left=41), dict(rect, scaleX=1.5), dict(rect, angle=10), dict(rect, type="polygon")):
        assert drawing_key(changed) != shape.key
    assert drawing_key(point) != drawing_key(dict(point, fill=EXCLUDE_COLOR))
