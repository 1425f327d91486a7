"""Adding a server folder to a project: good files added, bad ones named, duplicates once, progress reported."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdash.errors import FolderError
from samdash.folder_import import FolderImport, import_folder
from samdash.store import Store


def _picture(seed: int, fmt: str) -> bytes:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path) -> Path:
    folder = tmp_path / "root" / "survey"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(_picture(1, "PNG"))
    (folder / "b.jpg").write_bytes(_picture(2, "JPEG"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (folder / "c-copy.png").write_bytes(_picture(1, "PNG"))  # a.png's pixels under another name
    (folder / "readme.txt").write_text("not an image")
    return folder


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "data")


def test_a_folder_is_added_bad_files_named_and_duplicates_added_once(folder, store):
    project = store.create_project("survey")
    calls = []
    result = import_folder(store, project.id, folder, [folder.parent], 50_000_000, progress=lambda *a: calls.append(a))
    assert [i.name for i in store.images(project.id)] == ["a.png", "b.jpg"]
    assert [i.name for i in result.added] == ["a.png", "b.jpg"]
    assert [i.name for i in result.known] == ["a.png"]  # c-copy.png: the same pixels, not added twice
    [skip] = result.skipped
    assert skip.startswith("broken.jpg ")
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert result.summary() == f"Added 2 images, 1 already in the project, 1 skipped: {skip}"
    for info in result.added:  # the file as it was, and its thumbnail
        assert store.image_path(info).read_bytes() == (folder / info.name).read_bytes()
        assert store.thumbnail_path(info.content_hash).stat().st_size > 0


def test_adding_the_folder_again_adds_nothing(folder, store):
    project = store.create_project("survey")
    import_folder(store, project.id, folder, [folder.parent], 50_000_000)
    again = import_folder(store, project.id, folder, [folder.parent], 50_000_000)
    assert again.added == [] and len(again.known) == 3
    assert again.first() == store.images(project.id)[0]
    assert len(store.images(project.id)) == 2


def test_too_large_images_are_skipped_with_the_limit(folder, store):
    project = store.create_project("survey")
    result = import_folder(store, project.id, folder, [folder.parent], max_pixels=1000)
    assert result.added == [] and result.first() is None
    assert len(result.skipped) == 4 and all("over the limit" in s for s in result.skipped if "broken" not in s)


def test_a_file_linking_out_of_the_roots_is_skipped_and_named(folder, store, tmp_path):
    outside = tmp_path / "private.png"
    outside.write_bytes(_picture(9, "PNG"))
    (folder / "z-link.png").symlink_to(outside)
    project = store.create_project("survey")
    result = import_folder(store, project.id, folder, [folder.parent], 50_000_000)
    assert "private.png" not in {i.name for i in store.images(project.id)}
    assert "z-link.png" not in {i.name for i in store.images(project.id)}
    assert any(s.startswith("z-link.png links to a file outside") for s in result.skipped)


def test_a_folder_outside_the_roots_is_refused_before_anything_is_added(folder, store, tmp_path):
    project = store.create_project("survey")
    with pytest.raises(FolderError):
        import_folder(store, project.id, folder, [tmp_path / "elsewhere"], 50_000_000)
    assert store.images(project.id) == []


def test_the_summary_of_a_folder_without_images():
    assert FolderImport().summary().startswith("The folder has no images")
    many = FolderImport(skipped=[f"f{n}.png is damaged." for n in range(5)])
    assert many.summary() == "Added 0 images, 5 skipped: f0.png is damaged. f1.png is damaged. f2.png is damaged. …and 2 more."
