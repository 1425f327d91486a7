"""Server-side folders a project can be made from, for team servers.

Only what lies under SAMDASH_IMAGE_ROOTS is ever listed or read: every path
asked for is resolved (``..`` and symlinks followed) and refused unless it
lands inside a root, so neither a crafted path nor a link reaches the rest of
the server. With no roots configured nothing is browsable.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from samdash.errors import FolderError
from samdash.imaging import SUPPORTED_EXTENSIONS

# Levels below a root that are listed, and folders listed in all: a huge tree is cut short, not walked for minutes.
MAX_DEPTH = 4
MAX_FOLDERS = 300


def _resolved(roots: Iterable[Path]) -> tuple[Path, ...]:
    return tuple(Path(root).resolve() for root in roots)


def allowed_path(requested: str | os.PathLike[str], roots: Iterable[Path]) -> Path:
    """``requested`` resolved, following ``..`` and symlinks; :class:`FolderError` unless it lies inside a root.

    Whether a path outside the roots exists is never said: it is refused the same way either way.
    """
    resolved_roots = _resolved(roots)
    if not resolved_roots:
        raise FolderError("No server folders can be browsed here: SAMDASH_IMAGE_ROOTS is not set.")
    path = Path(requested)
    if not path.is_absolute():
        raise FolderError(f"“{requested}” is not a full path; pick a folder from the list.")
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise FolderError(f"“{requested}” cannot be resolved ({exc}).") from exc
    if not any(resolved.is_relative_to(root) for root in resolved_roots):
        raise FolderError(f"“{requested}” is outside the folders this server lets you browse (SAMDASH_IMAGE_ROOTS).")
    if not resolved.exists():
        raise FolderError(f"“{requested}” does not exist.")
    return resolved


def allowed_folder(requested: str | os.PathLike[str], roots: Iterable[Path]) -> Path:
    """As :func:`allowed_path`, and it must be a folder."""
    folder = allowed_path(requested, roots)
    if not folder.is_dir():
        raise FolderError(f"“{requested}” is not a folder.")
    return folder


def folder_label(folder: Path, roots: Iterable[Path]) -> str:
    """A short name for a browsable folder: its path from its root's name (``photos/2024/june``)."""
    for root in _resolved(roots):
        if folder.is_relative_to(root):
            return str(Path(root.name or str(root)) / folder.relative_to(root))
    return str(folder)


def browsable_folders(roots: Iterable[Path], max_depth: int = MAX_DEPTH, limit: int = MAX_FOLDERS) -> list[Path]:
    """The roots and the folders under them, resolved, each once, in tree order; hidden and unreadable ones left out.

    The tree is walked breadth first, so a deep branch cannot crowd out its
    siblings when ``limit`` cuts the list short.
    """
    resolved_roots = _resolved(roots)
    found: list[Path] = []
    seen: set[Path] = set()
    queue = deque((root, 0) for root in resolved_roots if root.is_dir())
    while queue and len(found) < limit:
        folder, depth = queue.popleft()
        if folder in seen:  # a link to a folder listed already
            continue
        seen.add(folder)
        found.append(folder)
        if depth < max_depth:
            for child in _subfolders(folder):
                resolved = child.resolve()
                if any(resolved.is_relative_to(root) for root in resolved_roots):
                    queue.append((resolved, depth + 1))

    def tree_order(folder: Path) -> tuple[int, tuple[str, ...]]:
        root = next(i for i, root in enumerate(resolved_roots) if folder.is_relative_to(root))
        return root, tuple(part.casefold() for part in folder.relative_to(resolved_roots[root]).parts)

    return sorted(found, key=tree_order)


def _subfolders(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return [Path(e.path) for e in entries if not e.name.startswith(".") and _is_dir(e)]
    except OSError:  # a folder this process may not read is simply not listed
        return []


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def image_files(folder: str | os.PathLike[str], roots: Iterable[Path]) -> list[Path]:
    """The image files directly in ``folder`` (by extension; hidden ones left out), in natural name order.

    The paths are as listed, not resolved: a file may still be a link out of
    the roots, which :func:`allowed_path` refuses when it is read.
    """
    checked = allowed_folder(folder, roots)
    try:
        with os.scandir(checked) as entries:
            files = [
                Path(e.path)
                for e in entries
                if not e.name.startswith(".") and Path(e.name).suffix.lower().lstrip(".") in SUPPORTED_EXTENSIONS and _is_file(e)
            ]
    except OSError as exc:
        raise FolderError(f"“{folder}” cannot be read ({exc.strerror or exc}).") from exc
    return sorted(files, key=lambda path: _natural(path.name))


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _natural(name: str) -> tuple[tuple[int, int | str], ...]:
    """``img2`` before ``img10``, case ignored: the order a camera or a person numbered the files in."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name.casefold()) if part)
