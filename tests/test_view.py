"""The zoomed view: image ↔ canvas px at several zooms and places, exact to a pixel, and kept inside the image."""

from __future__ import annotations

import numpy as np
import pytest

from samdash.canvas import BackgroundFit, placed, shapes_from_canvas
from samdash.view import View

IMAGE = (4000, 3000)  # 12 MP


@pytest.mark.parametrize("zoom", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("centre", [(2000, 1500), (10, 10), (3990, 2990), (1234.5, 2777.25)])
def test_image_canvas_round_trips_are_exact_and_the_view_stays_inside(zoom, centre):
    view = View.whole(IMAGE).at(centre, zoom, 600)
    assert 0 <= view.x and view.x + view.width <= IMAGE[0] and 0 <= view.y and view.y + view.height <= IMAGE[1]
    assert view.zoom == pytest.approx(zoom, rel=1e-3)
    size = view.canvas_size(600, 720)
    assert size[0] == 600 or size[1] == 720
    points = np.random.default_rng(zoom).uniform((view.x, view.y), (view.x + view.width, view.y + view.height), (50, 2))
    np.testing.assert_allclose(view.fit(size).to_image(view.fit(size).to_canvas(points)), points, atol=1e-9)
    # The canvas corners are the view's corners.
    np.testing.assert_allclose(view.fit(size).to_image([[0, 0], size]), [[view.x, view.y], [view.x + view.width, view.y + view.height]])


def test_a_box_drawn_at_4x_lands_within_a_pixel_of_where_it_was_aimed():
    view = View.whole(IMAGE).at((3100, 800), 4, 640)
    size = view.canvas_size(640, 720)
    target = np.array([[3051.0, 771.0], [3112.0, 829.0]])  # a 61 × 58 px part
    # What the analyst drags on screen: whole canvas pixels, the nearest to the target's corners.
    fit = view.fit(size)
    drawn = np.round(fit.to_canvas(target))
    rect = {"type": "rect", "left": drawn[0, 0], "top": drawn[0, 1], "width": drawn[1, 0] - drawn[0, 0],
            "height": drawn[1, 1] - drawn[0, 1], "strokeWidth": 3}
    (shape,) = shapes_from_canvas({"objects": [rect]}, fit)
    assert np.abs(shape.points - target).max() <= 1.0 * view.width / size[0] / 2 + 1e-9 < 1.0


def test_zooming_to_a_box_holds_the_box_and_panning_stops_at_the_edge():
    whole = View.whole(IMAGE)
    view = whole.around((1000, 1000, 1400, 1100), 640)
    assert view.x <= 1000 and view.x + view.width >= 1400 and view.y <= 1000 and view.y + view.height >= 1100
    assert view.zoom == pytest.approx(10, rel=1e-3)  # the box's width sets it: 4000 / 400
    edge = view.panned(100, 100)
    assert (edge.x + edge.width, edge.y + edge.height) == IMAGE and edge.width == view.width
    assert whole.panned(1, 0) == whole  # the whole image has nowhere to go
    # No further in than 8 canvas px per image px.
    assert whole.at((5, 5), 1000, 640).width == round(640 / 8)
    assert whole.zoom_steps(640) == [1, 2, 4, 8, 16, 32] and View.whole((800, 600)).zoom_steps(640) == [1, 2, 4, 8]


@pytest.mark.parametrize("kind", ["box", "point", "freehand", "stroke", "outline"])
def test_a_drawing_moved_to_another_zoom_reads_back_as_the_same_image_points(kind):
    """What the canvas is remounted with at a new zoom parses back to the drawing's own image points."""
    raws = {
        "box": {"type": "rect", "left": 50, "top": 40, "width": 80, "height": 60, "strokeWidth": 3, "stroke": "#00e5ff"},
        "point": {"type": "circle", "left": 94, "top": 64, "radius": 6, "strokeWidth": 2, "fill": "#16a34a"},
        "freehand": {"type": "path", "left": 48.5, "top": 38.5, "width": 100, "height": 50, "strokeWidth": 3,
                     "path": [["M", 10, 10], ["Q", 30, 40, 60, 20], ["L", 110, 60]], "stroke": "#00e5ff"},
        "stroke": {"type": "path", "left": 48.5, "top": 38.5, "width": 100, "height": 50, "strokeWidth": 12,
                   "path": [["M", 10, 10], ["Q", 30, 40, 60, 20], ["L", 110, 60]], "stroke": "rgba(250, 204, 21, 0.55)"},
        "outline": {"type": "polygon", "left": 20, "top": 20, "width": 60, "height": 60, "strokeWidth": 3,
                    "points": [{"x": 0, "y": 0}, {"x": 60, "y": 10}, {"x": 30, "y": 60}]},
    }
    whole = View.whole(IMAGE)
    first_size = whole.canvas_size(640, 720)
    first = BackgroundFit(first_size[0] / IMAGE[0], first_size[1] / IMAGE[1], 0.0, 0.0)
    (shape,) = shapes_from_canvas({"objects": [raws[kind]]}, first)
    assert shape.kind == kind
    view = whole.at(tuple(shape.points.mean(axis=0)), 8, 640)
    size = view.canvas_size(640, 720)
    zoomed = view.fit(size)
    (moved,) = shapes_from_canvas({"objects": [placed(shape, zoomed)]}, zoomed)
    assert moved.kind == kind and moved.label == shape.label
    np.testing.assert_allclose(moved.points, shape.points, atol=1e-6)
    assert moved.width == pytest.approx(shape.width)  # a brush keeps its width in image px
    if kind == "stroke":
        assert placed(shape, zoomed)["strokeWidth"] == pytest.approx(12 * 8, rel=1e-3)  # 8× wider on screen
    if kind == "point":
        assert placed(shape, zoomed)["radius"] == 6  # a point keeps its size on screen


def test_crop_is_the_full_resolution_pixels_of_the_view():
    rgb = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    view = View.whole((400, 300)).at((100, 100), 4, 200)
    np.testing.assert_array_equal(view.crop(rgb), rgb[view.y : view.y + view.height, view.x : view.x + view.width])
    assert view.crop(rgb).shape[:2] == (75, 100)
