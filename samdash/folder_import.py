"""A server folder's images added to a project, one decoded image in memory at a time.

A file that cannot be used is skipped and named in the summary; the others
are still added. The same pixels already in the project are not added again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from samdash.errors import FolderError, ImageError
from samdash.folders import allowed_path, image_files
from samdash.imaging import SUPPORTED_EXTENSIONS, load_image_file, thumbnail_jpeg
from samdash.store import ImageInfo, Store

# Reasons spelled out in the summary; the rest are counted.
SHOWN_SKIPS = 3


@dataclass
class FolderImport:
    added: list[ImageInfo] = field(default_factory=list)
    known: list[ImageInfo] = field(default_factory=list)  # the same pixels were in the project already
    skipped: list[str] = field(default_factory=list)  # why each file was not added, naming it

    def first(self) -> ImageInfo | None:
        """The image to open afterwards: the first one added, else the first one the project had already."""
        return next(iter(self.added or self.known), None)

    def summary(self) -> str:
        """One short paragraph: what was added, what was there already, and which files were skipped and why."""
        if not (self.added or self.known or self.skipped):
            return f"The folder has no images ({', '.join(SUPPORTED_EXTENSIONS)})."
        parts = [f"Added {_count(len(self.added), 'image')}"]
        if self.known:
            parts.append(f"{len(self.known)} already in the project")
        text = ", ".join(parts)
        if not self.skipped:
            return text + "."
        reasons = " ".join(self.skipped[:SHOWN_SKIPS])
        more = f" …and {len(self.skipped) - SHOWN_SKIPS} more." if len(self.skipped) > SHOWN_SKIPS else ""
        return f"{text}, {len(self.skipped)} skipped: {reasons}{more}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def import_folder(
    store: Store,
    project_id: str,
    folder: str | os.PathLike[str],
    roots: Iterable[Path],
    max_pixels: int,
    progress: Callable[[int, int], None] | None = None,
) -> FolderImport:
    """Add every image file of ``folder`` (not its subfolders) to a project; ``progress(done, total)`` after each file.

    Raises :class:`FolderError` when the folder may not be read, and
    :class:`~samdash.store.StoreError` when the store cannot be written (the
    images added until then stay in the project).
    """
    roots = tuple(roots)
    files = image_files(folder, roots)
    result = FolderImport()
    for done, path in enumerate(files, start=1):
        try:
            source = allowed_path(path, roots)  # a file may be a link out of the roots
            image = load_image_file(source, max_pixels=max_pixels)
            data = source.read_bytes()
        except FolderError:
            result.skipped.append(f"{path.name} links to a file outside the folders this server lets you browse.")
        except ImageError as exc:
            result.skipped.append(str(exc))
        except OSError as exc:
            result.skipped.append(f"{path.name} cannot be read ({exc.strerror or exc}).")
        else:
            size = (image.width, image.height)
            info, new = store.add_image(project_id, data, path.name, image.content_hash, size, thumbnail_jpeg(image.rgb))
            (result.added if new else result.known).append(info)
            del image, data  # one decoded image at a time
        if progress is not None:
            progress(done, len(files))
    return result
