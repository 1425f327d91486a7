"""Segmented objects as files: masks, label map, cut-outs, outlined image, COCO and YOLO annotations.

Pure functions from objects and the image to bytes or text, shared by the
page's download buttons and the CLI.

Conventions:
- ``size`` is (width, height) of the image; masks are boolean (height, width).
- Polygons are in continuous pixel coordinates: pixel (x, y) covers
  [x, x + 1) × [y, y + 1), as in COCO (YOLO's are these divided by the size).
- An object's number is its 1-based position in the list: its label-map value
  and its COCO annotation id.
- An object whose mask is empty has no outline, box or cut-out: COCO and YOLO
  leave it out (so a missing annotation id shows which one), ``export_all``
  writes no cut-out for it, and ``cutout_png`` refuses it. Its mask PNG is
  all black and the label map simply has no pixel with its number.
- Polygons cannot express holes: COCO polygons and YOLO fill them. RLE keeps them.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from samdash.errors import SamdashError
from samdash.masks import rle_of
from samdash.render import Color, Layer, draw_layers

FORMATS: tuple[str, ...] = ("png", "cutout", "overlay", "coco", "yolo")

# Object names become file names: long names are cut so that a path stays well under common limits.
_SLUG_MAX = 60


class Exportable(Protocol):
    """What an export needs of an object (``Segment`` has it; the CLI and tests may pass simpler objects)."""

    @property
    def name(self) -> str: ...

    @property
    def mask(self) -> np.ndarray: ...

    @property
    def score(self) -> float: ...

    @property
    def color(self) -> Color: ...


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) with exclusive ends, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a grey (2-D, 8 or 16 bit), RGB or RGBA array."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise SamdashError(f"could not encode a {pixels.shape} {pixels.dtype} image as PNG")
    return encoded.tobytes()


def _masks(segments: Sequence[Exportable], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Each object's mask in turn, checked to match the image: a mask of another image would export nonsense."""
    width, height = size
    for segment in segments:
        mask = np.asarray(segment.mask, bool)
        if mask.shape != (height, width):
            raise SamdashError(f"the mask of {segment.name!r} is {mask.shape[1]}×{mask.shape[0]}, the image {width}×{height}")
        yield mask


def _binary(mask: np.ndarray) -> np.ndarray:
    """A mask as 8-bit 0/255, the form image tools expect."""
    return np.asarray(mask, bool).astype(np.uint8) * 255


def mask_png(mask: np.ndarray) -> bytes:
    """A single-channel PNG: 255 on the object, 0 elsewhere."""
    return _png(_binary(mask))


def label_map_png(segments: Sequence[Exportable], size: tuple[int, int]) -> bytes:
    """A PNG whose pixel values are object numbers (0 = background; later objects cover earlier ones).

    8-bit while the numbers fit, 16-bit beyond 255 objects.
    """
    if len(segments) > np.iinfo(np.uint16).max:
        raise SamdashError(f"a label map holds at most {np.iinfo(np.uint16).max} objects, not {len(segments)}")
    dtype = np.uint8 if len(segments) <= np.iinfo(np.uint8).max else np.uint16
    width, height = size
    labels = np.zeros((height, width), dtype)
    for number, mask in enumerate(_masks(segments, size), start=1):
        labels[mask] = number
    return _png(labels)


def cutout_png(image: np.ndarray, mask: np.ndarray) -> bytes:
    """The object alone: an RGBA PNG of its bounding box, transparent outside the mask."""
    box = bounding_box(mask)
    if box is None:
        raise SamdashError("this object's mask is empty: there is nothing to cut out")
    x0, y0, x1, y1 = box
    return _png(np.dstack([image[y0:y1, x0:x1], _binary(mask[y0:y1, x0:x1])]))


def overlay_png(image: np.ndarray, segments: Sequence[Exportable], thickness: int = 2, fill_opacity: float = 0.0) -> bytes:
    """The image at full resolution with each object outlined (and tinted when ``fill_opacity`` > 0)."""
    layers = [Layer.from_mask(segment.mask, segment.color) for segment in segments]
    return _png(draw_layers(image, layers, scale=1.0, thickness=thickness, fill_opacity=fill_opacity))


def polygons_of(mask: np.ndarray) -> list[np.ndarray]:
    """The outer boundary of each part of a mask as (n, 2) float arrays, largest part first.

    Traced on a copy enlarged 2× so each boundary runs a quarter pixel inside
    the pixel edges: every pixel centre of the object is inside, every other
    one outside, so filling the polygons by pixel centres (as pycocotools does;
    cv2.fillPoly after subtracting 0.5 and rounding) gives back exactly the
    mask with its holes filled. Nothing is simplified, for the same reason.
    """
    box = bounding_box(mask)
    if box is None:
        return []
    x0, y0, x1, y1 = box
    crop = np.asarray(mask[y0:y1, x0:x1], np.uint8)
    doubled = cv2.resize(crop, (2 * crop.shape[1], 2 * crop.shape[0]), interpolation=cv2.INTER_NEAREST)
    found, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    outer = [contour for contour, links in zip(found, hierarchy[0]) if links[3] < 0]
    outer.sort(key=cv2.contourArea, reverse=True)
    return [(contour.reshape(-1, 2) + 0.5) / 2 + (x0, y0) for contour in outer]


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """One polygon visiting every part, for formats that take one polygon per object.

    Parts are chained top to bottom, each hanging off the previous one's
    vertex nearest to its first vertex by a bridge travelled out and back.
    The bridges enclose no area, so the filled polygon is the union of the parts.
    """
    if len(parts) == 1:
        return parts[0]
    parts = sorted(parts, key=lambda part: (part[0, 1], part[0, 0]))
    hooks = [int(np.argmin(((part - following[0]) ** 2).sum(axis=1))) for part, following in zip(parts, parts[1:])]
    outward = [part[: hook + 1] for part, hook in zip(parts, hooks)]
    homeward = [np.concatenate([part[hook:], part[:1]]) for part, hook in zip(parts, hooks)]
    return np.concatenate([*outward, parts[-1], parts[-1][:1], *reversed(homeward)])


def class_names(segments: Sequence[Exportable]) -> list[str]:
    """Distinct object names in order of first appearance: COCO category ids (from 1) and YOLO class ids (from 0)."""
    return list(dict.fromkeys(segment.name for segment in segments))


def coco_annotation(number: int, category_id: int, mask: np.ndarray, score: float, polygons: bool) -> dict:
    rle = rle_of(mask)
    if polygons:
        segmentation: list | dict = [polygon.ravel().tolist() for polygon in polygons_of(mask)]
    else:
        segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    annotation = {
        "id": number,
        "image_id": 1,
        "category_id": category_id,
        "segmentation": segmentation,
        "bbox": coco_mask.toBbox(rle).tolist(),
        "area": int(coco_mask.area(rle)),
        "iscrowd": 0,
    }
    if not math.isnan(score):
        annotation["score"] = float(score)
    return annotation


def coco_json(segments: Sequence[Exportable], image_name: str, size: tuple[int, int], polygons: bool = False) -> str:
    """COCO instance annotations for one image: masks as RLE (exact, holes kept) or as polygons.

    ``score`` is the model's predicted IoU, absent when unknown (the GrabCut fallback).
    Categories are the distinct names; annotation ids are object numbers.
    """
    width, height = size
    category_ids = {name: i for i, name in enumerate(class_names(segments), start=1)}
    annotations = [
        coco_annotation(number, category_ids[segment.name], mask, segment.score, polygons)
        for number, (segment, mask) in enumerate(zip(segments, _masks(segments, size)), start=1)
        if mask.any()
    ]
    document = {
        "info": {"description": "Segment Anything masks exported by samdash"},
        "images": [{"id": 1, "file_name": image_name, "width": width, "height": height}],
        "categories": [{"id": i, "name": name, "supercategory": ""} for name, i in category_ids.items()],
        "annotations": annotations,
    }
    return json.dumps(document)


def yolo_seg(segments: Sequence[Exportable], size: tuple[int, int], class_ids: dict[str, int] | None = None) -> str:
    """YOLO segmentation labels: ``class x1 y1 x2 y2 …`` per object, normalised to [0, 1], 6 decimals.

    YOLO takes one polygon per instance, so an object in several parts gets one
    polygon joining them by zero-width bridges (as Ultralytics' COCO converter
    does): nothing is lost, but a rasteriser that draws edges (cv2.fillPoly)
    adds each bridge as a one-pixel line. Class ids follow ``class_names``
    unless ``class_ids`` maps each name.
    """
    names = class_names(segments)
    ids = class_ids if class_ids is not None else {name: i for i, name in enumerate(names)}
    missing = [name for name in names if name not in ids]
    if missing:
        raise SamdashError(f"no YOLO class id for {', '.join(map(repr, missing))}")
    lines = []
    for segment, mask in zip(segments, _masks(segments, size)):
        parts = polygons_of(mask)
        if parts:
            lines.append(yolo_line(ids[segment.name], parts, size))
    return "".join(lines)


def yolo_line(class_id: int, parts: list[np.ndarray], size: tuple[int, int]) -> str:
    """One object's YOLO-seg line: its class and its parts as one polygon, normalised by the image's size."""
    coordinates = (_joined(parts) / size).ravel()
    return f"{class_id} " + " ".join(f"{value:.6f}" for value in coordinates) + "\n"


def read_yolo_seg(text: str, size: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    """(class id, (n, 2) polygon in image pixels, same convention as ``polygons_of``) per line of a YOLO label file."""
    objects = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        class_id, *values = line.split()
        try:
            objects.append((int(class_id), np.array(values, float).reshape(-1, 2) * size))
        except ValueError:
            raise SamdashError(f"line {line_number} is not 'class x1 y1 x2 y2 …' with pairs of numbers") from None
    return objects


def slug(name: str) -> str:
    """A file-name-safe form of an object's name: its letters and digits (any script) in lower case, joined by dashes."""
    words = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", name).casefold())
    return "-".join(words)[:_SLUG_MAX].strip("-") or "object"


def file_stems(names: Sequence[str]) -> list[str]:
    """One slug per name, made distinct with -2, -3, … so that no object's file overwrites another's."""
    used: set[str] = set()
    stems = []
    for name in names:
        base = stem = slug(name)
        count = 1
        while stem in used:
            count += 1
            stem = f"{base}-{count}"
        used.add(stem)
        stems.append(stem)
    return stems


def _files(
    fmt: str,
    image: np.ndarray,
    image_name: str,
    segments: Sequence[Exportable],
    thickness: int,
    fill_opacity: float,
    polygons: bool,
) -> Iterator[tuple[str, bytes | str]]:
    """(file name, content) of one format, made one at a time so only one file is in memory."""
    size = (image.shape[1], image.shape[0])
    stems = file_stems([segment.name for segment in segments])
    if fmt == "png":
        for segment, stem in zip(segments, stems):
            yield f"{stem}-mask.png", mask_png(segment.mask)
        yield "labels.png", label_map_png(segments, size)
    elif fmt == "cutout":
        for segment, stem in zip(segments, stems):
            if segment.mask.any():
                yield f"{stem}-cutout.png", cutout_png(image, segment.mask)
    elif fmt == "overlay":
        yield "outlined.png", overlay_png(image, segments, thickness, fill_opacity)
    elif fmt == "coco":
        yield "coco.json", coco_json(segments, image_name, size, polygons)
    elif fmt == "yolo":
        yield "yolo.txt", yolo_seg(segments, size)
        yield "classes.txt", "".join(f"{name}\n" for name in class_names(segments))


def _write(path: Path, content: bytes | str) -> None:
    try:
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
    except OSError as exc:
        raise SamdashError(f"cannot write {path}: {exc.strerror}") from exc


def export_all(
    image: np.ndarray,
    image_name: str,
    segments: Sequence[Exportable],
    formats: Iterable[str],
    out_dir: Path,
    *,
    thickness: int = 2,
    fill_opacity: float = 0.0,
    polygons: bool = False,
) -> list[Path]:
    """Write the chosen formats into ``out_dir`` (created when missing) and return the files written.

    png: ``<object>-mask.png`` per object and ``labels.png``; cutout:
    ``<object>-cutout.png`` per object with area; overlay: ``outlined.png``;
    coco: ``coco.json``; yolo: ``yolo.txt`` and ``classes.txt`` (its class names).
    ``<object>`` is the object's name made safe by ``slug`` and distinct by ``file_stems``.
    """
    chosen = list(dict.fromkeys(formats))
    unknown = [fmt for fmt in chosen if fmt not in FORMATS]
    if unknown:
        raise SamdashError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SamdashError(f"cannot create {out_dir}: {exc.strerror}") from exc
    written = []
    for fmt in chosen:
        for file_name, content in _files(fmt, image, image_name, segments, thickness, fill_opacity, polygons):
            _write(out_dir / file_name, content)
            written.append(out_dir / file_name)
    return written
