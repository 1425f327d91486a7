"""Objects and drawings as bytes and JSON, for the project store.

A format of our own rather than pickle: what an analyst saved must load in
later releases, and a database from elsewhere must never run code. A state
is one blob: a JSON header (prompt, pick, scores, geometry, the mask's
run-length encoding) followed by the zlib-compressed logits.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np

from samdash.canvas import Shape
from samdash.engine import Candidates, MaskGeometry
from samdash.masks import CompactMask
from samdash.prompts import Prompt
from samdash.segments import SegmentState

# Version of the blob layout, written into every header.
STATE_FORMAT = 1
_HEADER = struct.Struct("<I")  # length of the JSON header
# Fast compression: logits are noisy floats that higher levels barely shrink further.
_ZLIB_LEVEL = 1


def _array_bytes(array: np.ndarray) -> tuple[dict[str, Any], bytes]:
    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape)}, array.tobytes()


def _array_from(spec: dict[str, Any], data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.dtype(spec["dtype"])).reshape(spec["shape"]).copy()


def state_to_bytes(state: SegmentState) -> bytes:
    """One object's state (its prompt, candidates, pick and mask) as a self-describing blob."""
    candidates = state.candidates
    arrays = []
    logits = candidates.logits
    if logits.dtype == np.int8:  # an in-or-out engine: keep it as booleans, packed again on load
        logits = logits > 0
    spec, data = _array_bytes(logits)
    arrays.append(("logits", spec, data))
    if candidates.exact is not None:
        spec, data = _array_bytes(candidates.exact[1])
        arrays.append(("exact", spec | {"index": candidates.exact[0]}, data))
    prompt = state.prompt
    geometry = candidates.geometry
    header = {
        "format": STATE_FORMAT,
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
    body = []
    for name, spec, data in arrays:
        packed = zlib.compress(data, _ZLIB_LEVEL)
        header["arrays"].append(spec | {"name": name, "bytes": len(packed)})
        body.append(packed)
    head = json.dumps(header, separators=(",", ":")).encode()
    return _HEADER.pack(len(head)) + head + b"".join(body)


def state_from_bytes(blob: bytes) -> SegmentState:
    (length,) = _HEADER.unpack_from(blob)
    header = json.loads(blob[_HEADER.size : _HEADER.size + length])
    if header.get("format") != STATE_FORMAT:
        raise ValueError(f"object saved in format {header.get('format')!r}, this version reads format {STATE_FORMAT}")
    offset = _HEADER.size + length
    arrays = {}
    for spec in header["arrays"]:
        data = zlib.decompress(blob[offset : offset + spec["bytes"]])
        offset += spec["bytes"]
        arrays[spec["name"]] = (spec, _array_from(spec, data))
    exact = None
    if "exact" in arrays:
        spec, values = arrays["exact"]
        exact = (int(spec["index"]), values)
    geometry = MaskGeometry(
        tuple(header["geometry"]["original_size"]),
        tuple(header["geometry"]["input_size"]),
        header["geometry"]["model_side"],
    )
    scores = np.array([np.nan if s is None else s for s in header["scores"]], np.float32)
    candidates = Candidates(scores, arrays["logits"][1], geometry, source=header["source"], exact=exact)
    saved = header["prompt"]
    prompt = Prompt(
        box=tuple(saved["box"]) if saved["box"] is not None else None,
        points=np.asarray(saved["points"], np.float32).reshape(-1, 2),
        labels=np.asarray(saved["labels"], np.int32),
    )
    mask = CompactMask.from_rle(tuple(header["mask"]["size"]), header["mask"]["counts"])
    return SegmentState(prompt, candidates, int(header["pick"]), mask)


def shape_to_json(shape: Shape) -> str:
    return json.dumps(
        {"kind": shape.kind, "points": np.asarray(shape.points, np.float64).tolist(), "label": int(shape.label), "raw": shape.raw},
        separators=(",", ":"),
    )


def shape_from_json(text: str) -> Shape:
    saved = json.loads(text)
    return Shape(saved["kind"], np.asarray(saved["points"], np.float64).reshape(-1, 2), int(saved["label"]), saved["raw"])
