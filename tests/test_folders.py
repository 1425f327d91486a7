"""Server folders: only what lies under the roots is listed or read, whatever path or link is asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from samdash.errors import FolderError
from samdash.folders import allowed_folder, allowed_path, browsable_folders, folder_label, image_files


@pytest.fixture
def tree(tmp_path) -> tuple[Path, Path]:
    """A root with subfolders and a secret folder beside it, outside the root."""
    root = tmp_path / "photos"
    for sub in ("2024/june", "2024/may", "2023", ".cache"):
        (root / sub).mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.png").write_bytes(b"not for you")
    return root, secret


def test_a_folder_inside_a_root_is_allowed_and_resolved(tree):
    root, _ = tree
    assert allowed_folder(root / "2024" / ".." / "2023", [root]) == root / "2023"


@pytest.mark.parametrize("requested", ["{root}/..", "{root}/2024/../../secret", "{secret}", "/etc", "{root}x"])
def test_paths_outside_the_roots_are_refused(tree, requested):
    root, secret = tree
    with pytest.raises(FolderError, match="outside the folders"):
        allowed_path(requested.format(root=root, secret=secret), [root])


def test_a_missing_path_outside_is_refused_as_outside_not_as_missing(tree):
    root, _ = tree
    with pytest.raises(FolderError, match="outside the folders"):
        allowed_path("/no/such/place", [root])
    with pytest.raises(FolderError, match="does not exist"):
        allowed_path(root / "no-such-folder", [root])


def test_a_relative_path_is_refused(tree, monkeypatch):
    root, _ = tree
    monkeypatch.chdir(root)  # "2023" would resolve inside the root from here: it is refused all the same
    with pytest.raises(FolderError, match="not a full path"):
        allowed_path("2023", [root])


def test_a_symlink_out_of_the_root_is_refused(tree):
    root, secret = tree
    (root / "escape").symlink_to(secret)
    (root / "key.png").symlink_to(secret / "key.png")
    with pytest.raises(FolderError, match="outside the folders"):
        allowed_folder(root / "escape", [root])
    with pytest.raises(FolderError, match="outside the folders"):
        allowed_path(root / "key.png", [root])
    assert secret not in browsable_folders([root])


def test_a_symlink_between_two_roots_is_allowed(tree):
    root, secret = tree
    (root / "shared").symlink_to(secret)
    assert allowed_folder(root / "shared", [root, secret]) == secret


def test_with_no_roots_nothing_is_browsable(tree):
    root, _ = tree
    assert browsable_folders([]) == []
    with pytest.raises(FolderError, match="SAMDASH_IMAGE_ROOTS is not set"):
        allowed_folder(root, [])


def test_a_path_that_is_a_file_is_not_a_folder(tree):
    root, _ = tree
    (root / "a.png").write_bytes(b"x")
    with pytest.raises(FolderError, match="not a folder"):
        allowed_folder(root / "a.png", [root])


def test_browsable_folders_in_tree_order_without_hidden_ones_and_links_listed_once(tree):
    root, _ = tree
    (root / "2023" / "again").symlink_to(root / "2024")
    folders = browsable_folders([root])
    assert [folder_label(f, [root]) for f in folders] == ["photos", "photos/2023", "photos/2024", "photos/2024/june", "photos/2024/may"]


def test_browsable_folders_stop_at_the_depth_and_the_limit(tree):
    root, _ = tree
    assert browsable_folders([root], max_depth=1) == [root, root / "2023", root / "2024"]
    assert len(browsable_folders([root], limit=2)) == 2


def test_image_files_are_the_supported_files_in_natural_order(tree):
    root, _ = tree
    folder = root / "2023"
    for name in ("img10.JPG", "img2.png", "img1.webp", "notes.txt", ".hidden.png", "noext"):
        (folder / name).write_bytes(b"x")
    (folder / "sub.png").mkdir()  # a folder named like an image is not a file
    assert [p.name for p in image_files(folder, [root])] == ["img1.webp", "img2.png", "img10.JPG"]


def test_image_files_of_a_folder_outside_are_refused(tree):
    root, secret = tree
    with pytest.raises(FolderError, match="outside the folders"):
        image_files(secret, [root])
