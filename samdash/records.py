"""Objects and drawings as bytes and JSON, for the project store.

A format of our own rather than pickle: what an analyst saved must load in
later releases, and a database from elsewhere must never run code. A state
is one blob: a JSON header (prompt, pick, scores, geometry, the mask's
run-length encoding) followed by the compressed logits.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import cv2
import numpy as np

from samdash.brush import Stroke
from samdash.canvas import Shape
from samdash.engine import Candidates, DeferredLogits, MaskGeometry, rounded
from samdash.errors import SamdashError
from samdash.masks import CompactMask
from samdash.prompts import Prompt
from samdash.segments import SegmentState

# Version of the blob layout, written into every header. Format 2 stores float arrays byte-shuffled (``_pack``)
# and the picked candidate once (``state_to_bytes``); format 3 adds brush strokes, and is written only for a state
# that has some, so a release that reads format 2 still reads every object never touched by a brush.
STATE_FORMAT = 2
STROKES_FORMAT = 3
_READABLE_FORMATS = (1, 2, 3)
_HEADER = struct.Struct("<I")  # length of the JSON header
# Fast compression: logits are noisy floats that higher levels barely shrink further.
_ZLIB_LEVEL = 1


def _pack(array: np.ndarray) -> tuple[dict[str, Any], bytes]:
    """An array as compressed bytes and what it takes to read them back.

    Floats are byte-shuffled (all first bytes, then all second bytes, ...):
    the high half, sign and exponent, alike from value to value, is
    compressed; the low half, mantissa bits that are as good as random, is
    stored as it is, which takes half the time for the same size.
    """
    array = np.ascontiguousarray(array)
    spec: dict[str, Any] = {"dtype": array.dtype.str, "shape": list(array.shape)}
    if array.dtype.kind == "f" and array.itemsize > 1:
        planes = np.ascontiguousarray(array.view(np.uint8).reshape(-1, array.itemsize).T)
        low, high = planes[: array.itemsize // 2].tobytes(), zlib.compress(planes[array.itemsize // 2 :].tobytes(), _ZLIB_LEVEL)
        return spec | {"shuffled": len(high), "bytes": len(high) + len(low)}, high + low
    packed = zlib.compress(array.tobytes(), _ZLIB_LEVEL)
    return spec | {"bytes": len(packed)}, packed


def _unpack(spec: dict[str, Any], data: bytes) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    if "shuffled" in spec:
        high = np.frombuffer(zlib.decompress(data[: spec["shuffled"]]), np.uint8)
        low = np.frombuffer(data[spec["shuffled"] :], np.uint8)
        planes = np.concatenate([low, high]).reshape(dtype.itemsize, -1)
        # OpenCV transposes bytes about 4x faster than NumPy's strided copy: a reload reads every object's logits.
        return cv2.transpose(planes).view(dtype).reshape(spec["shape"])
    return np.frombuffer(zlib.decompress(data), dtype=dtype).reshape(spec["shape"]).copy()


def state_to_bytes(state: SegmentState) -> bytes:
    """One object's state (its prompt, candidates, pick and mask) as a self-describing blob."""
    candidates = state.candidates
    arrays = []
    logits = candidates.logits
    if logits.dtype == np.int8:  # an in-or-out engine: keep it as booleans, packed again on load
        logits = logits > 0
    exact = candidates.exact
    if exact is not None:
        # The picked candidate is stored once, exactly; its rounded copy is made again on load.
        logits = logits.copy()
        logits[exact[0]] = 0
    arrays.append(("logits", *_pack(logits)))
    if exact is not None:
        spec, data = _pack(exact[1])
        arrays.append(("exact", spec | {"index": exact[0]}, data))
    prompt = state.prompt
    geometry = candidates.geometry
    header = {
        "format": STROKES_FORMAT if state.strokes else STATE_FORMAT,
        "prompt": {
            "box": list(prompt.box) if prompt.box is not None else None,
            "points": np.asarray(prompt.points, np.float64).tolist(),
            "labels": np.asarray(prompt.labels).astype(int).tolist(),
        },
        "pick": state.pick,
        "scores": [None if np.isnan(s) else float(s) for s in candidates.scores],
        "source": candidates.source,
        "geometry": {
            "original_size": list(geometry.original_size),
            "input_size": list(geometry.input_size),
            "model_side": geometry.model_side,
        },
        "mask": {"size": list(state.mask.size), "counts": state.mask.counts.decode("ascii")},
        "arrays": [],
    }
    if state.strokes:
        header["strokes"] = [stroke.to_json() for stroke in state.strokes]
    body = []
    for name, spec, data in arrays:
        header["arrays"].append(spec | {"name": name})
        body.append(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    return _HEADER.pack(len(head)) + head + b"".join(body)


def state_from_bytes(blob: bytes) -> SegmentState:
    (length,) = _HEADER.unpack_from(blob)
    header = json.loads(blob[_HEADER.size : _HEADER.size + length])
    if header.get("format") not in _READABLE_FORMATS:
        raise ValueError(f"object saved in format {header.get('format')!r}, this version reads formats {_READABLE_FORMATS}")
    # Only the arrays' bytes (and the format) are kept until they are needed, not the blob or its parsed header:
    # the mask's run-length code is kept already, in the mask, and can be larger than the arrays (a speckled mask).
    body, offset, blob_format = memoryview(blob[_HEADER.size + length :]), 0, header["format"]
    packed = {}
    for spec in header["arrays"]:
        packed[spec["name"]] = (spec, body[offset : offset + spec["bytes"]])
        offset += spec["bytes"]

    def arrays() -> tuple[np.ndarray, tuple[int, np.ndarray] | None]:
        """The logits, decompressed when first needed (see ``DeferredLogits``)."""
        try:
            logits = _unpack(*packed["logits"])
            exact = None
            if "exact" in packed:
                spec, data = packed["exact"]
                exact = (int(spec["index"]), _unpack(spec, data))
                if blob_format >= 2:
                    logits[exact[0]] = rounded(exact[1], logits.dtype)
        except (zlib.error, ValueError, KeyError) as exc:
            raise SamdashError(f"An object's saved candidates cannot be read ({exc}): its mask is kept, but to refine "
                               "it, draw it again.") from exc
        return logits, exact

    logits_spec = packed["logits"][0]
    geometry = MaskGeometry(
        tuple(header["geometry"]["original_size"]),
        tuple(header["geometry"]["input_size"]),
        header["geometry"]["model_side"],
    )
    scores = np.array([np.nan if s is None else s for s in header["scores"]], np.float32)
    deferred = DeferredLogits(tuple(logits_spec["shape"]), np.dtype(logits_spec["dtype"]), arrays)
    candidates = Candidates(scores, deferred, geometry, source=header["source"])
    saved = header["prompt"]
    prompt = Prompt(
        box=tuple(saved["box"]) if saved["box"] is not None else None,
        points=np.asarray(saved["points"], np.float32).reshape(-1, 2),
        labels=np.asarray(saved["labels"], np.int32),
    )
    mask = CompactMask.from_rle(tuple(header["mask"]["size"]), header["mask"]["counts"])
    strokes = tuple(Stroke.from_json(saved) for saved in header.get("strokes", ()))
    return SegmentState(prompt, candidates, int(header["pick"]), mask, strokes)


def shape_to_json(shape: Shape) -> str:
    saved = {"kind": shape.kind, "points": np.asarray(shape.points, np.float64).tolist(), "label": int(shape.label), "raw": shape.raw}
    if shape.width:
        saved["width"] = shape.width
    return json.dumps(saved, separators=(",", ":"))


def shape_from_json(text: str) -> Shape:
    saved = json.loads(text)
    points = np.asarray(saved["points"], np.float64).reshape(-1, 2)
    return Shape(saved["kind"], points, int(saved["label"]), saved["raw"], float(saved.get("width", 0.0)))


# An outline of more points than this (a speckled mask) is not kept: tracing it again is cheaper than storing it.
MAX_OUTLINE_POINTS = 50_000
_COUNT = struct.Struct("<I")


def outline_to_bytes(contours: list[np.ndarray] | None) -> bytes | None:
    """Contours as bytes: their lengths, then every point as its step from the one before (small numbers, which
    compress well); None for no outline, or one of too many points to be worth keeping."""
    if contours is None:
        return None
    lengths = [len(c) for c in contours]
    if sum(lengths) > MAX_OUTLINE_POINTS:
        return None
    points = np.concatenate(contours).astype(np.int32) if contours else np.zeros((0, 2), np.int32)
    steps = np.diff(points, axis=0, prepend=np.zeros((1, 2), np.int32))
    head = _COUNT.pack(len(lengths)) + np.asarray(lengths, "<u4").tobytes()
    return head + zlib.compress(steps.astype("<i4").tobytes(), _ZLIB_LEVEL)


def outline_from_bytes(blob: bytes) -> list[np.ndarray]:
    (count,) = _COUNT.unpack_from(blob)
    lengths = np.frombuffer(blob, "<u4", count, _COUNT.size)
    steps = np.frombuffer(zlib.decompress(blob[_COUNT.size + 4 * count :]), "<i4").reshape(-1, 2)
    points = np.cumsum(steps, axis=0, dtype=np.int32)
    return np.split(points, np.cumsum(lengths)[:-1]) if count else []
