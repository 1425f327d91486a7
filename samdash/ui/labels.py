"""Labels on the page: the project's label set in the sidebar, and the label new objects get.

A label is a class objects belong to ("car", "defect"); exports turn labels
into categories. Objects take their label's colour unless recoloured.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence

import streamlit as st

from samdash.drawings import Workspace
from samdash.errors import SamdashError
from samdash.render import hex_to_rgb, palette_color, rgb_to_hex
from samdash.store import LabelInfo, Store
from samdash.ui.projects import open_image
from samdash.ui.state import session

NO_LABEL = "no label"
_NONE = 0  # label ids start at 1


def project_labels(store: Store | None) -> list[LabelInfo]:
    """The open project's label set; none before the session has a project."""
    project_id = session().project_id
    if store is None or project_id is None:
        return []
    try:
        return store.labels(project_id)
    except SamdashError:
        return []  # the store's own message is on the page already


def counts_text(labels: Sequence[LabelInfo], counts: Mapping[int | None, int]) -> str:
    """"car 3 · person 1 · no label 2": objects per label, in the label set's order, labels with none left out."""
    names = {label.id: label.name for label in labels}
    parts = [f"{names[label_id]} {count}" for label_id, count in sorted(counts.items(), key=lambda kv: _order(labels, kv[0]))
             if label_id in names and count]
    if counts.get(None):
        parts.append(f"{NO_LABEL} {counts[None]}")
    return " · ".join(parts)


def _order(labels: Sequence[LabelInfo], label_id: int | None) -> int:
    return next((i for i, label in enumerate(labels) if label.id == label_id), len(labels))


def _markdown_text(text: str) -> str:
    """Text shown as it is inside Markdown with HTML (a label's name is the analyst's own)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~<>])", r"\\\1", html.escape(text, quote=False))


def label_panel(store: Store | None) -> None:
    """Sidebar: the project's labels with their object counts; add, rename, merge and delete them."""
    st.subheader("Labels")
    data = session()
    if store is None or data.project_id is None:
        st.caption("Labels belong to a project: your first object starts one.")
        return
    try:
        labels = store.labels(data.project_id)
    except SamdashError as exc:
        st.caption(str(exc))
        return
    if labels:
        st.markdown(
            "  \n".join(f"<span style='color:{rgb_to_hex(label.color)}'>●</span> {_markdown_text(label.name)}" for label in labels),
            unsafe_allow_html=True,
        )
    else:
        st.caption("No labels yet: add the classes your objects belong to (car, person, defect…).")
    with st.form("add-label", clear_on_submit=True, border=False):
        name_column, colour_column = st.columns([4, 1], vertical_alignment="bottom")
        name = name_column.text_input("New label", placeholder="e.g. car")
        colour = colour_column.color_picker("Colour", rgb_to_hex(palette_color(len(labels))), label_visibility="collapsed")
        if st.form_submit_button("Add label", icon=":material/add:", width="stretch"):
            _change(store, lambda: store.add_label(data.project_id, name, hex_to_rgb(colour)), reload=False)
    with st.popover("Manage labels", icon=":material/label:", width="stretch", disabled=not labels):
        if labels:
            _manage(store, labels)


def _manage(store: Store, labels: list[LabelInfo]) -> None:
    picked = st.selectbox("Label", labels, format_func=lambda label: label.name, key="label-manage")
    name = st.text_input("Name", picked.name, key=f"label-name-{picked.id}")
    if st.button("Rename", key="label-rename"):
        _change(store, lambda: store.rename_label(picked.id, name), reload=False)
    st.divider()
    used = store.label_counts(picked.project_id).get(picked.id, 0)
    others = {label.id: label for label in labels if label.id != picked.id}
    becomes = st.selectbox(
        f"Its {used} objects become" if used else "It has no objects",
        [_NONE, *others],
        format_func=lambda label_id: others[label_id].name if label_id in others else f"{NO_LABEL} (kept, unlabelled)",
        key=f"label-becomes-{picked.id}",
        disabled=not used,
    )
    target = others.get(becomes)
    action = f"Merge into {target.name}" if target is not None and used else f"Delete {picked.name}"
    if st.button(action, key="label-delete", type="primary", icon=":material/delete:"):
        _change(store, lambda: store.delete_label(picked.id, target.id if target is not None else None), reload=True)


def _change(store: Store, change: Callable[[], object], reload: bool) -> None:
    """Make a change to the label set; with ``reload``, show the current image as the change left it (its objects'
    labels and colours were rewritten in the store)."""
    try:
        change()
    except SamdashError as exc:
        st.error(str(exc), icon="⚠️")
        return
    data = session()
    if reload and data.saved is not None and (info := store.image(data.saved.image_id)) is not None:
        open_image(store, info, data.image)
    st.rerun()


def new_object_label(workspace: Workspace, labels: list[LabelInfo]) -> None:
    """The label picked for the objects drawn from now on (always on the page, so the layout stays the same)."""
    by_id = {label.id: label for label in labels}
    picked = st.selectbox(
        "Label for new objects",
        [_NONE, *by_id],  # not None: a selectbox shows None as nothing chosen
        format_func=lambda label_id: by_id[label_id].name if label_id in by_id else NO_LABEL,
        key=f"new-label-{session().project_id}",
        disabled=not labels,
        help="New objects get this label and its colour. Add labels in the sidebar.",
    )
    label = by_id.get(picked)
    workspace.new_label = (label.id, label.color) if label is not None else None
