"""Projects on disk: images and the objects made on them, saved as the analyst works.

One SQLite database per data directory (WAL mode: readers never wait for the
writer, and a killed process leaves the last committed state), and the image
files beside it, named by the hash of their pixels so an image added twice is
stored once. Every save of an image's objects is one transaction that also
bumps the image's revision: a session that sees another revision than the one
it saved knows the image was changed elsewhere (another tab, a teammate).

The schema carries a version (``PRAGMA user_version``). A database from an
older release is copied aside and migrated when opened; one from a newer
release is refused, never changed.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from samdash.drawings import Applied, Workspace
from samdash.errors import SamdashError
from samdash.imaging import LoadedImage, load_image_file
from samdash.lru import ByteLRU
from samdash.records import (
    outline_from_bytes,
    outline_to_bytes,
    shape_from_json,
    shape_to_json,
    state_from_bytes,
    state_to_bytes,
)
from samdash.render import hex_to_rgb, rgb_to_hex
from samdash.segments import Segment, SegmentState

DB_NAME = "samdash.db"
# Stored images decoded lately, shared by every session of the process: three 12 MP images, the one shown and the
# two the page encodes ahead of it (a 12 MP JPEG takes a quarter of a second or more to decode). Pixels are
# read-only, so sessions can share them.
DECODED_IMAGES_BYTES = 3 * 4000 * 3000 * 3 + (1 << 20)
_DECODED: ByteLRU[tuple[str, str, int], LoadedImage] = ByteLRU(DECODED_IMAGES_BYTES, lambda image: image.rgb.nbytes)
# How long a write waits for another writer before it gives up (and the page says the change is not saved).
BUSY_TIMEOUT_S = 5.0
# Saves leave checkpoints (copying the write-ahead log into the database, with an fsync) to a background thread;
# a writer checkpoints itself only when the log has grown past this many pages (4 KiB each), as a backstop.
WAL_BACKSTOP_PAGES = 16384


class _Checkpointer:
    """One daemon thread per process that checkpoints the databases written to, off the analyst's save path.

    Passive checkpoints never block writers or readers; a database that was
    removed meanwhile is skipped, never created again.
    """

    def __init__(self) -> None:
        self._pending: set[Path] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self, path: Path) -> None:
        with self._lock:
            self._pending.add(path)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="samdash-checkpoint", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(0.2)  # a burst of saves, one checkpoint
            self._wake.clear()
            with self._lock:
                paths, self._pending = self._pending, set()
            for path in paths:
                try:
                    db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S)
                    try:
                        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    finally:
                        db.close()
                except sqlite3.Error:
                    pass  # the backstop checkpoint in the writers still bounds the log


_CHECKPOINTS = _Checkpointer()


class StoreError(SamdashError):
    """The project store cannot be read or written."""


class Conflict(StoreError):
    """The image was changed elsewhere since this session loaded it."""


@dataclass(frozen=True)
class ProjectInfo:
    id: str
    name: str
    created: float
    images: int


@dataclass(frozen=True)
class LabelInfo:
    """A class objects belong to ("car", "defect"), one of a project's label set."""

    id: int  # stable: exports use it as the category id
    project_id: str
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class ImageInfo:
    id: int
    project_id: str
    position: int
    name: str
    content_hash: str
    file: str  # relative to the data directory
    width: int
    height: int
    done: bool
    objects: int
    revision: int


def _script(db: sqlite3.Connection, script: str) -> None:
    """Statements one by one: ``executescript`` would commit the migration's transaction half way."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _schema_v1(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE projects(id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE images(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            position INTEGER NOT NULL, name TEXT NOT NULL, content_hash TEXT NOT NULL, file TEXT NOT NULL,
            width INTEGER NOT NULL, height INTEGER NOT NULL,
            UNIQUE(project_id, content_hash));
        CREATE TABLE objects(
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            segment_id INTEGER NOT NULL, name TEXT NOT NULL, color TEXT NOT NULL, visible INTEGER NOT NULL,
            state BLOB NOT NULL,
            PRIMARY KEY(image_id, segment_id));
        """
    )


def _schema_v2(db: sqlite3.Connection) -> None:
    """Undo history and the canvas record per image, "done" marks, revisions; states written once, shared by rows."""
    _script(
        db,
        """
        ALTER TABLE images ADD COLUMN done INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE images ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE images ADD COLUMN active_id INTEGER;
        ALTER TABLE images ADD COLUMN next_id INTEGER NOT NULL DEFAULT 1;
        CREATE TABLE states(
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            data BLOB NOT NULL);
        CREATE TABLE objects_v2(
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            segment_id INTEGER NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL, color TEXT NOT NULL,
            visible INTEGER NOT NULL, state_id INTEGER NOT NULL REFERENCES states(id),
            PRIMARY KEY(image_id, segment_id));
        CREATE TABLE drawings(
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            position INTEGER NOT NULL, shape TEXT NOT NULL, segment_id INTEGER, before_id INTEGER REFERENCES states(id),
            PRIMARY KEY(image_id, position));
        """
    )
    rows = db.execute("SELECT image_id, segment_id, name, color, visible, state FROM objects ORDER BY image_id, segment_id")
    for position, (image_id, segment_id, name, color, visible, state) in enumerate(rows.fetchall()):
        state_id = db.execute("INSERT INTO states(image_id, data) VALUES (?, ?)", (image_id, state)).lastrowid
        db.execute(
            "INSERT INTO objects_v2 VALUES (?, ?, ?, ?, ?, ?, ?)", (image_id, segment_id, position, name, color, visible, state_id)
        )
    _script(
        db,
        """
        DROP TABLE objects;
        ALTER TABLE objects_v2 RENAME TO objects;
        UPDATE images SET
            next_id = COALESCE((SELECT MAX(segment_id) + 1 FROM objects WHERE image_id = images.id), 1),
            active_id = (SELECT MAX(segment_id) FROM objects WHERE image_id = images.id);
        """
    )


def _schema_v3(db: sqlite3.Connection) -> None:
    """Each object's outline as last shown, so reopening an image does not trace every mask again."""
    db.execute("ALTER TABLE objects ADD COLUMN outline BLOB")


def _schema_v4(db: sqlite3.Connection) -> None:
    """Labels: each project's label set, and each object's label (none for the objects saved before)."""
    _script(
        db,
        """
        CREATE TABLE labels(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            position INTEGER NOT NULL, name TEXT NOT NULL, color TEXT NOT NULL,
            UNIQUE(project_id, name));
        ALTER TABLE objects ADD COLUMN label_id INTEGER REFERENCES labels(id);
        CREATE INDEX objects_by_label ON objects(label_id)
        """
    )


# MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_schema_v1, _schema_v2, _schema_v3, _schema_v4)
SCHEMA_VERSION = len(MIGRATIONS)


StateKey = tuple[int, int, int]


def state_key(state: SegmentState) -> StateKey:
    """What tells saved states apart: the identity of the prompt and mask objects, and the pick.

    A state and its compacted copy (``SegmentState.compacted``, which the undo
    history keeps) share their prompt and mask objects, so the history entry a
    refinement records is the row already saved for the object; and the store
    writes every state compacted, so a reloaded object is exactly what its
    history would restore.
    """
    return (id(state.prompt), id(state.mask), state.pick)


# An object as saved: its state, name, colour, visibility and label.
ObjectRecord = tuple[SegmentState, str, tuple[int, int, int], bool, int | None]


@dataclass
class SavedImage:
    """What a session last wrote for (or read of) one image, so the next save writes only what changed.

    Objects are compared by identity: a state is immutable, and a change
    makes a new one.
    """

    image_id: int
    revision: int
    objects: dict[int, ObjectRecord] = field(default_factory=dict)
    drawings: tuple[Applied, ...] = ()
    meta: tuple[int | None, int] = (None, 1)
    # Row ids of states already in the database, by ``state_key`` (the state is kept here, so its key stays unique).
    state_ids: dict[StateKey, tuple[SegmentState, int]] = field(default_factory=dict)


class Store:
    """The projects of one data directory. Safe to share between threads (one connection per thread)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self._local = threading.local()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"Cannot open the project store at {self.path}: {exc}") from exc

    # Connections and schema

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL loses no committed change when the process dies, only (rarely) on power loss.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands or none of it does."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        _CHECKPOINTS.request(self.path)

    def _migrate(self) -> None:
        probe = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)  # reads the version without changing the file
        try:
            version = probe.execute("PRAGMA user_version").fetchone()[0]
        finally:
            probe.close()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"The project store {self.path} was written by a newer samdash (schema {version}; this one reads up "
                f"to {SCHEMA_VERSION}). Upgrade samdash, or point SAMDASH_DATA_DIR elsewhere; the store was not changed."
            )
        if 0 < version < SCHEMA_VERSION:
            # The users' data outlives releases: keep the database as it was before changing its schema.
            backup = self.path.with_name(f"{DB_NAME}.schema-{version}.bak")
            db = self._connection()
            copy = sqlite3.connect(backup)
            db.backup(copy)
            copy.close()
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated meanwhile
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # Projects

    def create_project(self, name: str) -> ProjectInfo:
        project_id = secrets.token_urlsafe(6)
        created = time.time()
        with self._writing() as db:
            db.execute("INSERT INTO projects VALUES (?, ?, ?)", (project_id, name.strip() or "Untitled", created))
        return ProjectInfo(project_id, name.strip() or "Untitled", created, 0)

    def projects(self) -> list[ProjectInfo]:
        """Every project, the newest first."""
        rows = self._read(
            "SELECT p.id, p.name, p.created, COUNT(i.id) FROM projects p LEFT JOIN images i ON i.project_id = p.id "
            "GROUP BY p.id ORDER BY p.created DESC"
        )
        return [ProjectInfo(*row) for row in rows]

    def project(self, project_id: str) -> ProjectInfo | None:
        return next((p for p in self.projects() if p.id == project_id), None)

    def rename_project(self, project_id: str, name: str) -> None:
        with self._writing() as db:
            db.execute("UPDATE projects SET name = ? WHERE id = ?", (name.strip() or "Untitled", project_id))

    def delete_project(self, project_id: str) -> None:
        """The project, its images' objects, and the image files no other project uses."""
        with self._writing() as db:
            files = [row[0] for row in db.execute("SELECT file FROM images WHERE project_id = ?", (project_id,))]
            db.execute("DELETE FROM projects WHERE id = ?", (project_id,))
            unused = [f for f in files if db.execute("SELECT 1 FROM images WHERE file = ?", (f,)).fetchone() is None]
        for name in unused:
            (self.data_dir / name).unlink(missing_ok=True)
            self.thumbnail_path(Path(name).stem).unlink(missing_ok=True)

    # Labels

    def labels(self, project_id: str) -> list[LabelInfo]:
        """A project's label set, in the order the labels were added."""
        rows = self._read("SELECT id, project_id, name, color FROM labels WHERE project_id = ? ORDER BY position", (project_id,))
        return [LabelInfo(label_id, project, name, hex_to_rgb(color)) for label_id, project, name, color in rows]

    def add_label(self, project_id: str, name: str, color: tuple[int, int, int]) -> LabelInfo:
        name = label_name(name)
        with self._writing() as db:
            if db.execute("SELECT 1 FROM labels WHERE project_id = ? AND name = ?", (project_id, name)).fetchone():
                raise StoreError(f"There is a label {name!r} already.")
            position = db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM labels WHERE project_id = ?", (project_id,)).fetchone()[0]
            label_id = db.execute(
                "INSERT INTO labels(project_id, position, name, color) VALUES (?, ?, ?, ?)",
                (project_id, position, name, rgb_to_hex(color)),
            ).lastrowid
        return LabelInfo(label_id, project_id, name, color)

    def rename_label(self, label_id: int, name: str) -> None:
        """Rename a label; a name another label has is refused (merge the two instead)."""
        name = label_name(name)
        with self._writing() as db:
            project = db.execute("SELECT project_id FROM labels WHERE id = ?", (label_id,)).fetchone()
            if project is None:
                raise StoreError("That label was deleted elsewhere.")
            if db.execute("SELECT 1 FROM labels WHERE project_id = ? AND name = ? AND id != ?", (project[0], name, label_id)).fetchone():
                raise StoreError(f"There is a label {name!r} already: merge into it instead.")
            db.execute("UPDATE labels SET name = ? WHERE id = ?", (name, label_id))

    def delete_label(self, label_id: int, objects_become: int | None) -> int:
        """Delete a label; its objects take label ``objects_become`` (None: no label). Returns how many changed.

        An object in the deleted label's colour takes the new label's colour; one the analyst recoloured keeps its
        own. Every image whose objects change gets a new revision, so sessions showing it load it again.
        """
        with self._writing() as db:
            row = db.execute("SELECT project_id, color FROM labels WHERE id = ?", (label_id,)).fetchone()
            if row is None:
                raise StoreError("That label was deleted elsewhere.")
            if objects_become is not None:
                target = db.execute("SELECT color FROM labels WHERE id = ? AND project_id = ?", (objects_become, row[0])).fetchone()
                if target is None or objects_become == label_id:
                    raise StoreError("The objects must go to another label of the same project.")
                db.execute("UPDATE objects SET color = ? WHERE label_id = ? AND color = ?", (target[0], label_id, row[1]))
            db.execute(
                "UPDATE images SET revision = revision + 1 WHERE id IN (SELECT DISTINCT image_id FROM objects WHERE label_id = ?)",
                (label_id,),
            )
            changed = db.execute("UPDATE objects SET label_id = ? WHERE label_id = ?", (objects_become, label_id)).rowcount
            db.execute("DELETE FROM labels WHERE id = ?", (label_id,))
        return changed

    def label_counts(self, project_id: str, except_image: int | None = None) -> dict[int | None, int]:
        """Objects per label (None: no label) in a project, leaving out one image's (the page counts its own)."""
        query = "SELECT o.label_id, COUNT(*) FROM objects o JOIN images i ON i.id = o.image_id WHERE i.project_id = ? AND i.id != ?"
        return dict(self._read(query + " GROUP BY o.label_id", (project_id, -1 if except_image is None else except_image)))

    # Images

    def add_image(
        self, project_id: str, data: bytes, name: str, content_hash: str, size: tuple[int, int], thumbnail: bytes = b""
    ) -> tuple[ImageInfo, bool]:
        """Add an image file's bytes (and a small JPEG of it) to a project; the same pixels already there are not
        added again.

        Returns the image and whether it is new. ``size`` is (width, height).
        """
        suffix = Path(name).suffix.lower() or ".img"
        relative = f"images/{content_hash[:2]}/{content_hash}{suffix}"
        try:
            self._write_once(self.data_dir / relative, data)
            if thumbnail:
                self._write_once(self.thumbnail_path(content_hash), thumbnail)
            with self._writing() as db:
                existing = db.execute(
                    "SELECT id FROM images WHERE project_id = ? AND content_hash = ?", (project_id, content_hash)
                ).fetchone()
                if existing is not None:
                    return self._image(db, existing[0]), False
                if db.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone() is None:
                    raise StoreError(f"There is no project {project_id!r}.")
                position = db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM images WHERE project_id = ?", (project_id,)).fetchone()[0]
                image_id = db.execute(
                    "INSERT INTO images(project_id, position, name, content_hash, file, width, height) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (project_id, position, name, content_hash, relative, size[0], size[1]),
                ).lastrowid
                return self._image(db, image_id), True
        except OSError as exc:
            raise StoreError(f"Cannot save {name} into {self.data_dir}: {exc.strerror or exc}") from exc

    def images(self, project_id: str) -> list[ImageInfo]:
        """A project's images in the order they were added."""
        return [ImageInfo(*row) for row in self._read(_IMAGE_QUERY + "WHERE i.project_id = ? GROUP BY i.id ORDER BY i.position", (project_id,))]

    def image(self, image_id: int) -> ImageInfo | None:
        return self._image(self._connection(), image_id)

    def _image(self, db: sqlite3.Connection, image_id: int) -> ImageInfo | None:
        row = db.execute(_IMAGE_QUERY + "WHERE i.id = ? GROUP BY i.id", (image_id,)).fetchone()
        return ImageInfo(*row) if row is not None else None

    def image_path(self, image: ImageInfo) -> Path:
        return self.data_dir / image.file

    def load_image(self, image: ImageInfo, max_pixels: int) -> LoadedImage:
        """A stored image decoded, its pixels known by the hash they were stored under.

        The images decoded last are kept (see ``DECODED_IMAGES_BYTES``): "Next" finds the image that encode-ahead
        has just decoded, and two requests for one image at once decode it once.
        """
        path = self.image_path(image)
        if not path.is_file():
            raise StoreError(f"The file of {image.name} is missing from the data directory ({path}); restore it from a backup.")
        return _DECODED.get_or_compute(
            (image.content_hash, image.name, max_pixels),
            lambda: load_image_file(path, max_pixels, name=image.name, content_hash=image.content_hash),
        )

    def thumbnail_path(self, content_hash: str) -> Path:
        return self.data_dir / "thumbnails" / f"{content_hash}.jpg"

    @staticmethod
    def _write_once(target: Path, data: bytes) -> None:
        """A file named by its content is written once, whole or not at all."""
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
        partial.write_bytes(data)
        os.replace(partial, target)

    def set_done(self, image_id: int, done: bool) -> None:
        with self._writing() as db:
            db.execute("UPDATE images SET done = ? WHERE id = ?", (int(done), image_id))

    def revision(self, image_id: int) -> int | None:
        row = self._connection().execute("SELECT revision FROM images WHERE id = ?", (image_id,)).fetchone()
        return row[0] if row is not None else None

    # Objects

    def load_workspace(self, image: ImageInfo) -> tuple[Workspace, SavedImage]:
        """The image's objects and canvas record as last saved, and what was read (for the next save)."""
        try:
            return self._load_workspace(image)
        except (sqlite3.Error, ValueError, KeyError, zlib.error) as exc:
            raise StoreError(f"The objects of {image.name} cannot be read from {self.path} ({exc}).") from exc

    def _load_workspace(self, image: ImageInfo) -> tuple[Workspace, SavedImage]:
        db = self._connection()
        db.execute("BEGIN")  # one consistent read
        try:
            revision, active_id, next_id = db.execute(
                "SELECT revision, active_id, next_id FROM images WHERE id = ?", (image.id,)
            ).fetchone()
            loaded = {
                state_id: state_from_bytes(data)
                for state_id, data in db.execute("SELECT id, data FROM states WHERE image_id = ?", (image.id,))
            }
            objects = db.execute(
                "SELECT segment_id, name, color, visible, state_id, outline, label_id FROM objects WHERE image_id = ? "
                "ORDER BY position",
                (image.id,),
            ).fetchall()
            drawings = db.execute(
                "SELECT shape, segment_id, before_id FROM drawings WHERE image_id = ? ORDER BY position", (image.id,)
            ).fetchall()
        finally:
            db.execute("COMMIT")
        saved = SavedImage(image.id, revision, meta=(active_id, next_id))
        saved.state_ids = {state_key(state): (state, state_id) for state_id, state in loaded.items()}
        segments = []
        for segment_id, name, color, visible, state_id, outline, label_id in objects:
            segment = Segment(segment_id, name, hex_to_rgb(color), loaded[state_id], bool(visible), label_id)
            if outline is not None:
                segment.keep_outline(outline_from_bytes(outline))
            segments.append(segment)
            saved.objects[segment_id] = _object_record(segment)
        applied = tuple(
            Applied(shape_from_json(shape), segment_id, loaded[before_id] if before_id is not None else None)
            for shape, segment_id, before_id in drawings
        )
        saved.drawings = applied
        workspace = Workspace.restored(image.content_hash, segments, list(applied), active_id, next_id)
        return workspace, saved

    def save_workspace(self, workspace: Workspace, saved: SavedImage) -> bool:
        """Write what changed since ``saved`` in one transaction; False when nothing had changed.

        Raises :class:`Conflict` when another session saved this image
        meanwhile (nothing is written then), :class:`StoreError` when the
        write fails (nothing is written either). ``saved`` is brought up to
        date only once the transaction has landed.
        """
        objects = {segment.id: _object_record(segment) for segment in workspace.segments}
        drawings = tuple(workspace.applied)
        meta = (workspace.active_id, workspace.next_id)
        changed = [sid for sid, record in objects.items() if not _same_record(saved.objects.get(sid), record)]
        removed = [sid for sid in saved.objects if sid not in objects]
        drawings_changed = len(drawings) != len(saved.drawings) or any(a is not b for a, b in zip(drawings, saved.drawings))
        if not (changed or removed or drawings_changed or meta != saved.meta):
            return False
        new_ids: dict[StateKey, tuple[SegmentState, int]] = {}

        def state_id(db: sqlite3.Connection, state: SegmentState) -> int:
            key = state_key(state)
            known = saved.state_ids.get(key) or new_ids.get(key)
            if known is not None:
                return known[1]
            data = state_to_bytes(state.compacted())
            row = db.execute("INSERT INTO states(image_id, data) VALUES (?, ?)", (saved.image_id, data)).lastrowid
            new_ids[key] = (state, row)
            return row

        with self._writing() as db:
            row = db.execute("SELECT revision FROM images WHERE id = ?", (saved.image_id,)).fetchone()
            if row is None:
                raise Conflict("This image was removed from its project elsewhere.")
            if row[0] != saved.revision:
                raise Conflict("This image was changed elsewhere (another tab or a teammate).")
            for sid in removed:
                db.execute("DELETE FROM objects WHERE image_id = ? AND segment_id = ?", (saved.image_id, sid))
            positions = {segment.id: index for index, segment in enumerate(workspace.segments)}
            # A label deleted since this session read the label set (in another tab) leaves its objects unlabelled.
            labels = {row[0] for row in db.execute(
                "SELECT l.id FROM labels l JOIN images i ON i.project_id = l.project_id WHERE i.id = ?", (saved.image_id,))}
            # Outlines the page has traced already are kept with the object; none is traced just to be saved.
            outlines = {segment.id: segment.traced_outline() for segment in workspace.segments}
            for sid in changed:
                state, name, color, visible, label_id = objects[sid]
                db.execute(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (saved.image_id, sid, positions[sid], name, rgb_to_hex(color), int(visible), state_id(db, state),
                     outline_to_bytes(outlines[sid]), label_id if label_id in labels else None),
                )
            if drawings_changed:
                db.execute("DELETE FROM drawings WHERE image_id = ?", (saved.image_id,))
                db.executemany(
                    "INSERT INTO drawings VALUES (?, ?, ?, ?, ?)",
                    [
                        (saved.image_id, position, shape_to_json(entry.shape), entry.segment_id,
                         state_id(db, entry.before) if entry.before is not None else None)
                        for position, entry in enumerate(drawings)
                    ],
                )
            kept_ids = {state_key(objects[sid][0]) for sid in objects}
            kept_ids |= {state_key(entry.before) for entry in drawings if entry.before is not None}
            known = {key: value for key, value in (saved.state_ids | new_ids).items() if key in kept_ids}
            stale = [value[1] for key, value in (saved.state_ids | new_ids).items() if key not in kept_ids]
            db.executemany("DELETE FROM states WHERE id = ?", [(row_id,) for row_id in stale])
            db.execute(
                "UPDATE images SET revision = revision + 1, active_id = ?, next_id = ? WHERE id = ?",
                (*meta, saved.image_id),
            )
        saved.revision += 1
        saved.objects = objects
        saved.drawings = drawings
        saved.meta = meta
        saved.state_ids = known
        return True

    # Plumbing

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._transaction() as db:
                yield db
        except sqlite3.Error as exc:
            raise StoreError(f"The project store could not be written ({exc}).") from exc

    def _read(self, query: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._connection().execute(query, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"The project store could not be read ({exc}).") from exc


def label_name(name: str) -> str:
    """A label's name as stored: its words separated by single spaces."""
    name = " ".join(name.split())
    if not name:
        raise StoreError("A label needs a name.")
    return name


_IMAGE_QUERY = (
    "SELECT i.id, i.project_id, i.position, i.name, i.content_hash, i.file, i.width, i.height, i.done, "
    "COUNT(o.segment_id), i.revision FROM images i LEFT JOIN objects o ON o.image_id = i.id "
)


def _object_record(segment: Segment) -> ObjectRecord:
    return (segment.state, segment.name, tuple(segment.color), segment.visible, segment.label_id)


def _same_record(old: tuple | None, new: tuple) -> bool:
    return old is not None and old[0] is new[0] and old[1:] == new[1:]
