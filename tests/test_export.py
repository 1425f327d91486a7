"""Exports read back by the tools that consume them: pycocotools, PNG decoders, a YOLO label parser."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from samdash.engine import Candidates, MaskGeometry
from samdash.errors import SamdashError
from samdash.export import (
    FORMATS,
    bounding_box,
    class_names,
    coco_json,
    cutout_png,
    export_all,
    file_stems,
    label_map_png,
    mask_png,
    overlay_png,
    polygons_of,
    read_yolo_seg,
    slug,
    yolo_seg,
)
from samdash.prompts import box_prompt
from samdash.render import Color
from samdash.segments import Segment, SegmentState

HEIGHT, WIDTH = 120, 160
SIZE = (WIDTH, HEIGHT)


@dataclass(frozen=True)
class Obj:
    name: str
    mask: np.ndarray
    score: float = 0.9
    color: Color = (255, 0, 0)


def _blank() -> np.ndarray:
    return np.zeros((HEIGHT, WIDTH), bool)


def _disc(cx: int, cy: int, radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2


def _diagonal_bar() -> np.ndarray:
    canvas = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.line(canvas, (10, 10), (140, 110), 1, 3)
    return canvas > 0


def _blob() -> np.ndarray:
    noise = cv2.GaussianBlur(np.random.default_rng(3).random((HEIGHT, WIDTH)).astype(np.float32), (0, 0), 6)
    mask = noise > np.quantile(noise, 0.7)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _ring() -> np.ndarray:
    return _disc(80, 60, 40) & ~_disc(80, 60, 15)


def _two_parts() -> np.ndarray:
    return _disc(40, 60, 20) | _disc(95, 60, 18)


def _border_rect() -> np.ndarray:
    mask = _blank()
    mask[:40, 120:] = True
    return mask


HOLE_FREE = {"disc": _disc(70, 60, 30), "diagonal bar": _diagonal_bar(), "blob": _blob(), "border rect": _border_rect(), "two parts": _two_parts()}


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _rasterise(polygons: list[np.ndarray]) -> np.ndarray:
    """Polygons filled by pycocotools, which samples pixel centres."""
    rles = coco_mask.frPyObjects([polygon.ravel().tolist() for polygon in polygons], HEIGHT, WIDTH)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def _filled(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled (what polygons can express)."""
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    canvas = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(canvas, found, -1, 1, cv2.FILLED)
    return canvas > 0


def _load_coco(text: str, tmp_path: Path) -> COCO:
    path = tmp_path / "instances.json"
    path.write_text(text)
    return COCO(str(path))


def _decoded(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


# --- PNGs -------------------------------------------------------------------------------------------------------------


def test_mask_png_is_single_channel_0_or_255():
    mask = _disc(70, 60, 30)
    with Image.open(io.BytesIO(mask_png(mask))) as png:
        assert png.mode == "L" and png.size == SIZE
        values = np.asarray(png)
    assert set(np.unique(values)) == {0, 255}
    np.testing.assert_array_equal(values == 255, mask)


def test_label_map_numbers_objects_in_order_later_ones_on_top():
    first, second, third = _disc(50, 60, 30), _disc(70, 60, 30), _border_rect()
    png = label_map_png([Obj("a", first), Obj("b", second), Obj("c", third)], SIZE)
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "L"
        labels = np.asarray(image)
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[first], expected[second], expected[third] = 1, 2, 3
    np.testing.assert_array_equal(labels, expected)


def test_label_map_is_16_bit_beyond_255_objects():
    objects = []
    for number in range(300):
        mask = _blank()
        mask.flat[number * 11] = True
        objects.append(Obj(f"o{number}", mask))
    png = label_map_png(objects, SIZE)
    labels = _decoded(png)
    assert labels.dtype == np.uint16
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode.startswith("I")
        np.testing.assert_array_equal(np.asarray(image), labels)
    assert labels.flat[299 * 11] == 300 and labels.flat[0] == 1
    assert np.count_nonzero(labels) == 300 and labels.max() == 300


def test_cutout_is_the_bounding_box_with_the_mask_as_alpha():
    image, mask = _image(), _blob()
    x0, y0, x1, y1 = bounding_box(mask)
    with Image.open(io.BytesIO(cutout_png(image, mask))) as png:
        assert png.mode == "RGBA" and png.size == (x1 - x0, y1 - y0)
        rgba = np.asarray(png)
    np.testing.assert_array_equal(rgba[..., 3] == 255, mask[y0:y1, x0:x1])
    assert set(np.unique(rgba[..., 3])) == {0, 255}
    inside = mask[y0:y1, x0:x1]
    np.testing.assert_array_equal(rgba[..., :3][inside], image[y0:y1, x0:x1][inside])


def test_cutout_of_an_empty_mask_is_refused_clearly():
    with pytest.raises(SamdashError, match="empty"):
        cutout_png(_image(), _blank())


def test_overlay_is_full_size_and_outlines_each_object():
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rect = _blank()
    rect[30:90, 40:120] = True
    png = overlay_png(image, [Obj("r", rect, color=(0, 255, 0))], thickness=1)
    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.mode == "RGB" and decoded.size == SIZE
        drawn = np.asarray(decoded)
    red, green, blue = drawn[30, 80].tolist()  # on the top edge, in the object's colour (anti-aliased)
    assert green > 200 and red == blue == 0
    assert drawn[60, 80].tolist() == [0, 0, 0]  # no fill unless asked


# --- polygons ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOLE_FREE)
def test_polygons_fill_back_to_the_mask(name):
    mask = HOLE_FREE[name]
    polygons = polygons_of(mask)
    assert all(len(polygon) >= 3 for polygon in polygons)
    filled = _rasterise(polygons)
    assert _iou(filled, mask) >= 0.98
    np.testing.assert_array_equal(filled, mask)  # exact, in fact


def test_polygons_follow_pixel_edges_and_put_the_largest_part_first():
    mask = _blank()
    mask[10:20, 30:40] = True
    mask[50:90, 60:100] = True
    mask[100, 5] = True
    big, small, single = polygons_of(mask)
    assert big.min(axis=0).tolist() == [60.25, 50.25] and big.max(axis=0).tolist() == [99.75, 89.75]
    assert small.min(axis=0).tolist() == [30.25, 10.25]
    assert len(single) >= 3  # even one pixel is a polygon, not dropped
    assert polygons_of(_blank()) == []


def test_polygons_fill_holes():
    np.testing.assert_array_equal(_rasterise(polygons_of(_ring())), _filled(_ring()))


# --- COCO -------------------------------------------------------------------------------------------------------------


def _coco_objects() -> list[Obj]:
    return [
        Obj("cat", _disc(70, 60, 30), 0.93),
        Obj("dog", _ring(), 0.81),
        Obj("nothing", _blank(), 0.5),
        Obj("cat", _border_rect(), math.nan),
        Obj("dog", _two_parts(), 0.7),
    ]


def test_coco_rle_loads_in_pycocotools_and_decodes_to_each_mask_exactly(tmp_path):
    objects = _coco_objects()
    coco = _load_coco(coco_json(objects, "photo.jpg", SIZE), tmp_path)
    assert coco.dataset["images"] == [{"id": 1, "file_name": "photo.jpg", "width": WIDTH, "height": HEIGHT}]
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == [(1, "cat"), (2, "dog"), (3, "nothing")]
    assert sorted(coco.getAnnIds()) == [1, 2, 4, 5]  # object numbers; the empty one left out
    for number in (1, 2, 4, 5):
        obj = objects[number - 1]
        (annotation,) = coco.loadAnns([number])
        np.testing.assert_array_equal(coco.annToMask(annotation).astype(bool), obj.mask)  # holes included
        assert coco.loadCats([annotation["category_id"]])[0]["name"] == obj.name
        x0, y0, x1, y1 = bounding_box(obj.mask)
        assert annotation["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        assert annotation["area"] == obj.mask.sum() and annotation["iscrowd"] == 0
        assert isinstance(annotation["segmentation"]["counts"], str)
    assert coco.anns[1]["score"] == pytest.approx(0.93)
    assert "score" not in coco.anns[4]  # unknown (NaN) scores are left out


def test_coco_polygons_load_and_rasterise_back(tmp_path):
    objects = _coco_objects()
    coco = _load_coco(coco_json(objects, "photo.jpg", SIZE, polygons=True), tmp_path)
    assert sorted(coco.getAnnIds()) == [1, 2, 4, 5]
    for number in (1, 2, 4, 5):
        annotation = coco.anns[number]
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in annotation["segmentation"])
        filled = coco.annToMask(annotation).astype(bool)
        expected = _filled(objects[number - 1].mask)
        assert _iou(filled, expected) >= 0.98
    assert len(coco.anns[5]["segmentation"]) == 2  # one polygon per part
    assert coco.anns[2]["area"] == _ring().sum()  # the object's pixels, though the polygon fills the hole


def test_coco_output_is_plain_json_without_nan():
    text = coco_json(_coco_objects(), "photo.jpg", SIZE)
    json.loads(text, parse_constant=lambda constant: pytest.fail(f"{constant} in JSON"))


def test_a_mask_of_another_size_is_refused():
    with pytest.raises(SamdashError, match="'small'"):
        coco_json([Obj("small", np.ones((10, 10), bool))], "photo.jpg", SIZE)


def test_segments_from_the_engine_export_directly(tmp_path):
    masks = np.stack([_disc(70, 60, 30), _blob()])
    prompt = box_prompt((40, 30, 100, 90), WIDTH, HEIGHT)
    logits = np.where(masks, np.int8(1), np.int8(-1))
    segment = Segment.create(1, SegmentState.of(prompt, Candidates(np.array([0.6, 0.95]), logits, MaskGeometry((HEIGHT, WIDTH), (HEIGHT, WIDTH)))))
    coco = _load_coco(coco_json([segment], "photo.jpg", SIZE), tmp_path)
    np.testing.assert_array_equal(coco.annToMask(coco.anns[1]).astype(bool), masks[1])
    assert coco.anns[1]["score"] == pytest.approx(0.95)
    assert coco.cats[1]["name"] == "object 1"


# --- YOLO -------------------------------------------------------------------------------------------------------------


def test_yolo_lines_reread_to_the_same_polygons_and_masks():
    objects = [Obj(name, mask) for name, mask in HOLE_FREE.items()]
    text = yolo_seg(objects, SIZE)
    lines = text.splitlines()
    assert len(lines) == len(objects)
    assert all(len(value.split(".")[1]) == 6 for value in lines[0].split()[1:])
    read = read_yolo_seg(text, SIZE)
    assert [class_id for class_id, _ in read] == list(range(len(objects)))
    for obj, (_, polygon) in zip(objects, read):
        normalised = polygon / SIZE
        assert normalised.min() >= 0 and normalised.max() <= 1
        if obj.name != "two parts":
            (expected,) = polygons_of(obj.mask)
            np.testing.assert_allclose(normalised, expected / SIZE, atol=1e-6)
        filled = _rasterise([polygon])
        assert _iou(filled, obj.mask) >= 0.98


def test_yolo_joins_the_parts_of_an_object_into_one_polygon():
    mask = _two_parts()
    ((_, polygon),) = read_yolo_seg(yolo_seg([Obj("pair", mask)], SIZE), SIZE)
    np.testing.assert_array_equal(_rasterise([polygon]), mask)  # the bridge encloses nothing
    edge_drawn = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.fillPoly(edge_drawn, [np.round(polygon - 0.5).astype(np.int32)], 1)
    assert _iou(edge_drawn > 0, mask) >= 0.98  # cv2.fillPoly adds the bridge as a thin line


def test_yolo_class_ids_follow_names_or_the_given_mapping():
    objects = [Obj("cat", _disc(40, 60, 20)), Obj("dog", _border_rect()), Obj("cat", _diagonal_bar()), Obj("ghost", _blank())]
    assert class_names(objects) == ["cat", "dog", "ghost"]
    assert [c for c, _ in read_yolo_seg(yolo_seg(objects, SIZE), SIZE)] == [0, 1, 0]  # the empty one left out
    given = {"cat": 7, "dog": 3, "ghost": 1}
    assert [c for c, _ in read_yolo_seg(yolo_seg(objects, SIZE, given), SIZE)] == [7, 3, 7]
    with pytest.raises(SamdashError, match="'dog'"):
        yolo_seg(objects, SIZE, {"cat": 0, "ghost": 1})


def test_a_malformed_yolo_line_is_reported_with_its_number():
    with pytest.raises(SamdashError, match="line 2"):
        read_yolo_seg("0 0.1 0.1 0.2 0.1 0.2 0.2\n1 0.5 0.5 0.6\n", SIZE)


# --- files ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("object 1", "object-1"),
        ("../etc/passwd", "etc-passwd"),
        ("C:\\Users\\me", "c-users-me"),
        ("Café  Crème", "café-crème"),
        ("猫 / cat", "猫-cat"),
        ("***", "object"),
        ("", "object"),
        ("x" * 200, "x" * 60),
    ],
)
def test_slug_keeps_letters_and_digits_only(name, expected):
    assert slug(name) == expected


def test_file_stems_are_distinct():
    assert file_stems(["cat", "Cat", "cat 2", "cat", "/"]) == ["cat", "cat-2", "cat-2-2", "cat-3", "object"]


def test_export_all_writes_every_format_with_safe_names(tmp_path):
    objects = [
        Obj("a/b c", _disc(40, 60, 20)),
        Obj("Ünïcode 猫", _border_rect(), math.nan),
        Obj("a b/c", _diagonal_bar()),
        Obj("empty", _blank()),
    ]
    out_dir = tmp_path / "out" / "photo"
    written = export_all(_image(), "photo.jpg", objects, FORMATS, out_dir)
    names = sorted(path.name for path in written)
    assert names == sorted(
        [
            "a-b-c-mask.png", "ünïcode-猫-mask.png", "a-b-c-2-mask.png", "empty-mask.png", "labels.png",
            "a-b-c-cutout.png", "ünïcode-猫-cutout.png", "a-b-c-2-cutout.png",
            "outlined.png", "coco.json", "yolo.txt", "classes.txt",
        ]
    )
    assert sorted(p.name for p in out_dir.iterdir()) == names  # nothing outside out_dir, nothing unlisted
    np.testing.assert_array_equal(_decoded((out_dir / "a-b-c-2-mask.png").read_bytes()) > 0, objects[2].mask)
    coco = COCO(str(out_dir / "coco.json"))
    assert sorted(coco.getAnnIds()) == [1, 2, 3]
    assert (out_dir / "classes.txt").read_text(encoding="utf-8").splitlines() == [o.name for o in objects]
    assert len((out_dir / "yolo.txt").read_text().splitlines()) == 3


def test_export_all_writes_only_the_chosen_formats(tmp_path):
    written = export_all(_image(), "photo.jpg", [Obj("cat", _blob())], ["coco", "overlay"], tmp_path, polygons=True)
    assert [path.name for path in written] == ["coco.json", "outlined.png"]
    assert isinstance(json.loads(written[0].read_text())["annotations"][0]["segmentation"], list)


def test_export_all_refuses_an_unknown_format_before_writing(tmp_path):
    with pytest.raises(SamdashError, match="tiff"):
        export_all(_image(), "photo.jpg", [Obj("cat", _blob())], ["png", "tiff"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
