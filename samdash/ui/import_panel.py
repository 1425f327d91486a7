"""Importing a COCO file from the sidebar into the open project: its images uploaded with it, or in a server folder."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import streamlit as st

from samdash.coco_import import import_coco
from samdash.config import Settings
from samdash.errors import SamdashError
from samdash.folders import allowed_folder, folder_label
from samdash.store import Store
from samdash.ui.projects import open_image, open_project
from samdash.ui.server_folder import server_folders
from samdash.ui.state import session

UPLOADED, ON_SERVER = "Uploaded here", "In a server folder"


def import_panel(store: Store | None) -> None:
    """A COCO instances file and its images become objects of the open project (or of a new one)."""
    with st.popover("Import COCO", icon=":material/upload_file:", width="stretch", disabled=store is None):
        if store is None:
            return
        settings: Settings = st.session_state["settings"]
        roots = settings.image_roots
        st.caption("A COCO instances file (RLE or polygons) and its images. Categories become labels; what cannot be "
                   "imported is listed.")
        annotations = st.file_uploader("COCO instances (JSON)", type=["json"], key="import-json")
        where = st.radio("Its images are", (UPLOADED, ON_SERVER), horizontal=True, key="import-from") if roots else UPLOADED
        images: Callable[[], AbstractContextManager[Path]] | None
        if where == UPLOADED:
            uploads = st.file_uploader("Its images", accept_multiple_files=True, key="import-images") or []
            images = lambda: _uploaded(uploads)  # noqa: E731
        else:
            folders = server_folders(roots)
            folder = st.selectbox("Folder", folders, format_func=lambda f: folder_label(f, roots), key="import-folder",
                                  index=0 if folders else None, placeholder="No folder here can be read")
            images = (lambda: nullcontext(allowed_folder(folder, roots))) if folder is not None else None  # noqa: E731
        if st.button("Import", icon=":material/download_done:", width="stretch", disabled=annotations is None or images is None):
            _import(store, annotations.getvalue(), images, settings.max_image_pixels)
        if (report := st.session_state.get("import_report")) is not None:
            (st.warning if "left out" in report or report.startswith("Nothing") else st.success)(report)


@contextmanager
def _uploaded(uploads: list) -> Iterator[Path]:
    """The uploaded images in a folder that lasts as long as the import."""
    with tempfile.TemporaryDirectory(prefix="samdash-import-") as folder:
        for upload in uploads:
            (Path(folder) / Path(upload.name).name).write_bytes(upload.getvalue())
        yield Path(folder)


def _import(store: Store, annotations: bytes, images: Callable[[], AbstractContextManager[Path]], max_pixels: int) -> None:
    """Import into the open project (a new one when none is open) with a progress bar; show what it added."""
    data = session()
    project = store.project(data.project_id) if data.project_id is not None else None
    bar = st.progress(0.0, text="Importing…")
    try:
        project = project or store.create_project("Imported")
        with images() as folder:
            report = import_coco(store, annotations, folder, project, max_pixels,
                                 progress=lambda done, total: bar.progress(done / total, text=f"{done} of {total} images"))
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
