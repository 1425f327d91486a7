"""Moving through a project's images: previous / next, a "done" mark, and the list of all of them."""

from __future__ import annotations

import base64

import streamlit as st

from samdash.store import ImageInfo, Store
from samdash.ui.projects import open_image
from samdash.ui.state import session


def _thumbnail_url(store: Store, info: ImageInfo) -> str | None:
    cache: dict[str, str | None] = session().cache("image-thumbnails")
    if info.content_hash not in cache:
        path = store.thumbnail_path(info.content_hash)
        cache[info.content_hash] = "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode() if path.exists() else None
    return cache[info.content_hash]


def _open_listed(store: Store, images: list[ImageInfo]) -> None:
    rows = st.session_state["image-table"].selection.rows
    if rows:
        open_image(store, images[rows[0]])


def image_navigator(store: Store | None) -> None:
    """In a container that is always there, so the working area below keeps its place."""
    slot = st.container(key="image-nav")
    data = session()
    if store is None or data.project_id is None or data.saved is None:
        return
    images = store.images(data.project_id)
    index = next((i for i, info in enumerate(images) if info.id == data.saved.image_id), None)
    if index is None:
        return
    current = images[index]
    with slot:
        # One row that wraps on a narrow window instead of cutting its labels short.
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            st.button(
                "Previous", icon=":material/arrow_back:", disabled=index == 0, key="image-prev",
                on_click=open_image, args=(store, images[index - 1]) if index > 0 else None,
            )
            st.markdown(f"**Image {index + 1} of {len(images)}** · {current.name}", width="content")
            mark = st.checkbox("Done", current.done, key=f"done-{current.id}", help="Mark this image as finished")
            if mark != current.done:
                store.set_done(current.id, mark)
            last = index == len(images) - 1
            st.button(
                "Next", icon=":material/arrow_forward:", disabled=last, key="image-next",
                on_click=open_image, args=None if last else (store, images[index + 1]),
            )
        if len(images) > 1:
            with st.expander(f"All images of this project ({len(images)})"):
                st.dataframe(
                    {
                        "": [_thumbnail_url(store, info) for info in images],
                        "Image": [info.name for info in images],
                        "Objects": [info.objects for info in images],
                        "Done": [info.done for info in images],
                    },
                    column_config={
                        "": st.column_config.ImageColumn(width="small"),
                        "Done": st.column_config.CheckboxColumn(),
                        # Counted when the page last ran in full: a drawing reruns only the working area, and a full
                        # run after each object raced with the next drawing on a busy server.
                        "Objects": st.column_config.NumberColumn(help="As saved when the page last loaded"),
                    },
                    hide_index=True,
                    on_select=lambda: _open_listed(store, images),
                    selection_mode="single-row",
                    key="image-table",
                    width="stretch",
                )
