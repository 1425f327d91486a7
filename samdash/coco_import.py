"""Existing annotations into a project: a COCO instances file and its images become objects to review and refine.

Categories become labels (an existing label of the same name is reused),
annotations become objects with their exact masks (RLE, uncompressed RLE or
polygons) and their ``score`` when given. An imported object has no SAM
logits: a point refining it starts from its mask's box plus the new points.

Nothing is imported silently short: whatever is left out (an image missing
from the folder, an annotation naming an unknown image or category, a
segmentation that cannot be read) is listed in the report with the reason.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from samdash.errors import SamdashError
from samdash.imaging import load_image_file, thumbnail_jpeg
from samdash.render import palette_color
from samdash.segments import Segment, SegmentState
from samdash.store import LabelInfo, ProjectInfo, Store, StoreError, label_name

# What an imported object's candidates are known as: no engine can take their logits back.
IMPORT_SOURCE = "coco-import"


@dataclass
class ImportReport:
    """What an import added, and what it left out and why."""

    images: int = 0
    objects: int = 0
    labels_added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def text(self) -> str:
        line = f"{self.images} images, {self.objects} objects imported"
        if self.labels_added:
            line += f"; new labels: {', '.join(self.labels_added)}"
        if self.skipped:
            line += f"; {len(self.skipped)} left out: " + "; ".join(self.skipped)
        return line


def _document(source: Path | bytes) -> dict:
    try:
        text = source.read_bytes() if isinstance(source, Path) else source
        document = json.loads(text)
    except OSError as exc:
        raise SamdashError(f"cannot read {source}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SamdashError(f"not a COCO file: the JSON cannot be read ({exc})") from exc
    if not isinstance(document, dict) or not all(isinstance(document.get(key), list) for key in ("images", "annotations", "categories")):
        raise SamdashError("not a COCO instances file: it needs lists of 'images', 'annotations' and 'categories'")
    return document


def _json_is(value: object, *types: type) -> bool:
    """Whether a value read from JSON is one of ``types`` (Python takes JSON's true and false for numbers)."""
    return isinstance(value, types) and not isinstance(value, bool)


def _rle_runs(counts: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (COCO's own scheme: 5-bit groups, deltas from two back)."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise ValueError("its RLE ends in the middle of a number")
            chunk = ord(counts[position]) - 48
            value |= (chunk & 0x1F) << (5 * shift)
            more = bool(chunk & 0x20)
            position += 1
            shift += 1
            if not more and chunk & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _checked_rle(segmentation: dict, height: int, width: int) -> dict:
    """COCO RLE whose runs are whole and cover the image exactly (pycocotools trusts them: short runs read memory)."""
    if list(segmentation.get("size", [])) != [height, width]:
        raise ValueError(f"its RLE is {segmentation.get('size')}, the image {height}×{width}")
    counts = segmentation["counts"]
    if isinstance(counts, list):
        if not all(_json_is(run, int) and run >= 0 for run in counts):
            raise ValueError("its RLE counts are not whole numbers of pixels")
        runs = counts
    elif isinstance(counts, str):
        runs = _rle_runs(counts)
    else:
        raise ValueError("its RLE counts are neither a list nor a string")
    if any(run < 0 for run in runs) or sum(runs) != height * width:
        raise ValueError(f"its RLE covers {sum(runs)} pixels, the image {height * width}")
    if isinstance(counts, list):
        return coco_mask.frPyObjects(segmentation, height, width)
    return {"size": [height, width], "counts": counts.encode("ascii")}


def _checked_polygons(segmentation: list, height: int, width: int) -> list[list[float]]:
    """Polygons of three points or more, with finite coordinates near the image (far ones crash pycocotools)."""
    polygons = []
    for polygon in segmentation:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise ValueError("a polygon is not a list of three x, y pairs or more")
        values = np.asarray(polygon, float) if all(_json_is(v, int, float) for v in polygon) else None
        if values is None or not np.isfinite(values).all():
            raise ValueError("a polygon has coordinates that are not numbers")
        xs, ys = values[0::2], values[1::2]
        if xs.min() < -width or xs.max() > 2 * width or ys.min() < -height or ys.max() > 2 * height:
            raise ValueError("a polygon lies far outside the image")
        polygons.append(values.tolist())
    if not polygons:
        raise ValueError("it has no polygon")
    return polygons


def _mask(segmentation: object, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or uncompressed RLE) as a boolean mask; ValueError when unreadable."""
    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(_checked_polygons(segmentation, height, width), height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        rle = _checked_rle(segmentation, height, width)
    else:
        raise ValueError("its segmentation is neither polygons nor RLE")
    return coco_mask.decode(rle).astype(bool)


def _key(value: object) -> int | str | None:
    """An id as COCO files give them (a number or a string); anything else names nothing."""
    return value if _json_is(value, int, str) else None


def imported_segment(segment_id: int, mask: np.ndarray, score: float | None, label: LabelInfo | None) -> Segment:
    """An object from someone else's mask, exact, labelled with its category."""
    segment = Segment.create(segment_id, SegmentState.fixed(mask, score, IMPORT_SOURCE))
    if label is not None:
        segment.label_id, segment.color = label.id, label.color
    return segment


def import_coco(store: Store, source: Path | bytes, images_dir: Path, project: ProjectInfo, max_pixels: int,
                progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Add the file's images (from ``images_dir``) and their annotations to ``project``; what was left out is reported.

    ``progress(done, total)`` is called after each image entry of the file, found or not.
    """
    document = _document(source)
    report = ImportReport()
    labels = {label.name: label for label in store.labels(project.id)}
    category_labels: dict[int | str, LabelInfo] = {}
    for category in document["categories"]:
        try:
            name = label_name(str(category.get("name", ""))) if isinstance(category, dict) else ""
        except StoreError:
            name = ""
        if not name or _key(category.get("id")) is None:
            report.skipped.append(f"category {category!r}: it needs a name and an id")
            continue
        if name not in labels:
            labels[name] = store.add_label(project.id, name, palette_color(len(labels)))
            report.labels_added.append(name)
        category_labels[_key(category["id"])] = labels[name]
    entries = [entry for entry in document["images"] if isinstance(entry, dict) and _key(entry.get("id")) is not None]
    by_image: dict[int | str, list[dict]] = defaultdict(list)
    known = {_key(entry["id"]) for entry in entries}
    for annotation in document["annotations"]:
        image_id = _key(annotation.get("image_id")) if isinstance(annotation, dict) else None
        if image_id not in known:
            what = annotation.get("id") if isinstance(annotation, dict) else annotation
            report.skipped.append(f"annotation {what!r}: no image {image_id!r} in the file")
            continue
        by_image[image_id].append(annotation)
    files = _image_files(entries, images_dir, {image_id: len(found) for image_id, found in by_image.items()}, report)
    for done, entry in enumerate(entries, 1):
        path = files.get(_key(entry["id"]))
        annotations = by_image.get(_key(entry["id"]), [])
        if path is not None:
            try:
                _import_image(store, entry, path, annotations, category_labels, project, max_pixels, report)
            except SamdashError as exc:
                report.skipped.append(f"image {path.name}: {exc} ({len(annotations)} annotations left out)")
        if progress is not None:
            progress(done, len(entries))
    return report


def _image_files(entries: list[dict], images_dir: Path, annotated: dict[int | str, int], report: ImportReport) -> dict[int | str, Path]:
    """Each image entry's file in ``images_dir``: by its ``file_name``, else by that name's last part (a file name
    with the folder it had elsewhere), never outside the folder and never one file for two entries."""
    folder = images_dir.resolve()
    found: dict[int | str, Path] = {}
    used: dict[Path, str] = {}
    for entry in entries:
        name = str(entry.get("file_name", ""))
        path = None
        for candidate in (folder / name, folder / Path(name).name):
            resolved = candidate.resolve()
            if name and resolved.is_relative_to(folder) and resolved.is_file():
                path = resolved
                break
        left_out = f"({annotated.get(_key(entry['id']), 0)} annotations left out)"
        if path is None:
            report.skipped.append(f"image {name or repr(entry)}: not in the images given {left_out}")
        elif path in used:
            report.skipped.append(f"image {name}: its file {path.name} is {used[path]}'s already, so which is which is unclear {left_out}")
        else:
            used[path] = name
            found[_key(entry["id"])] = path
    return found


def _import_image(store: Store, entry: dict, path: Path, annotations: list[dict], category_labels: dict[int | str, LabelInfo],
                  project: ProjectInfo, max_pixels: int, report: ImportReport) -> None:
    image = load_image_file(path, max_pixels=max_pixels)
    stated = (entry.get("width"), entry.get("height"))
    if stated != (None, None) and stated != (image.width, image.height):
        raise SamdashError(f"the file says {stated[0]}×{stated[1]}, the image is {image.width}×{image.height}")
    info, _ = store.add_image(project.id, path.read_bytes(), path.name, image.content_hash, (image.width, image.height),
                              thumbnail_jpeg(image.rgb))
    workspace, saved = store.load_workspace(info)
    for annotation in annotations:
        where = f"annotation {annotation.get('id')!r} on {path.name}"
        label = category_labels.get(_key(annotation.get("category_id")))
        if label is None:
            report.skipped.append(f"{where}: no category {annotation.get('category_id')!r} in the file")
            continue
        try:
            mask = _mask(annotation.get("segmentation"), image.height, image.width)
        except (ValueError, TypeError, OverflowError) as exc:
            report.skipped.append(f"{where}: {exc}")
            continue
        if not mask.any():
            report.skipped.append(f"{where}: its mask is empty")
            continue
        score = annotation.get("score")
        score = float(score) if _json_is(score, int, float) and math.isfinite(score) else None
        workspace.add(imported_segment(workspace.next_id, mask, score, label))
        report.objects += 1
    store.save_workspace(workspace, saved)
    report.images += 1
