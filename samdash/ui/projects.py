"""Projects on the page: the store, the URL (``?project=<id>&image=<n>``), and the picker in the sidebar.

The store is the record of the analyst's work; the session only holds what
is on screen, and can always be rebuilt from the store and the URL (a
reload, a restarted server, a teammate opening the same link).
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import streamlit as st

from samdash.config import Settings
from samdash.errors import SamdashError
from samdash.imaging import LoadedImage, thumbnail_jpeg
from samdash.store import ImageInfo, ProjectInfo, Store, StoreError
from samdash.ui.feedback import explain
from samdash.ui.state import SessionData, session, show


@st.cache_resource(show_spinner=False)
def _open_store(data_dir: str) -> Store:
    return Store(Path(data_dir))


def project_store() -> Store | None:
    """The store of the configured data directory; None (with the reason on the page) when it cannot be used."""
    settings: Settings = st.session_state["settings"]  # the page's settings, put there by every run
    try:
        return _open_store(str(settings.data_dir))
    except StoreError as exc:
        st.error(f"{exc} Work on this page is not saved.", icon="⚠️")
        return None


def open_image(store: Store, info: ImageInfo, decoded: LoadedImage | None = None) -> None:
    """Show a stored image with its objects as saved, and put it in the URL; what fails is said on the page and the
    current image stays. ``decoded`` is the image's pixels when the caller has them already (an upload): a 12 MP
    image is not decoded twice."""
    settings: Settings = st.session_state["settings"]
    try:
        if decoded is not None:
            image, (workspace, saved) = decoded, store.load_workspace(info)
        else:
            # The decode and the objects' read overlap: both spend most of their time in C code that lets go of
            # the GIL (a reopened 12 MP image with 50 objects: a quarter of a second each).
            with ThreadPoolExecutor(1, thread_name_prefix="samdash-decode") as pool:
                decoding = pool.submit(store.load_image, info, settings.max_image_pixels)
                workspace, saved = store.load_workspace(info)
                image = decoding.result()
    except (SamdashError, OSError) as exc:
        st.session_state["open_error"] = explain(exc, f"opening {info.name}")
        return
    st.session_state.pop("open_error", None)
    data = session()
    data.project_id = info.project_id
    show(image, workspace, saved)
    data.url = {"project": info.project_id, "image": str(_number(store, info))}


def _number(store: Store, info: ImageInfo) -> int:
    """The image's place in its project, from 1, as the URL names it."""
    return next(n for n, other in enumerate(store.images(info.project_id), start=1) if other.id == info.id)


def open_project(store: Store, project_id: str, number: int = 1) -> None:
    """Open a project at its ``number``-th image (the first one when there is no such image)."""
    images = store.images(project_id)
    data = session()
    data.project_id = project_id
    if images:
        open_image(store, images[min(max(number, 1), len(images)) - 1])
    else:
        data.url = {"project": project_id}


def new_project(store: Store, name: str | None = None) -> ProjectInfo:
    project = store.create_project(name or time.strftime("Project %d %b %H:%M"))
    session().project_id = project.id
    session().url = {"project": project.id}
    return project


def add_to_project(store: Store, image: LoadedImage, data: bytes) -> tuple[ImageInfo, bool]:
    """Add an image to the current project (started now if there is none); whether it is new there."""
    project_id = session().project_id or new_project(store).id
    return store.add_image(project_id, data, image.name, image.content_hash, (image.width, image.height), thumbnail_jpeg(image.rgb))


def follow_url(store: Store) -> None:
    """A new session (a reload, a shared link) opens what the URL names; after that the URL follows the session.

    The session's own moves are written into the URL here, by the page's script: the URL a widget's callback set
    could reach another session's page when several sessions ran callbacks at once.
    """
    data = session()
    if data.url is None:
        _open_url(store, data)
    keep_url()


def keep_url() -> None:
    """Put the session's place into the URL (at the start and at the end of a run of the whole page)."""
    url = session().url
    if url is not None and dict(st.query_params) != url:
        st.query_params.from_dict(url)


def _open_url(store: Store, data: SessionData) -> None:
    data.url = {}
    project_id = st.query_params.get("project")
    if not project_id:
        return
    try:
        number = int(st.query_params.get("image", "1"))
    except ValueError:
        number = 1
    if store.project(project_id) is None:
        st.session_state["project_notice"] = (
            f"There is no project “{project_id}” here (it may have been deleted). Pick one in the sidebar, or start a new one."
        )
        return
    open_project(store, project_id, number)


def project_panel(store: Store | None) -> None:
    """Sidebar: which project, and new / rename / delete; the same widgets whether a project is open or not."""
    st.subheader("Project")
    if store is None:
        st.caption("Projects are unavailable: see the message on the page.")
        return
    projects = {p.id: p for p in store.projects()}
    data = session()
    # A picker of its own for each list of projects: other sessions add and delete projects, and a browser still
    # holding the picker of an earlier list must not open another project than the one it showed.
    key = "project-pick-" + hashlib.blake2b(" ".join(projects).encode(), digest_size=6).hexdigest()
    st.session_state[key] = data.project_id if data.project_id in projects else None
    # No callback on the picker: when other sessions change the list of projects, a browser may report a choice
    # its user never made. The project changes only with the Open button.
    picked = st.selectbox(
        "Project",
        list(projects),
        index=None,  # no project until this session opens one: never another session's by default
        format_func=lambda pid: f"{projects[pid].name} ({projects[pid].images} images)",
        key=key,
        placeholder="Not saved yet: your first object starts one",
        label_visibility="collapsed",
    )
    if st.button("Open", icon=":material/folder_open:", width="stretch", disabled=picked in (None, data.project_id), key="open-project"):
        open_project(store, picked)
        st.rerun()
    new, manage = st.columns(2)
    if new.button("New", icon=":material/add:", width="stretch", help="Start an empty project"):
        new_project(store)
        data.clear()
        st.rerun()
    current = projects.get(data.project_id)
    with manage.popover("Manage", width="stretch", disabled=current is None):
        if current is None:
            return
        name = st.text_input("Name", current.name, key=f"rename-{current.id}")
        if st.button("Rename", key="rename-apply") and name.strip():
            store.rename_project(current.id, name)
            st.rerun()
        st.divider()
        st.markdown(f"Delete **{current.name}**, its {current.images} images and every object on them? This cannot be undone.")
        if st.button("Delete for good", key="delete-project", type="primary", icon=":material/delete_forever:"):
            store.delete_project(current.id)
            data.clear()
            data.project_id = None
            data.url = {}
            st.rerun()


def project_notice() -> None:
    """Why the URL's project could not be opened; in a slot that is always there (the page keeps its layout)."""
    slot = st.container(key="project-notice")
    if error := st.session_state.get("open_error"):
        slot.error(error, icon=":material/broken_image:")
    if session().project_id is not None:
        st.session_state.pop("project_notice", None)  # another project is open now
    elif notice := st.session_state.get("project_notice"):
        slot.warning(notice, icon=":material/folder_off:")
