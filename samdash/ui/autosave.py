"""Autosave: every change to the current image's objects is written in the run that made it.

Nothing to press. A write that fails leaves the work in the page, says that
it is not saved, and is tried again with the next change; what was saved
before stays as it was (each save is one transaction).
"""

from __future__ import annotations

import streamlit as st

from samdash.drawings import Workspace
from samdash.errors import SamdashError
from samdash.store import Conflict, SavedImage, Store, StoreError
from samdash.ui.projects import add_to_project, open_image
from samdash.ui.state import session


# What a session showed of an image, and had saved of it, before another session's save replaced it.
Replaced = tuple[Workspace, SavedImage]


def catch_up(store: Store | None) -> Replaced | None:
    """Show the image as saved when another session (a second tab, a teammate) changed it since; what it replaced."""
    data = session()
    if store is None or data.saved is None:
        return None
    if store.revision(data.saved.image_id) != data.saved.revision:
        return _reload(
            store, "This image was changed in another tab or by a teammate: showing its latest objects, with your new drawings on top."
        )
    return None


def autosave(store: Store | None, slot: st.delta_generator.DeltaGenerator) -> None:
    """Write what changed on the current image; the first object made on an unsaved sample starts a project."""
    data = session()
    workspace, image = data.workspace, data.image
    if store is None or workspace is None or image is None:
        return
    try:
        started = data.saved is None
        if started:
            if not workspace.segments or data.unsaved_file is None:
                return
            info, _ = add_to_project(store, image, data.unsaved_file.read_bytes())
            data.saved = store.load_workspace(info)[1]
            data.unsaved_file = None
            data.url = {"project": info.project_id, "image": "1"}
        store.save_workspace(workspace, data.saved)
        if started:
            st.rerun(scope="app")  # the sidebar (project, labels) and the URL show the new project
    except Conflict:
        # Saved elsewhere since this run began: the next run brings the image up to date, this tab's drawings on top.
        st.rerun()
    except (StoreError, OSError) as exc:
        reason = str(exc) if isinstance(exc, SamdashError) else f"The data directory could not be written ({exc})."
        slot.error(
            f"**Your last change is not saved.** {reason} It is kept in this page and saved with the next change.",
            icon=":material/sync_problem:",
        )


def _reload(store: Store, message: str) -> Replaced | None:
    data = session()
    replaced = (data.workspace, data.saved)
    info = store.image(data.saved.image_id)
    if info is None:
        st.toast("This image was removed from its project elsewhere.", icon=":material/info:")
        data.saved = None
        return None
    open_image(store, info)
    st.toast(message, icon=":material/sync:")
    return replaced
