"""Objects kept in step with the canvas: undo, redo, reorder, edits and deletions there, on the tiny SAM."""

from __future__ import annotations

import numpy as np
import pytest

from samdash.canvas import EXCLUDE_COLOR, INCLUDE_COLOR, BackgroundFit, shapes_from_canvas
from samdash.drawings import Workspace
from samdash.everything import EverythingParams, segment_everything
from samdash.prompts import EXCLUDE, INCLUDE

SAME_SIZE = BackgroundFit(1.0, 1.0, 0.0, 0.0)  # canvas px = image px
A = {"type": "rect", "left": 120, "top": 100, "width": 200, "height": 200, "strokeWidth": 0}
B = {"type": "rect", "left": 400, "top": 280, "width": 180, "height": 160, "strokeWidth": 0}


def _point(x: float, y: float, fill: str = INCLUDE_COLOR) -> dict:
    return {"type": "circle", "left": x - 6, "top": y - 6, "radius": 6, "strokeWidth": 0, "fill": fill}


P = _point(220, 200)
X = _point(300, 120, EXCLUDE_COLOR)


@pytest.fixture
def canvas(tiny_engine, scene):
    """A workspace and a function that sends it the canvas's whole drawing, as the page does."""
    workspace = Workspace("scene")
    embedding = tiny_engine.embed(scene, "scene")

    def send(*objects: dict) -> list[str]:
        shapes = shapes_from_canvas({"objects": list(objects)}, SAME_SIZE)
        return [str(error) for error in workspace.sync(shapes, tiny_engine, embedding, (scene.shape[1], scene.shape[0]))]

    return workspace, send


def _points(workspace: Workspace, name: str) -> list[tuple[list[float], int]]:
    segment = next(s for s in workspace.segments if s.name == name)
    return list(zip(segment.prompt.points.tolist(), segment.prompt.labels.tolist(), strict=True))


def test_a_redone_point_returns_to_the_object_it_refined(canvas):
    workspace, send = canvas
    send(A, B)
    workspace.active_id = workspace.segments[0].id  # "Select" on object 1
    send(A, B, P)
    send(A, B)  # undo the point
    send(A)  # undo box B
    send(A, B)  # redo B: object 2 is active again
    send(A, B, P)  # redo the point
    assert _points(workspace, "object 1") == [([220.0, 200.0], INCLUDE)]
    assert _points(workspace, "object 2") == []


def test_reordering_drawings_changes_nothing(canvas):
    workspace, send = canvas
    send(A, P, B)
    before = [(s.id, s.candidates) for s in workspace.segments]
    send(A, B, P)  # "send backward" on B
    assert [(s.id, s.candidates) for s in workspace.segments] == before


def test_a_box_deleted_on_the_canvas_takes_its_object_and_undo_brings_it_back_with_its_points(canvas):
    workspace, send = canvas
    send(A, X, P)
    segment = workspace.segments[0]
    assert send(X, P) == []  # the box deleted in edit mode: its points refine nothing, and say nothing
    assert workspace.segments == [] and workspace.active is None
    send(X, P, A)  # the canvas's undo adds the box back on top
    assert workspace.segments == [segment] and workspace.active is segment
    assert _points(workspace, "object 1") == [([300.0, 120.0], EXCLUDE), ([220.0, 200.0], INCLUDE)]


def test_a_moved_box_rebuilds_only_its_object(canvas):
    workspace, send = canvas
    send(A, P, B)
    first, second = workspace.segments
    second.pick = (second.pick + 1) % 3
    candidates = second.candidates
    send(dict(A, left=100), P, B)  # A moved in edit mode
    assert workspace.segments == [first, second] and first.name == "object 1"
    assert first.prompt.box == pytest.approx((100, 100, 300, 300)) and _points(workspace, "object 1") == [([220.0, 200.0], INCLUDE)]
    assert second.candidates is candidates and second.pick == (candidates.best + 1) % 3


def test_a_moved_point_refines_in_its_place(canvas):
    workspace, send = canvas
    send(A, P, X)
    send(A, _point(200, 180), X)
    assert _points(workspace, "object 1") == [([200.0, 180.0], INCLUDE), ([300.0, 120.0], EXCLUDE)]


def test_undo_and_redo_of_a_box_bring_back_the_same_object(canvas):
    workspace, send = canvas
    send(A)
    segment = workspace.segments[0]
    segment.name, segment.pick = "cup", 2
    send()
    assert workspace.segments == []
    send(A)
    assert workspace.segments == [segment] and (segment.name, segment.pick) == ("cup", 2)


def test_a_reset_canvas_undone_brings_objects_back_with_their_points(canvas):
    workspace, send = canvas
    send(A, P)
    segment = workspace.segments[0]
    logits = segment.candidates.logits.copy()
    send()  # the bin
    send(A, P)  # its undo
    assert workspace.segments == [segment]
    assert _points(workspace, "object 1") == [([220.0, 200.0], INCLUDE)]
    np.testing.assert_array_equal(segment.candidates.logits, logits)


def test_a_box_dragged_off_the_image_is_refused_and_its_object_goes(canvas):
    workspace, send = canvas
    send(A)
    errors = send(dict(A, left=900))
    assert workspace.segments == [] and len(errors) == 1 and "image" in errors[0]


def test_a_refused_drawing_is_reported_once(canvas):
    workspace, send = canvas
    assert len(send(X)) == 1
    assert send(X) == [] and workspace.segments == []
    assert send(X, A) == [] and len(workspace.segments) == 1


def test_deleting_an_object_redraws_the_canvas_without_its_drawings(canvas):
    workspace, send = canvas
    send(A, P, B, _point(500, 400, INCLUDE_COLOR))
    workspace.remove(workspace.segments[0].id)
    assert workspace.drawing == {"objects": [B, _point(500, 400, INCLUDE_COLOR)]}
    assert send(B, _point(500, 400, INCLUDE_COLOR)) == [] and [s.name for s in workspace.segments] == ["object 2"]


def test_moving_a_refused_point_applies_it_as_a_new_drawing(canvas):
    workspace, send = canvas
    assert len(send(X)) == 1  # an exclude point with no object
    send(X, A)
    assert len(send(_point(320, 130, EXCLUDE_COLOR), A)) == 0  # moved: now it refines the object
    assert _points(workspace, "object 1") == [([320.0, 130.0], EXCLUDE)]


def test_undoing_a_point_on_an_object_found_by_segment_everything_keeps_the_object(canvas, tiny_sam, tiny_engine, scene):
    workspace, send = canvas
    params = EverythingParams(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, points_per_batch=16)
    found = segment_everything(tiny_sam, scene, tiny_engine.embed(scene, "scene"), params)
    segment = found[0].to_segment(1, tiny_engine.cache_id)
    workspace.add(segment)
    mask = segment.mask.copy()
    send(P)
    assert len(segment.prompt.points) == 2  # the grid point that found it, and the new one
    send()
    assert workspace.segments == [segment] and len(segment.prompt.points) == 1
    np.testing.assert_array_equal(segment.mask, mask)


OFF = _point(700, 300)  # beyond the 640 px wide image


def test_undoing_a_refused_point_keeps_the_object_it_was_aimed_at(canvas):
    workspace, send = canvas
    send(A)
    segment = workspace.segments[0]
    assert len(send(A, OFF)) == 1 and len(segment.prompt.points) == 0
    assert send(A, OFF) == []  # reported once
    send(A)  # undo the refused point
    assert workspace.segments == [segment]


def test_a_point_whose_object_is_gone_waits_for_it(canvas):
    workspace, send = canvas
    send(B, A, P)  # P refines object 2 (box A)
    send(B, P)  # box A deleted in edit mode
    send(B)  # P deleted too
    send(B, P)  # undo: P is back, its object is not
    assert _points(workspace, "object 1") == []
    send(B, P, A)  # undo: A is back, and P with it
    assert _points(workspace, "object 1") == [] and _points(workspace, "object 2") == [([220.0, 200.0], INCLUDE)]


def test_a_waiting_point_undone_and_redone_still_waits_for_its_object(canvas):
    workspace, send = canvas
    send(B, A, P)
    send(B, P)  # box A deleted in edit mode: P waits
    for _ in range(2):
        send(B)  # P deleted
        send(B, P)  # and brought back
    send(B, P, A)  # A's deletion undone
    assert [s.name for s in workspace.segments] == ["object 1", "object 2"]
    assert _points(workspace, "object 1") == [] and _points(workspace, "object 2") == [([220.0, 200.0], INCLUDE)]


def test_a_new_drawing_forgets_what_could_have_been_redone(canvas):
    workspace, send = canvas
    send(A)
    send()  # undo A
    send(B)  # a new drawing: the canvas's redo history is gone
    send(B, A)  # the same box drawn again is a new object
    assert [s.name for s in workspace.segments] == ["object 2", "object 3"]


def test_the_decode_time_is_that_of_the_last_prompt_decoded(canvas):
    workspace, send = canvas
    send(A, P)
    workspace.last_decode_ms = -1.0
    send(A)  # an undo decodes nothing
    assert workspace.last_decode_ms == -1.0
    send(A, P)  # a redo does
    assert workspace.last_decode_ms > 0


def test_identical_drawings_come_back_to_their_own_objects(canvas):
    workspace, send = canvas
    send(A)
    workspace.segments[0].name = "cup"
    send(A, P)
    send(A, P, A)  # the same box again: a second object
    send()  # the bin
    send(A, P, A)  # its undo
    assert sorted(s.name for s in workspace.segments) == ["cup", "object 2"]
    assert _points(workspace, "cup") == [([220.0, 200.0], INCLUDE)] and _points(workspace, "object 2") == []


def test_an_undone_object_comes_back_in_its_place_in_the_list(canvas):
    workspace, send = canvas
    send(A, B)
    send(B)  # box A deleted in edit mode
    send(B, A)  # and the deletion undone
    assert [s.name for s in workspace.segments] == ["object 1", "object 2"]
    send()  # the bin
    send(B, A)  # and its undo
    assert [s.name for s in workspace.segments] == ["object 1", "object 2"]


def test_a_redo_arriving_with_a_deletion_is_not_taken_for_an_edit(canvas):
    workspace, send = canvas
    send(A)
    send(A, B)
    second = workspace.segments[1]
    send(A)  # undo B
    send(B)  # A deleted and B redone, in one update
    assert workspace.segments == [second]
