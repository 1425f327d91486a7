"""Brush touch-up and hand-drawn polygons: strokes on masks, kept through undo, refinement and saving."""

from __future__ import annotations

import numpy as np
import pytest

from samdash.brush import Stroke, paint, polygon_mask
from samdash.canvas import BRUSH_COLOR, ERASER_COLOR, BackgroundFit, shapes_from_canvas
from samdash.drawings import MANUAL_SOURCE, Workspace
from samdash.records import state_from_bytes, state_to_bytes
from tests.test_drawings import A, P, SAME_SIZE, canvas  # noqa: F401 (canvas: a fixture)


def _stroke(points: list[tuple[float, float]], width: float, colour: str = BRUSH_COLOR) -> dict:
    path = [["M", *points[0]], *(["L", *p] for p in points[1:])]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return {"type": "path", "path": path, "left": min(xs) - width / 2, "top": min(ys) - width / 2,
            "width": max(xs) - min(xs), "height": max(ys) - min(ys), "strokeWidth": width, "stroke": colour}


def test_a_stroke_paints_its_width_and_an_eraser_clears_beyond_the_object():
    mask = np.zeros((100, 200), bool)
    mask[20:60, 20:80] = True
    added = paint(mask, (Stroke(np.array([[100.0, 50.0], [180.0, 50.0]]), 10.0),))
    assert not mask[50, 140]  # the mask given is left as it is
    column = added[:, 140]
    assert column[45:56].all() and column.sum() in (10, 11)  # 10 px wide, rounded to whole pixels
    assert added[20:60, 20:80].all()
    erased = paint(added, (Stroke(np.array([[0.0, 40.0], [199.0, 40.0]]), 4.0, erase=True),))
    assert not erased[39:42, :].any() and erased[30, 30] and erased[50, 140]
    # One click paints a dot of the brush's width.
    dot = paint(np.zeros((50, 50), bool), (Stroke(np.array([[25.0, 25.0]]), 9.0),))
    assert dot[25, 21:30].all() and not dot[25, 19] and not dot[25, 31]


def test_polygon_mask_fills_its_inside():
    mask = polygon_mask(np.array([[10.0, 10.0], [50.0, 10.0], [10.0, 50.0]]), (60, 60))
    assert mask[15, 15] and not mask[45, 45] and mask.sum() == pytest.approx(40 * 40 / 2, rel=0.1)


ADD = _stroke([(150.0, 150.0), (400.0, 150.0)], 8)
ERASE = _stroke([(120.0, 200.0), (330.0, 200.0)], 6, ERASER_COLOR)


def test_strokes_change_the_active_object_undo_takes_them_back_and_a_point_keeps_them(canvas):
    workspace, send = canvas
    assert send(ADD) == ["The brush paints on the selected object: make or select one first."]
    assert workspace.segments == []
    send(A)
    [segment] = workspace.segments
    sam_mask = segment.mask.copy()
    send(A, ADD, ERASE)
    assert segment.mask[150, 390] and not sam_mask[150, 390]  # painted beyond the box
    assert not segment.mask[200, 200]  # erased
    assert [s.erase for s in segment.state.strokes] == [False, True]
    send(A, ADD)  # undo the eraser
    assert segment.mask[200, 200] == sam_mask[200, 200] and segment.mask[150, 390]
    send(A, ADD, P)  # a SAM point: the new mask, the stroke painted on top again
    assert len(segment.state.strokes) == 1 and segment.mask[150, 390]
    np.testing.assert_array_equal(segment.mask, paint(segment.candidates.mask(segment.pick), segment.state.strokes))
    # Another candidate keeps the strokes too.
    segment.pick = (segment.pick + 1) % len(segment.candidates.scores)
    assert segment.mask[150, 390]


def test_a_polygon_is_an_object_as_drawn_which_the_brush_and_sam_can_change(canvas):
    workspace, send = canvas
    polygon = {"type": "polygon", "left": 98.5, "top": 98.5, "width": 200, "height": 100, "strokeWidth": 3,
               "points": [{"x": 100, "y": 100}, {"x": 300, "y": 100}, {"x": 300, "y": 200}, {"x": 100, "y": 200}]}
    send(polygon)
    [segment] = workspace.segments
    assert segment.candidates.source == MANUAL_SOURCE and np.isnan(segment.score)
    assert segment.mask[100:201, 100:301].all() and segment.area == 201 * 101
    send(polygon, ERASE)
    assert not segment.mask[197:201, 125:301].any() and segment.mask[100:195, 100:301].all()  # 6 px wide, about y = 200
    send(polygon, ERASE, P)  # SAM from the polygon's box and the point (no logits to take back), eraser on top
    assert segment.candidates.source != MANUAL_SOURCE and not segment.mask[200, 200]
    assert segment.prompt.box == pytest.approx((100, 100, 301, 201))  # the box of its pixels


def test_strokes_are_saved_with_the_object_and_read_back_exactly(canvas):
    workspace, send = canvas
    send(A, ADD, ERASE)
    [segment] = workspace.segments
    blob = state_to_bytes(segment.saved())
    back = state_from_bytes(blob)
    assert [(s.width, s.erase) for s in back.strokes] == [(8.0, False), (6.0, True)]
    np.testing.assert_array_equal(back.strokes[0].points, segment.state.strokes[0].points)
    np.testing.assert_array_equal(back.mask.decode(), segment.mask)
    # An object without strokes is written in the earlier format, which older releases read.
    send(A)
    assert b'"format":2' in state_to_bytes(segment.saved()) and b'"format":3' in blob


def _as_the_browser_writes(obj: dict) -> dict:
    """Fabric writes numbers to 2 decimals and adds fields of its own: another object, the same drawing."""
    def rounded(value):
        if isinstance(value, float):
            return round(value, 2)
        if isinstance(value, list):
            return [rounded(v) for v in value]
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return value

    return rounded(obj) | {"version": "5.3.0", "opacity": 1}


def test_drawings_moved_to_a_zoomed_canvas_are_kept_not_redone(canvas, tiny_engine):
    workspace, send = canvas
    send(A, ADD, P)
    [segment] = workspace.segments
    state, generation = segment.state, workspace.generation
    zoomed = BackgroundFit(4.0, 4.0, 0.0, 0.0, 100.0, 80.0)
    workspace.move_drawings(zoomed, "4x")
    assert workspace.generation == generation + 1 and workspace.drawing_view == "4x"
    moved = [_as_the_browser_writes(obj) for obj in workspace.drawing["objects"]]
    # The browser sends the moved drawings back as it writes them, in another order, with a new point drawn at
    # this zoom among them.
    shapes = shapes_from_canvas({"objects": [moved[2], P, moved[0], moved[1]]}, zoomed)
    embedding = tiny_engine.embed(np.zeros((8, 8, 3), np.uint8), "unused")
    workspace.sync(shapes, tiny_engine, embedding, (640, 480))
    assert workspace.segments == [segment] and segment.state is not state
    assert [e.shape.kind for e in workspace.applied] == ["box", "stroke", "point", "point"]
    assert [e.before is None for e in workspace.applied] == [True, False, False, False]  # the same history
    np.testing.assert_allclose(workspace.applied[-1].shape.points, [[100 + 220 / 4, 80 + 200 / 4]])
    assert segment.prompt.points.tolist()[-1] == pytest.approx([155.0, 130.0])
    # From now on the browser's own objects are the drawings' keys: the same report again changes nothing.
    now = segment.state
    workspace.sync(shapes, tiny_engine, embedding, (640, 480))
    assert segment.state is now and len(workspace.applied) == 4


def test_strokes_and_polygons_survive_the_store_and_the_canvas_reopens_with_them(tmp_path, tiny_engine, scene):
    from samdash.store import Store

    store = Store(tmp_path / "data")
    project = store.create_project("touch-up")
    info, _ = store.add_image(project.id, b"pixels", "scene.png", "scene-hash", (scene.shape[1], scene.shape[0]))
    workspace, saved = store.load_workspace(info)
    polygon = {"type": "polygon", "left": 98.5, "top": 98.5, "width": 200, "height": 100, "strokeWidth": 3,
               "points": [{"x": 100, "y": 100}, {"x": 300, "y": 100}, {"x": 300, "y": 200}, {"x": 100, "y": 200}]}
    shapes = shapes_from_canvas({"objects": [A, ADD, polygon, ERASE]}, SAME_SIZE)
    workspace.sync(shapes, tiny_engine, tiny_engine.embed(scene, "scene"), (scene.shape[1], scene.shape[0]))
    store.save_workspace(workspace, saved)
    again, _ = Store(tmp_path / "data").load_workspace(info)
    for before, after in zip(workspace.segments, again.segments, strict=True):
        np.testing.assert_array_equal(after.mask, before.mask)
        assert [(s.width, s.erase) for s in after.state.strokes] == [(s.width, s.erase) for s in before.state.strokes]
    assert [e.shape.kind for e in again.applied] == ["box", "stroke", "outline", "stroke"]
    assert again.applied[1].shape.width == 8.0 and again.segments[1].candidates.source == MANUAL_SOURCE
