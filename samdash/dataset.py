"""A whole project as a dataset that training code reads as it is: COCO instances, YOLO-seg, or mask PNGs.

Built image by image: one image's objects are read from the store and one
full-size mask is decoded at a time, so a project of any size exports in
the memory of one image. Everything goes into one zip (image files stored
as they are), except COCO written to a ``.json`` path: the annotations alone.

Categories are the project's labels, by their stable ids (COCO) or their
order in the label set (YOLO class index). Objects without a label go to a
category of their own, ``object`` (COCO: the id after the highest label id,
never 0, which many loaders take for the background; the last YOLO class),
present only when there are such objects.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from samdash.errors import SamdashError
from samdash.export import coco_annotation, file_stems, label_map_png, mask_png, polygons_of, yolo_line
from samdash.segments import Segment
from samdash.store import ImageInfo, LabelInfo, Store

FORMATS = ("coco", "yolo", "masks")
UNLABELLED = "object"
# YOLO polygons are simplified (Douglas–Peucker, this many px) unless that takes the filled polygon below this IoU
# with the unsimplified one (which is the mask with its holes filled: YOLO-seg has no holes).
DEFAULT_TOLERANCE_PX = 1.0
MIN_SIMPLIFIED_IOU = 0.98


@dataclass
class ExportReport:
    """What an export wrote, and what it left out and why."""

    images: int = 0
    objects: int = 0
    skipped: list[str] = field(default_factory=list)
    points_traced: int = 0  # YOLO: polygon points before and after simplification
    points_written: int = 0

    def text(self) -> str:
        line = f"{self.images} images, {self.objects} objects"
        if self.points_traced:
            line += f"; polygons simplified from {self.points_traced:,} to {self.points_written:,} points"
        if self.skipped:
            line += f"; skipped: {'; '.join(self.skipped)}"
        return line


@dataclass(frozen=True)
class _Classes:
    """The project's categories: labels in order, then ``object`` for unlabelled objects if there are any."""

    labels: list[LabelInfo]
    unlabelled: bool

    def names(self) -> list[str]:
        return [label.name for label in self.labels] + ([UNLABELLED] if self.unlabelled else [])

    def coco_id(self, label_id: int | None) -> int:
        return label_id if label_id is not None else self.unlabelled_coco_id

    @property
    def unlabelled_coco_id(self) -> int:
        return max((label.id for label in self.labels), default=0) + 1

    def yolo_index(self, label_id: int | None) -> int:
        return next((i for i, label in enumerate(self.labels) if label.id == label_id), len(self.labels))


def _classes(store: Store, project_id: str) -> _Classes:
    labels = store.labels(project_id)
    return _Classes(labels, store.label_counts(project_id).get(None, 0) > 0)


def _file_names(images: list[ImageInfo]) -> list[str]:
    """Each image's name in the dataset: its own, made distinct (two folders may both hold an IMG_0001.jpg)."""
    stems = file_stems([PurePosixPath(image.name).stem for image in images])
    return [f"{stem}{PurePosixPath(image.name).suffix.lower()}" for stem, image in zip(stems, images)]


def _objects(store: Store, images: list[ImageInfo], report: ExportReport,
             progress: Callable[[int, int], None] | None) -> Iterator[tuple[int, ImageInfo, str, list[Segment]]]:
    """(index, image, its name in the dataset, its objects) for each image whose file is there, one at a time."""
    names = _file_names(images)
    for index, (image, name) in enumerate(zip(images, names)):
        if progress is not None:
            progress(index, len(images))
        if not store.image_path(image).is_file():
            report.skipped.append(f"{image.name}: its file is missing from the data directory")
            continue
        workspace, _ = store.load_workspace(image)
        report.images += 1
        report.objects += len(workspace.segments)
        yield index, image, name, workspace.segments
    if progress is not None:
        progress(len(images), len(images))


def _add(archive: zipfile.ZipFile, name: str, data: bytes | str, compress: int = zipfile.ZIP_DEFLATED) -> None:
    """One file into the zip, compressed as ``compress`` says, with a fixed time stamp: the same project gives the
    same bytes (checksums hold)."""
    entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    entry.compress_type = compress
    archive.writestr(entry, data)


def _add_image(archive: zipfile.ZipFile, store: Store, image: ImageInfo, name: str) -> None:
    try:
        data = store.image_path(image).read_bytes()
    except OSError as exc:
        raise SamdashError(f"cannot read {image.name} from the data directory: {exc.strerror or exc}") from exc
    _add(archive, name, data, zipfile.ZIP_STORED)  # JPEG and PNG are compressed already


def coco_document(store: Store, project_id: str, polygons: bool = False, report: ExportReport | None = None,
                  progress: Callable[[int, int], None] | None = None, file_names: dict[ImageInfo, str] | None = None,
                  original_names: bool = False) -> dict:
    """COCO instances for every image of the project (``images[].id`` is the image's id in the store).

    ``file_name`` is the image's name in the dataset (``file_names`` receives them by image), or with
    ``original_names`` the name it was added under, for annotations that go beside the analyst's own files.
    """
    report = report if report is not None else ExportReport()
    classes = _classes(store, project_id)
    document: dict = {
        "info": {"description": f"samdash project {project_id}"},
        "images": [],
        "categories": [{"id": label.id, "name": label.name, "supercategory": ""} for label in classes.labels],
        "annotations": [],
    }
    if classes.unlabelled:
        document["categories"].append({"id": classes.unlabelled_coco_id, "name": UNLABELLED, "supercategory": ""})
    images = store.images(project_id)
    for _, image, name, segments in _objects(store, images, report, progress):
        shown = image.name if original_names else name
        document["images"].append({"id": image.id, "file_name": shown, "width": image.width, "height": image.height})
        if file_names is not None:
            file_names[image] = name
        for segment in segments:
            mask = segment.mask
            if mask.any():
                annotation = coco_annotation(len(document["annotations"]) + 1, classes.coco_id(segment.label_id), mask, segment.score, polygons)
                document["annotations"].append(annotation | {"image_id": image.id})
    return document


def _simplified(parts: list[np.ndarray], size: tuple[int, int], tolerance: float) -> list[np.ndarray]:
    """The parts simplified by ``tolerance`` px, or as they are when that would change the filled area too much."""
    if tolerance <= 0:
        return parts
    simpler = [cv2.approxPolyDP(part.astype(np.float32), tolerance, True).reshape(-1, 2).astype(float) for part in parts]
    if any(len(part) < 3 for part in simpler):
        return parts
    width, height = size

    def filled(polygons: list[np.ndarray]) -> dict:
        return coco_mask.merge(coco_mask.frPyObjects([p.ravel().tolist() for p in polygons], height, width))

    iou = coco_mask.iou([filled(simpler)], [filled(parts)], [0])[0][0]
    return simpler if iou >= MIN_SIMPLIFIED_IOU else parts


def _yaml_name(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _write_coco(store: Store, project_id: str, target: BinaryIO, json_only: bool, polygons: bool,
                report: ExportReport, progress: Callable[[int, int], None] | None) -> None:
    names: dict[ImageInfo, str] = {}
    document = coco_document(store, project_id, polygons, report, progress, names, original_names=json_only)
    text = json.dumps(document)
    if json_only:
        target.write(text.encode())
        return
    with zipfile.ZipFile(target, "w") as archive:
        _add(archive, "annotations.json", text)
        for image, name in names.items():
            _add_image(archive, store, image, f"images/{name}")


def _write_yolo(store: Store, project_id: str, target: BinaryIO, tolerance: float, val_fraction: float, seed: int,
                report: ExportReport, progress: Callable[[int, int], None] | None) -> None:
    classes = _classes(store, project_id)
    images = store.images(project_id)
    # A split asked for has at least one image on each side (when there are two images or more).
    count = min(max(round(len(images) * val_fraction), 1), len(images) - 1) if val_fraction > 0 else 0
    validation = set(random.Random(seed).sample(range(len(images)), count)) if count > 0 else set()
    with zipfile.ZipFile(target, "w") as archive:
        for index, image, name, segments in _objects(store, images, report, progress):
            size = (image.width, image.height)
            lines = []
            for segment in segments:
                parts = polygons_of(segment.mask)
                if not parts:
                    continue
                kept = _simplified(parts, size, tolerance)
                report.points_traced += sum(len(part) for part in parts)
                report.points_written += sum(len(part) for part in kept)
                lines.append(yolo_line(classes.yolo_index(segment.label_id), kept, size))
            split = ("val/" if index in validation else "train/") if validation else ""
            _add_image(archive, store, image, f"images/{split}{name}")
            _add(archive, f"labels/{split}{PurePosixPath(name).stem}.txt", "".join(lines))
        subsets = ("images/train", "images/val") if validation else ("images", "images")
        names = "".join(f"  {i}: {_yaml_name(name)}\n" for i, name in enumerate(classes.names()))
        # No "path": Ultralytics then takes the folder holding data.yaml.
        _add(archive, "data.yaml", f"train: {subsets[0]}\nval: {subsets[1]}\nnames:\n{names}")


def _write_masks(store: Store, project_id: str, target: BinaryIO, report: ExportReport,
                 progress: Callable[[int, int], None] | None) -> None:
    images = store.images(project_id)
    with zipfile.ZipFile(target, "w") as archive:
        for _, image, name, segments in _objects(store, images, report, progress):
            stem = PurePosixPath(name).stem
            size = (image.width, image.height)
            _add(archive, f"label_maps/{stem}.png", label_map_png(segments, size), zipfile.ZIP_STORED)
            for segment, object_stem in zip(segments, file_stems([s.name for s in segments])):
                _add(archive, f"masks/{stem}/{object_stem}.png", mask_png(segment.mask), zipfile.ZIP_STORED)


def export_project(
    store: Store,
    project_id: str,
    fmt: str,
    target: Path | BinaryIO,
    *,
    polygons: bool = False,
    tolerance: float = DEFAULT_TOLERANCE_PX,
    val_fraction: float = 0.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Write the project's dataset in ``fmt`` (see ``FORMATS``) to ``target`` (a path or a binary file)."""
    if fmt not in FORMATS:
        raise SamdashError(f"unknown dataset format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not 0 <= val_fraction < 1:
        raise SamdashError(f"the validation share must be at least 0 and below 1, not {val_fraction}")
    if store.project(project_id) is None:
        raise SamdashError(f"there is no project {project_id!r}")
    report = ExportReport()

    def write(out: BinaryIO, json_only: bool) -> None:
        if fmt == "coco":
            _write_coco(store, project_id, out, json_only, polygons, report, progress)
        elif fmt == "yolo":
            _write_yolo(store, project_id, out, tolerance, val_fraction, seed, report, progress)
        else:
            _write_masks(store, project_id, out, report, progress)

    if not isinstance(target, Path):
        write(target, json_only=False)
        return report
    # Written beside the target and put in its place once complete: a failure leaves no half dataset behind.
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("wb") as out:
            write(out, json_only=fmt == "coco" and target.suffix.lower() == ".json")
        partial.replace(target)
    except OSError as exc:
        raise SamdashError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return report


def export_bytes(store: Store, project_id: str, fmt: str, **options) -> tuple[bytes, ExportReport]:
    """The export as bytes, for a download button."""
    buffer = io.BytesIO()
    report = export_project(store, project_id, fmt, buffer, **options)
    return buffer.getvalue(), report
