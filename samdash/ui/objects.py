"""Candidate masks of the active object, and the list of all objects."""

from __future__ import annotations

import importlib
import math
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import streamlit as st

from samdash.coco_import import IMPORT_SOURCE
from samdash.drawings import MANUAL_SOURCE, Workspace
from samdash.imaging import LoadedImage
from samdash.render import hex_to_rgb, preview, rgb_to_hex
from samdash.segments import Segment
from samdash.store import LabelInfo
from samdash.ui.display import fit_size, jpeg_data_url, resized
from samdash.ui.labels import counts_text
from samdash.ui.state import session

THUMB_WIDTH = 240

# The object table is Streamlit's data editor, which is built on pandas; importing pandas takes about half a
# second, so it is imported beside a new server's first run rather than in the middle of it.
threading.Thread(target=importlib.import_module, args=("pandas",), name="samdash-import-pandas", daemon=True).start()


def _score_label(score: float) -> str:
    return "score n/a" if math.isnan(score) else f"IoU {score:.2f}"


def _thumbnail(base: np.ndarray, segment: Segment, index: int) -> str:
    """A candidate's thumbnail as a data URL, kept while the candidates stay the same (reruns are frequent)."""
    cache: dict[tuple, str] = session().cache("thumbnails")
    key = (segment.candidates.token, index, segment.color, base.shape)
    if key not in cache:
        if len(cache) > 24:
            cache.clear()
        cache[key] = jpeg_data_url(preview(base, segment.candidates.preview(index, (base.shape[1], base.shape[0])), segment.color))
    return cache[key]


# Buttons change objects in callbacks, before the run that follows: that run shows and saves the change.


def _pick(segment: Segment, index: int) -> None:
    segment.pick = index


def _recolour(segment: Segment, key: str) -> None:
    segment.color = hex_to_rgb(st.session_state[key])


def _activate(workspace: Workspace, segment_id: int) -> None:
    workspace.active_id = segment_id


def candidate_picker(workspace: Workspace, image: LoadedImage, engine_name: str) -> None:
    segment = workspace.active
    if segment is None:
        st.info("Draw a **box** or a **freehand region** around an object to segment it.", icon=":material/draw:")
        return
    head, colour = st.columns([6, 1], vertical_alignment="center")
    head.markdown(f"**Candidates for {segment.name}** — {engine_name} proposes several masks; pick the one that fits.")
    key = f"color-{workspace.image_hash[:8]}-{segment.id}"
    st.session_state[key] = rgb_to_hex(segment.color)  # the object's colour, whatever changed it last (a label)
    colour.color_picker("Colour", key=key, on_change=_recolour, args=(segment, key), help=f"The colour of {segment.name}")
    notes = {
        IMPORT_SOURCE: "Imported with its mask: a point refines it from its box and your points (the file has no SAM logits).",
        MANUAL_SOURCE: "Drawn as a polygon: a point refines it with SAM from its box and your points.",
    }.get(segment.candidates.source, "")
    if strokes := len(segment.state.strokes):
        notes += (f" Touched up with {strokes} brush stroke{'s' if strokes > 1 else ''}: they are painted again over "
                  "any new mask SAM gives it.")
    if notes:
        st.caption(notes.strip())
    base = resized(image, fit_size(image, THUMB_WIDTH))
    columns = st.columns(len(segment.candidates))
    for index, column in enumerate(columns):
        with column:
            thumb = _thumbnail(base, segment, index)
            chosen = index == segment.pick
            st.image(thumb, width="stretch")
            label = f"{'✓ ' if chosen else ''}#{index + 1} · {_score_label(float(segment.candidates.scores[index]))}"
            st.button(
                label,
                key=f"pick-{workspace.image_hash[:8]}-{segment.id}-{index}",
                type="primary" if chosen else "secondary",
                width="stretch",
                on_click=_pick,
                args=(segment, index),
            )


# The object table's columns (its rows are the image's objects, in the order they were made).
_NAME, _LABEL, _VISIBLE = "Name", "Label", "Visible"
_SELECT, _DELETE = "Select", "Delete"
# The table's columns, in order, and their widths in CSS px (the table is as wide as they are).
COLUMN_PX = {"Colour": 44, _NAME: 180, _LABEL: 130, "Area": 100, "IoU": 60, _VISIBLE: 72, _SELECT: 100, _DELETE: 100}
# Rows shown before the table scrolls: a long list must not push the downloads off the page.
_TABLE_ROWS = 8
ROW_PX = 35  # the data editor's row height (and its header's)


def _swatch(color: tuple[int, int, int]) -> str:
    """An object's colour as a tiny SVG image for the table's first column."""
    return (
        "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' width='16' height='16'>"
        f"<rect x='0.5' y='0.5' width='15' height='15' rx='3' stroke='%23999' fill='%23{rgb_to_hex(color)[1:]}'/></svg>"
    )


def table_edits(workspace: Workspace, ids: tuple[int, ...], edited_rows: dict, labels: Sequence[LabelInfo] = ()) -> None:
    """Apply the table's edits (row → {column: value}, as the table reports them) to the objects they were made on.

    ``ids`` are the objects of the rows as the table showed them; an object gone since is skipped. An empty name
    keeps the old one. A new label brings its colour; an emptied one leaves the object unlabelled, in its colour.
    """
    by_name = {label.name: label for label in labels}
    for row, changes in edited_rows.items():
        segment = workspace.segment(ids[int(row)]) if int(row) < len(ids) else None
        if segment is None:
            continue
        name = str(changes.get(_NAME) or "").strip()
        if name:
            segment.name = name
        if _VISIBLE in changes:
            segment.visible = bool(changes[_VISIBLE])
        if _LABEL in changes:
            label = by_name.get(changes[_LABEL] or "")
            segment.label_id = label.id if label is not None else None
            if label is not None:
                segment.color = label.color


def _table_key(workspace: Workspace, labels: Sequence[LabelInfo]) -> str:
    """The table's widget key: what it shows, so an edit applied (or any change made elsewhere, a label renamed
    too) gives a fresh table.

    A table keeps its edits in the browser and lays them over the data it is sent, rows by position; kept across a
    change it would show an old name over a new one, or one object's edit on another's row.
    """
    shown = repr([(s.id, s.name, s.color, s.visible, s.label_id) for s in workspace.segments] + [workspace.active_id, labels])
    return f"objects-{workspace.image_hash[:8]}-{zlib.crc32(shown.encode()):08x}"


def _on_row_button(workspace: Workspace, ids: tuple[int, ...], click_key: str, action: Callable[[int], None]) -> None:
    click = st.session_state.get(click_key)
    if click is not None and click["row"] < len(ids):
        action(ids[click["row"]])


def object_list(workspace: Workspace, labels: Sequence[LabelInfo], elsewhere: dict[int | None, int]) -> None:
    """All objects of the image in one table, and how many objects each label has here and in the project
    (``elsewhere``: on the project's other images).

    One element, however many objects: a row of widgets per object made every run of the working area send and
    lay out hundreds of elements once an image had a few dozen objects.
    """
    if not workspace.segments:
        return
    head, clear = st.columns([4, 1], vertical_alignment="bottom")
    head.markdown(f"**Objects ({len(workspace.segments)})**")
    clear.button("Clear all", icon=":material/delete_sweep:", width="stretch", key=f"clear-{workspace.image_hash[:8]}", on_click=workspace.clear)
    segments = list(workspace.segments)
    ids = tuple(s.id for s in segments)
    names = {label.id: label.name for label in labels}
    key = _table_key(workspace, labels)
    select_key, delete_key = f"{key}-select", f"{key}-delete"

    rows = {
        "Colour": [_swatch(s.color) for s in segments],
        _NAME: [s.name for s in segments],
        _LABEL: [names.get(s.label_id) for s in segments],
        "Area": [s.area for s in segments],
        "IoU": [None if math.isnan(s.score) else s.score for s in segments],
        _VISIBLE: [s.visible for s in segments],
        _SELECT: ["✓ Active" if s.id == workspace.active_id else "Select" for s in segments],
        _DELETE: [":material/delete: Delete"] * len(segments),
    }
    st.data_editor(
        rows,
        key=key,
        hide_index=True,
        width="content",
        height=ROW_PX * (min(len(segments), _TABLE_ROWS) + 1) + 3,
        disabled=["Colour", "Area", "IoU"],
        placeholder="–",  # no label; no score (GrabCut)
        column_config={
            "Colour": st.column_config.ImageColumn("", width=COLUMN_PX["Colour"], help="The object's colour: change it above the candidates"),
            _NAME: st.column_config.TextColumn(_NAME, width=COLUMN_PX[_NAME], max_chars=80),
            _LABEL: st.column_config.SelectboxColumn(
                _LABEL, width=COLUMN_PX[_LABEL], options=list(names.values()),
                help="The object's class; add labels in the sidebar" if names else "Add labels in the sidebar first",
                disabled=not names,
            ),
            "Area": st.column_config.NumberColumn("Area (px)", width=COLUMN_PX["Area"], format="localized"),
            "IoU": st.column_config.NumberColumn(
                "IoU", width=COLUMN_PX["IoU"], format="%.2f", help="SAM's predicted IoU of the chosen candidate"
            ),
            _VISIBLE: st.column_config.CheckboxColumn(_VISIBLE, width=COLUMN_PX[_VISIBLE]),
            _SELECT: st.column_config.ButtonColumn(
                "", width=COLUMN_PX[_SELECT], key=select_key, type="tertiary", on_click=_on_row_button,
                args=(workspace, ids, select_key, partial(_activate, workspace)),
            ),
            _DELETE: st.column_config.ButtonColumn(
                "", width=COLUMN_PX[_DELETE], key=delete_key, type="tertiary", on_click=_on_row_button,
                args=(workspace, ids, delete_key, workspace.remove),
            ),
        },
        on_change=lambda: table_edits(workspace, ids, st.session_state[key]["edited_rows"], labels),
    )
    if names:
        here = Counter(s.label_id for s in segments)
        project = here + Counter(elsewhere)
        st.caption(f"On this image: {counts_text(labels, here)} · in the project: {counts_text(labels, project)}")
