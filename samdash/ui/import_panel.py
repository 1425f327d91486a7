"""Importing a COCO file from the sidebar: the file and its images uploaded together, into the open project."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from samdash.coco_import import import_coco
from samdash.config import Settings
from samdash.errors import SamdashError
from samdash.store import Store
from samdash.ui.projects import open_image, open_project
from samdash.ui.state import session


def import_panel(store: Store | None) -> None:
    """A COCO instances file and its images become objects of the open project (or of a new one)."""
    with st.popover("Import COCO", icon=":material/upload_file:", width="stretch", disabled=store is None):
        if store is None:
            return
        st.caption("A COCO instances file (RLE or polygons) and its images. Categories become labels; what cannot be "
                   "imported is listed. Images on the server: `python -m samdash import` (see the README).")
        annotations = st.file_uploader("COCO instances (JSON)", type=["json"], key="import-json")
        images = st.file_uploader("Its images", accept_multiple_files=True, key="import-images")
        if st.button("Import", icon=":material/download_done:", width="stretch", disabled=annotations is None):
            _import(store, annotations.getvalue(), images or [])
        if (report := st.session_state.get("import_report")) is not None:
            (st.warning if "left out" in report else st.success)(report)


def _import(store: Store, annotations: bytes, images: list) -> None:
    settings: Settings = st.session_state["settings"]
    data = session()
    project = store.project(data.project_id) if data.project_id is not None else None
    try:
        project = project or store.create_project("Imported")
        with tempfile.TemporaryDirectory(prefix="samdash-import-") as folder:
            for upload in images:
                (Path(folder) / Path(upload.name).name).write_bytes(upload.getvalue())
            report = import_coco(store, annotations, Path(folder), project, settings.max_image_pixels)
    except (SamdashError, OSError) as exc:
        st.session_state["import_report"] = f"Nothing imported: {exc}"
        return
    st.session_state["import_report"] = report.text()
    if not report.images:
        return
    shown = store.image(data.saved.image_id) if data.saved is not None and data.project_id == project.id else None
    if shown is not None:
        open_image(store, shown, data.image)  # the image on screen, with any objects the file added to it
    else:
        open_project(store, project.id)
    st.rerun()
