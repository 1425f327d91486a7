"""Sidebar: fill the current project (or start one) from a folder on the server, where SAMDASH_IMAGE_ROOTS allows it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from samdash.config import Settings
from samdash.errors import FolderError, SamdashError
from samdash.folder_import import import_folder
from samdash.folders import browsable_folders, folder_label, image_files
from samdash.store import Store
from samdash.ui.feedback import explain
from samdash.ui.projects import new_project, open_image
from samdash.ui.state import session

SUMMARY_KEY = "server_folder_summary"


@st.cache_data(ttl=30, show_spinner=False)
def server_folders(roots: tuple[Path, ...]) -> list[Path]:
    """Walked at most every 30 s, not on every run of every session; a folder made meanwhile shows up soon."""
    return browsable_folders(roots)


def _add(store: Store, folder: Path, settings: Settings) -> None:
    """Add the folder's images with a progress bar, open the first one, and keep the summary for the next run."""
    data = session()
    bar = st.progress(0.0, text="Reading the folder…")
    warn = True
    try:
        current = store.project(data.project_id) if data.project_id else None
        project_id = current.id if current is not None else new_project(store, folder.name).id
        result = import_folder(
            store, project_id, folder, settings.image_roots, settings.max_image_pixels,
            progress=lambda done, total: bar.progress(done / total, text=f"{done} of {total} files"),
        )
        first = result.first()
        if first is not None:
            open_image(store, first)
        elif current is None:
            data.clear()  # an empty new project: the image shown belonged to none
        message, warn = result.summary(), bool(result.skipped) or first is None
    except (SamdashError, OSError) as exc:
        message = explain(exc, f"adding the images of {folder.name}")
    st.session_state[SUMMARY_KEY] = (session().project_id, warn, message)
    st.rerun()


def server_folder_panel(settings: Settings, store: Store | None) -> None:
    """A "From a server folder" popover under the project picker; nothing at all when no roots are configured."""
    if not settings.image_roots or store is None:
        return
    roots = settings.image_roots
    with st.popover("From a server folder", icon=":material/folder_open:", width="stretch"):
        folders = server_folders(roots)
        if not folders:
            st.caption("None of the folders in SAMDASH_IMAGE_ROOTS can be read by the server.")
            return
        folder = st.selectbox("Folder", folders, format_func=lambda f: folder_label(f, roots), key="server-folder")
        try:
            count = len(image_files(folder, roots))
        except FolderError as exc:
            st.error(str(exc), icon="⚠️")
            return
        current = store.project(session().project_id) if session().project_id else None
        into = f"into **{current.name}**" if current is not None else f"into a new project **{folder.name}**"
        # The whole path, which the selectbox cuts short in a narrow sidebar.
        files = f"{count} image file{'' if count == 1 else 's'}, added {into}." if count else "No images in this folder."
        st.caption(f"**{folder_label(folder, roots)}**: {files}")
        if st.button("Add this folder", key="server-folder-add", type="primary", icon=":material/add_photo_alternate:",
                     width="stretch", disabled=not count):
            _add(store, folder, settings)
    summary = st.session_state.get(SUMMARY_KEY)
    if summary is not None and summary[0] == session().project_id:
        _, warn, message = summary
        (st.warning if warn else st.success)(message, icon=":material/folder_open:")
