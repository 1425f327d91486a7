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
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from samdash.engine import Candidates, MaskGeometry
from samdash.errors import SamdashError
from samdash.imaging import load_image_file, thumbnail_jpeg
from samdash.masks import CompactMask
from samdash.prompts import box_prompt
from samdash.render import palette_color
from samdash.segments import Segment, SegmentState
from samdash.store import ProjectInfo, Store

# What an imported object's candidates are known as: no engine can take their logits back.
IMPORT_SOURCE = "coco-import"
# The side of the in-or-out picture kept as an imported object's low-resolution "logits" (for thumbnails).
_PREVIEW_SIDE = 256


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


def _mask(segmentation: object, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or uncompressed RLE) as a boolean mask; ValueError when unreadable."""
    try:
        if isinstance(segmentation, list):
            polygons = [polygon for polygon in segmentation if isinstance(polygon, list) and len(polygon) >= 6]
            if not polygons:
                raise ValueError("no polygon with three points or more")
            rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
        elif isinstance(segmentation, dict) and "counts" in segmentation:
            if list(segmentation.get("size", [])) != [height, width]:
                raise ValueError(f"its RLE is {segmentation.get('size')}, the image {height}×{width}")
            counts = segmentation["counts"]
            rle = coco_mask.frPyObjects(segmentation, height, width) if isinstance(counts, list) else {
                "size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        else:
            raise ValueError("its segmentation is neither polygons nor RLE")
        return coco_mask.decode(rle).astype(bool)
    except (TypeError, IndexError, UnicodeEncodeError) as exc:
        raise ValueError(f"its segmentation cannot be read ({exc})") from exc


def imported_segment(segment_id: int, mask: np.ndarray, score: float | None, label_id: int | None) -> Segment:
    """An object from someone else's mask: its box as the prompt, the mask exact, no logits SAM can take back."""
    height, width = mask.shape
    compact = CompactMask.encode(mask)
    x, y, w, h = compact.bbox
    scale = _PREVIEW_SIDE / max(height, width)
    small = (max(1, round(height * scale)), max(1, round(width * scale)))
    preview = cv2.resize(mask.astype(np.uint8), small[::-1], interpolation=cv2.INTER_AREA) > 0
    candidates = Candidates(
        np.array([math.nan if score is None else score], np.float32), preview[None], MaskGeometry((height, width), small),
        source=IMPORT_SOURCE,
    )
    state = SegmentState(box_prompt((x, y, x + w, y + h), width, height), candidates, 0, compact)
    segment = Segment.create(segment_id, state)
    segment.label_id = label_id
    return segment


def import_coco(store: Store, source: Path | bytes, images_dir: Path, project: ProjectInfo, max_pixels: int) -> ImportReport:
    """Add the file's images (from ``images_dir``) and their annotations to ``project``; what was left out is reported."""
    document = _document(source)
    report = ImportReport()
    labels = {label.name: label for label in store.labels(project.id)}
    category_labels: dict[object, int] = {}
    for category in document["categories"]:
        name = str(category.get("name", "")).strip() if isinstance(category, dict) else ""
        if not name:
            report.skipped.append(f"category {category!r}: it has no name")
            continue
        if name not in labels:
            labels[name] = store.add_label(project.id, name, palette_color(len(labels)))
            report.labels_added.append(name)
        category_labels[category.get("id")] = labels[name].id
    by_image: dict[object, list[dict]] = defaultdict(list)
    known_images = {entry.get("id") for entry in document["images"] if isinstance(entry, dict)}
    for annotation in document["annotations"]:
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in known_images:
            report.skipped.append(f"annotation {annotation.get('id') if isinstance(annotation, dict) else annotation!r}: no image {image_id!r} in the file")
            continue
        by_image[image_id].append(annotation)
    for entry in document["images"]:
        _import_image(store, entry, by_image.get(entry.get("id") if isinstance(entry, dict) else None, []), category_labels,
                      images_dir, project, max_pixels, report)
    return report


def _import_image(store: Store, entry: object, annotations: list[dict], category_labels: dict[object, int], images_dir: Path,
                  project: ProjectInfo, max_pixels: int, report: ImportReport) -> None:
    name = str(entry.get("file_name", "")) if isinstance(entry, dict) else ""
    path = images_dir / name
    if not name or not path.is_file():
        path = images_dir / Path(name).name  # a file name with the folder it had elsewhere
    if not name or not path.is_file():
        report.skipped.append(f"image {name or repr(entry)}: not in {images_dir} ({len(annotations)} annotations left out)")
        return
    try:
        image = load_image_file(path, max_pixels=max_pixels)
    except SamdashError as exc:
        report.skipped.append(f"image {name}: {exc} ({len(annotations)} annotations left out)")
        return
    info, _ = store.add_image(project.id, path.read_bytes(), path.name, image.content_hash, (image.width, image.height),
                              thumbnail_jpeg(image.rgb))
    workspace, saved = store.load_workspace(info)
    for annotation in annotations:
        where = f"annotation {annotation.get('id')!r} on {name}"
        if annotation.get("category_id") not in category_labels:
            report.skipped.append(f"{where}: no category {annotation.get('category_id')!r} in the file")
            continue
        try:
            mask = _mask(annotation.get("segmentation"), image.height, image.width)
        except ValueError as exc:
            report.skipped.append(f"{where}: {exc}")
            continue
        if not mask.any():
            report.skipped.append(f"{where}: its mask is empty")
            continue
        score = annotation.get("score")
        segment = imported_segment(workspace.next_id, mask, float(score) if isinstance(score, (int, float)) else None,
                                   category_labels[annotation["category_id"]])
        workspace.add(segment)
        report.objects += 1
    store.save_workspace(workspace, saved)
    report.images += 1
