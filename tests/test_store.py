"""The project store: real SQLite files in a temporary data directory, objects made by the tiny SAM."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from samdash.canvas import BackgroundFit, shapes_from_canvas
from samdash.drawings import Workspace
from samdash.engine import EmbeddingCache
from samdash.errors import SamdashError
from samdash.grabcut import GrabCutEngine
from samdash.imaging import LoadedImage
from samdash.records import MAX_OUTLINE_POINTS, outline_from_bytes, outline_to_bytes, state_from_bytes, state_to_bytes
from samdash.segments import Segment
from samdash.store import DB_NAME, SCHEMA_VERSION, Conflict, Store, StoreError
from tests.test_drawings import A, B, P, X

SAME_SIZE = BackgroundFit(1.0, 1.0, 0.0, 0.0)


@pytest.fixture
def project(tmp_path, scene):
    """A store with one project holding the scene image."""
    store = Store(tmp_path / "data")
    info = store.create_project("Field survey")
    image = LoadedImage.from_array(scene, "scene.png")
    record, added = store.add_image(info.id, b"png bytes", "scene.png", image.content_hash, (image.width, image.height))
    assert added
    return store, record, image


def _worked(store, record, image, engine, *drawings):
    """A workspace loaded from the store, with drawings applied as the page applies them, then saved."""
    workspace, saved = store.load_workspace(record)
    embedding = engine.embed(image.rgb, image.content_hash)
    shapes = shapes_from_canvas({"objects": list(drawings)}, SAME_SIZE)
    assert workspace.sync(shapes, engine, embedding, (image.width, image.height)) == []
    store.save_workspace(workspace, saved)
    return workspace, saved


def _fields(workspace: Workspace) -> list:
    """Everything an object is, in plain values, as saved: the picked candidate exact, the others as float16."""
    out = []
    for s in workspace.segments:
        c = s.state.compacted().candidates
        out.append(
            (
                s.id, s.name, tuple(s.color), s.visible, s.pick, s.prompt.box, s.prompt.points.tolist(), s.prompt.labels.tolist(),
                c.scores.tolist(), c.logits.tobytes(), [c.logits_of(i).tobytes() for i in range(len(c))], c.source, c.geometry,
                s.compact_mask.counts, s.compact_mask.size,
            )
        )
    return out


def test_every_field_of_every_object_survives_a_reopened_store(project, tiny_engine):
    store, record, image = project
    workspace, _ = _worked(store, record, image, tiny_engine, A, P, X, B)
    workspace.segments[0].name = "left disc"
    workspace.segments[0].color = (1, 2, 3)
    workspace.segments[1].visible = False
    workspace.segments[1].pick = (workspace.segments[1].pick + 1) % 3
    workspace.active_id = workspace.segments[0].id
    saved_again = store.load_workspace(record)[1]
    assert store.save_workspace(workspace, saved_again)

    reopened = Store(store.data_dir)  # as after a server restart
    loaded, _ = reopened.load_workspace(reopened.image(record.id))
    assert _fields(loaded) == _fields(workspace)
    assert loaded.active_id == workspace.active_id and loaded.next_id == workspace.next_id
    assert [np.array_equal(a.mask, b.mask) for a, b in zip(loaded.segments, workspace.segments)] == [True, True]
    # The canvas record and the undo history come back: the canvas mounts with the same drawings,
    # and taking back the exclude point restores the object exactly as it was before it.
    assert loaded.drawing == {"objects": [A, P, X, B]}
    before_exclude = [e.before for e in workspace.applied if e.shape.raw is X][0]
    embedding = tiny_engine.embed(image.rgb, image.content_hash)
    loaded.sync(shapes_from_canvas({"objects": [A, P, B]}, SAME_SIZE), tiny_engine, embedding, (image.width, image.height))
    restored = loaded.segment(workspace.segments[0].id)
    assert restored.compact_mask.counts == before_exclude.mask.counts
    assert np.array_equal(restored.candidates.logits_of(restored.pick), before_exclude.candidates.logits_of(before_exclude.pick))


def _format_1_blob(state) -> bytes:
    """A state as the first release wrote it: every array zlib-compressed whole, the picked candidate twice."""
    blob = state_to_bytes(state)
    header = json.loads(blob[4 : 4 + struct.unpack_from("<I", blob)[0]])
    header["format"] = 1
    c = state.candidates
    arrays = [("logits", c.logits, {})] + ([("exact", c.exact[1], {"index": c.exact[0]})] if c.exact else [])
    header["arrays"], body = [], b""
    for name, array, extra in arrays:
        packed = zlib.compress(np.ascontiguousarray(array).tobytes(), 1)
        header["arrays"].append({"dtype": array.dtype.str, "shape": list(array.shape), "name": name, "bytes": len(packed)} | extra)
        body += packed
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + body


def test_states_saved_by_the_first_release_read_the_same(project, tiny_engine):
    store, record, image = project
    workspace, _ = _worked(store, record, image, tiny_engine, A, P)
    state = workspace.segments[0].state.compacted()
    old, new = state_from_bytes(_format_1_blob(state)), state_from_bytes(state_to_bytes(state))
    assert old.candidates.logits.tobytes() == new.candidates.logits.tobytes() == state.candidates.logits.tobytes()
    assert old.candidates.exact[0] == new.candidates.exact[0] == state.pick
    assert old.candidates.exact[1].tobytes() == new.candidates.exact[1].tobytes() == state.candidates.exact[1].tobytes()
    assert old.mask.counts == new.mask.counts == state.mask.counts


def test_damaged_logits_keep_the_object_and_say_so_when_it_is_refined(project, tiny_engine):
    """Logits are decompressed only when an object is refined or its candidates shown: a reopened image opens with
    its masks even if a state's logits were damaged, and refining that object is a clear error, not a traceback."""
    store, record, image = project
    workspace, _ = _worked(store, record, image, tiny_engine, A)
    blob = state_to_bytes(workspace.segments[0].state)
    header_end = 4 + struct.unpack_from("<I", blob)[0]
    state = state_from_bytes(blob[: header_end + 100])  # the arrays cut short, as by a damaged disk
    assert state.mask.counts == workspace.segments[0].state.mask.counts
    with pytest.raises(SamdashError, match="cannot be read"):
        state.candidates.logits_of(state.pick)


def test_a_save_writes_only_what_changed_and_drops_unused_history(project, tiny_engine):
    store, record, image = project
    workspace, saved = _worked(store, record, image, tiny_engine, A, P, B)
    db = sqlite3.connect(store.path)
    states_before = db.execute("SELECT id FROM states").fetchall()
    assert not store.save_workspace(workspace, saved)  # nothing changed: nothing written
    workspace.segments[1].name = "box B"
    assert store.save_workspace(workspace, saved)
    assert db.execute("SELECT id FROM states").fetchall() == states_before  # a rename writes no state
    workspace.remove(workspace.segments[0].id)
    store.save_workspace(workspace, saved)
    (count,) = db.execute("SELECT COUNT(*) FROM states").fetchone()
    assert count == 1  # object 1's state and its point's history are gone with it


def test_a_refinement_writes_one_state_its_history_is_the_state_saved_before(project, tiny_engine):
    store, record, image = project
    workspace, saved = _worked(store, record, image, tiny_engine, A)
    db = sqlite3.connect(store.path)
    [(first,)] = db.execute("SELECT id FROM states").fetchall()
    embedding = tiny_engine.embed(image.rgb, image.content_hash)
    workspace.sync(shapes_from_canvas({"objects": [A, P]}, SAME_SIZE), tiny_engine, embedding, (image.width, image.height))
    store.save_workspace(workspace, saved)
    rows = dict(db.execute("SELECT before_id, segment_id FROM drawings WHERE before_id IS NOT NULL").fetchall())
    assert list(rows) == [first]  # the point's undo entry is the row written for the box
    assert db.execute("SELECT COUNT(*) FROM states").fetchone() == (2,)


def test_objects_with_equal_but_separate_states_are_saved_each(project, tiny_engine):
    store, record, image = project
    workspace, saved = _worked(store, record, image, tiny_engine, A)
    first = workspace.segments[0]
    # A copy of the state (as compacting an already compact state makes): same fields, another object.
    workspace.add(Segment(workspace.next_id, "copy", first.color, replace(first.state)))
    assert store.save_workspace(workspace, saved)
    loaded, _ = Store(store.data_dir).load_workspace(record)
    assert [s.compact_mask.counts for s in loaded.segments] == [first.compact_mask.counts] * 2


def test_a_second_session_sees_the_change_and_cannot_overwrite_it(project, tiny_engine):
    store, record, image = project
    first, first_saved = store.load_workspace(record)
    other = Store(store.data_dir)
    second, second_saved = other.load_workspace(other.image(record.id))
    workspace, _ = _worked(store, record, image, tiny_engine, A)
    assert other.revision(record.id) != second_saved.revision  # the other tab can tell it is behind
    second.segments.append(workspace.segments[0])
    with pytest.raises(Conflict):
        other.save_workspace(second, second_saved)
    assert len(store.load_workspace(record)[0].segments) == 1


def test_images_are_added_once_and_listed_in_order(project, scene):
    store, record, image = project
    again, added = store.add_image(record.project_id, b"other bytes", "copy.jpg", image.content_hash, (image.width, image.height))
    assert not added and again.id == record.id
    flipped = LoadedImage.from_array(np.ascontiguousarray(scene[::-1]), "flipped.png")
    second, added = store.add_image(record.project_id, b"flipped", "flipped.png", flipped.content_hash, (flipped.width, flipped.height))
    assert added
    assert [i.name for i in store.images(record.project_id)] == ["scene.png", "flipped.png"]
    assert store.image_path(second).read_bytes() == b"flipped"
    store.set_done(second.id, True)
    assert [i.done for i in store.images(record.project_id)] == [False, True]


def test_a_stored_image_is_decoded_once_for_every_session_that_opens_it(tmp_path, scene):
    store = Store(tmp_path / "data")
    project = store.create_project("Field survey")
    image = LoadedImage.from_array(scene, "scene.png")
    png = cv2.imencode(".png", cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))[1].tobytes()
    record, _ = store.add_image(project.id, png, "scene.png", image.content_hash, (image.width, image.height))
    first = store.load_image(record, 50_000_000)
    assert np.array_equal(first.rgb, scene) and first.content_hash == image.content_hash
    assert Store(tmp_path / "data").load_image(record, 50_000_000) is first  # another session: not decoded again
    store.image_path(record).unlink()
    with pytest.raises(StoreError, match="missing from the data directory"):
        store.load_image(record, 50_000_000)  # a file gone is said, even when its pixels are still in memory


def test_deleting_a_project_removes_its_objects_and_unshared_files(project, tiny_engine):
    store, record, image = project
    _worked(store, record, image, tiny_engine, A)
    other = store.create_project("Other")
    store.add_image(other.id, b"png bytes", "scene.png", image.content_hash, (image.width, image.height))
    store.delete_project(record.project_id)
    assert store.project(record.project_id) is None
    assert store.image_path(record).exists()  # still used by the other project
    db = sqlite3.connect(store.path)
    assert db.execute("SELECT COUNT(*) FROM objects").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM states").fetchone() == (0,)
    store.delete_project(other.id)
    assert not store.image_path(record).exists()


def test_a_version_1_store_is_migrated_and_a_copy_kept(tmp_path, tiny_engine, scene):
    """A database as samdash's first schema wrote it, made here with that schema's own statements."""
    image = LoadedImage.from_array(scene, "scene.png")
    embedding = tiny_engine.embed(scene, image.content_hash)
    from samdash.prompts import box_prompt
    from samdash.segments import SegmentState

    state = SegmentState.of(box_prompt((120, 100, 320, 300), 640, 480), tiny_engine.predict(embedding, box_prompt((120, 100, 320, 300), 640, 480)))
    data = tmp_path / "old"
    data.mkdir()
    db = sqlite3.connect(data / DB_NAME)
    db.executescript(
        """
        CREATE TABLE projects(id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE images(id INTEGER PRIMARY KEY AUTOINCREMENT,
            project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            position INTEGER NOT NULL, name TEXT NOT NULL, content_hash TEXT NOT NULL, file TEXT NOT NULL,
            width INTEGER NOT NULL, height INTEGER NOT NULL, UNIQUE(project_id, content_hash));
        CREATE TABLE objects(image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            segment_id INTEGER NOT NULL, name TEXT NOT NULL, color TEXT NOT NULL, visible INTEGER NOT NULL,
            state BLOB NOT NULL, PRIMARY KEY(image_id, segment_id));
        PRAGMA user_version = 1;
        """
    )
    db.execute("INSERT INTO projects VALUES ('p1', 'Old survey', 0)")
    db.execute("INSERT INTO images VALUES (1, 'p1', 0, 'scene.png', ?, 'images/x.png', 640, 480)", (image.content_hash,))
    db.execute("INSERT INTO objects VALUES (1, 4, 'rock', '#ff0000', 1, ?)", (state_to_bytes(state.compacted()),))
    db.commit()
    db.close()

    store = Store(data)
    assert sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    backup = sqlite3.connect(data / f"{DB_NAME}.schema-1.bak")
    assert backup.execute("SELECT name FROM objects").fetchall() == [("rock",)]  # the old file, as it was
    [record] = store.images("p1")
    assert not record.done and record.objects == 1
    workspace, _ = store.load_workspace(record)
    [rock] = workspace.segments
    assert (rock.id, rock.name, rock.color, rock.label_id) == (4, "rock", (255, 0, 0), None)  # labels came later
    assert rock.compact_mask.counts == state.mask.counts
    assert workspace.next_id == 5 and workspace.active_id == 4
    assert store.labels("p1") == []
    car = store.add_label("p1", "car", (0, 0, 255))
    rock.label_id = car.id
    assert store.save_workspace(workspace, store.load_workspace(record)[1])
    assert store.load_workspace(record)[0].segments[0].label_id == car.id


def test_a_store_from_a_newer_release_is_refused_and_left_alone(tmp_path):
    data = tmp_path / "new"
    data.mkdir()
    db = sqlite3.connect(data / DB_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = (data / DB_NAME).read_bytes()
    with pytest.raises(StoreError, match="newer samdash"):
        Store(data)
    assert (data / DB_NAME).read_bytes() == before


def test_a_read_only_directory_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    data = tmp_path / "ro"
    data.mkdir()
    data.chmod(0o500)
    with pytest.raises(StoreError, match="Cannot open the project store"):
        Store(data)


# A writer killed in the middle of its transactions: it says "writing" once its first one has landed.
_WRITER = """
import sys, time
from samdash.store import Store
store = Store(sys.argv[1])
project = store.create_project("victim")
n = 0
deadline = time.monotonic() + 120  # the test kills it long before; bounded all the same
while time.monotonic() < deadline:
    with store._writing() as db:
        for _ in range(200):
            db.execute("INSERT INTO projects VALUES (?, ?, 0)", (f"{project.id}-{n}", "x" * 1000))
            n += 1
    if n == 200:
        print("writing", flush=True)
"""


def test_a_writer_killed_mid_transaction_leaves_a_readable_store(tmp_path):
    data = tmp_path / "data"
    Store(data).create_project("kept")
    root = Path(__file__).resolve().parents[1]
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(data)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = writer.stdout.readline()  # blocks until the first transaction landed, or the writer died
        assert line == "writing\n", f"the writer exited with {writer.wait()} before writing: {writer.stderr.read()}"
        time.sleep(0.5)
    finally:
        writer.kill()
        writer.wait()
    store = Store(data)
    names = [p.name for p in store.projects()]
    assert "kept" in names and "victim" in names
    count = sqlite3.connect(store.path).execute("SELECT COUNT(*) FROM projects").fetchone()[0]
    assert count > 202 and (count - 2) % 200 == 0  # only whole transactions landed
    assert sqlite3.connect(store.path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_an_outline_shown_is_kept_with_its_object_and_not_traced_again(project):
    store, record, image = project
    engine = GrabCutEngine(EmbeddingCache(64 << 20))  # clean outlines (the random SAM's masks are speckled)
    workspace, saved = store.load_workspace(record)
    embedding = engine.embed(image.rgb, image.content_hash)
    shapes = shapes_from_canvas({"objects": [A, B]}, SAME_SIZE)
    workspace.sync(shapes, engine, embedding, (image.width, image.height))
    shown = workspace.segments[0].outline()  # the page traces what it draws; the second object is not drawn
    store.save_workspace(workspace, saved)

    reopened = Store(store.data_dir)
    loaded, _ = reopened.load_workspace(reopened.image(record.id))
    kept = loaded.segments[0].traced_outline()
    assert kept is not None and [c.tolist() for c in kept] == [c.tolist() for c in shown]
    assert loaded.segments[1].traced_outline() is None  # traced when it is first drawn
    assert [c.tolist() for c in loaded.segments[1].outline()] == [c.tolist() for c in workspace.segments[1].outline()]


def test_outlines_round_trip_and_a_speckled_one_is_not_kept():
    rng = np.random.default_rng(0)
    contours = [rng.integers(0, 4000, size=(n, 2)).astype(np.int32) for n in (1, 7, 300)]
    assert [c.tolist() for c in outline_from_bytes(outline_to_bytes(contours))] == [c.tolist() for c in contours]
    assert outline_from_bytes(outline_to_bytes([])) == []
    assert outline_to_bytes([np.zeros((MAX_OUTLINE_POINTS + 1, 2), np.int32)]) is None


def test_labels_are_added_renamed_counted_and_saved_with_objects(project, tiny_engine):
    store, record, image = project
    car = store.add_label(record.project_id, "  car ", (255, 0, 0))
    person = store.add_label(record.project_id, "person", (0, 255, 0))
    assert [(label.name, label.color) for label in store.labels(record.project_id)] == [("car", (255, 0, 0)), ("person", (0, 255, 0))]
    with pytest.raises(StoreError, match="already"):
        store.add_label(record.project_id, "car", (1, 1, 1))
    with pytest.raises(StoreError, match="merge"):
        store.rename_label(person.id, "car")
    with pytest.raises(StoreError, match="name"):
        store.add_label(record.project_id, "   ", (1, 1, 1))
    store.rename_label(person.id, "pedestrian")
    assert [label.name for label in store.labels(record.project_id)] == ["car", "pedestrian"]

    workspace, saved = store.load_workspace(record)
    workspace.new_label = (car.id, car.color)  # picked before drawing
    workspace, saved = _worked(store, record, image, tiny_engine, A, B)
    assert [s.label_id for s in workspace.segments] == [None, None]  # a reloaded workspace has no label picked
    fresh, saved = store.load_workspace(record)
    fresh.new_label = (car.id, car.color)
    embedding = tiny_engine.embed(image.rgb, image.content_hash)
    fresh.sync(shapes_from_canvas({"objects": [A, B, dict(A, left=A["left"] + 300)]}, SAME_SIZE), tiny_engine, embedding, (image.width, image.height))
    made = fresh.segments[-1]
    assert (made.label_id, made.color) == (car.id, car.color)
    fresh.segments[0].label_id = person.id
    assert store.save_workspace(fresh, saved)
    reopened = Store(store.data_dir).load_workspace(record)[0]
    assert [s.label_id for s in reopened.segments] == [person.id, None, car.id]
    assert store.label_counts(record.project_id) == {person.id: 1, None: 1, car.id: 1}
    assert store.label_counts(record.project_id, except_image=record.id) == {}


def test_deleting_a_label_moves_its_objects_and_other_sessions_see_it(project, tiny_engine):
    store, record, image = project
    car = store.add_label(record.project_id, "car", (255, 0, 0))
    truck = store.add_label(record.project_id, "truck", (0, 0, 255))
    workspace, saved = _worked(store, record, image, tiny_engine, A, B)
    first, second = workspace.segments
    first.label_id, first.color = truck.id, truck.color  # in its label's colour
    second.label_id, second.color = truck.id, (9, 9, 9)  # recoloured by the analyst
    assert store.save_workspace(workspace, saved)
    revision = store.revision(record.id)

    assert store.delete_label(truck.id, car.id) == 2  # "merge truck into car"
    assert [label.name for label in store.labels(record.project_id)] == ["car"]
    assert store.revision(record.id) == revision + 1  # a session showing the image reloads it
    merged = store.load_workspace(record)[0].segments
    assert [(s.label_id, s.color) for s in merged] == [(car.id, car.color), (car.id, (9, 9, 9))]
    first.name = "lorry"
    with pytest.raises(Conflict):  # a session that still shows "truck" saves nothing over the merge
        store.save_workspace(workspace, saved)

    assert store.delete_label(car.id, None) == 2
    assert [(s.label_id, s.color) for s in store.load_workspace(record)[0].segments] == [(None, car.color), (None, (9, 9, 9))]
    with pytest.raises(StoreError):
        store.delete_label(car.id, None)  # gone already

    # A label picked in one tab and deleted in another before that tab saves: the object is saved unlabelled.
    fresh, saved = store.load_workspace(record)
    lorry = store.add_label(record.project_id, "lorry", (1, 2, 3))
    fresh.segments[0].label_id = lorry.id
    store.delete_label(lorry.id, None)
    assert store.save_workspace(fresh, saved)
    assert store.load_workspace(record)[0].segments[0].label_id is None
    store.delete_project(record.project_id)  # labels go with their project
    with pytest.raises(StoreError):
        store.add_label(record.project_id, "late", (1, 1, 1))  # a project deleted in another tab
    assert sqlite3.connect(store.path).execute("SELECT COUNT(*) FROM labels").fetchone() == (0,)
