"""The whole project as a dataset, from the sidebar; built only when its download button is pressed."""

from __future__ import annotations

import streamlit as st

from samdash.dataset import DEFAULT_TOLERANCE_PX, FORMATS, export_bytes
from samdash.export import slug
from samdash.store import Store
from samdash.ui.state import session

TITLES = {"coco": "COCO instances (with the images)", "yolo": "YOLO-seg (images, labels, data.yaml)", "masks": "Mask PNGs and label maps"}


def dataset_panel(store: Store | None) -> None:
    """Export the open project: every image and object, with the labels as categories."""
    project_id = session().project_id
    project = store.project(project_id) if store is not None and project_id is not None else None
    with st.popover("Export project", icon=":material/dataset:", width="stretch", disabled=project is None):
        if project is None:
            return
        fmt = st.radio("Format", FORMATS, format_func=TITLES.get, key="dataset-format")
        options: dict = {}
        if fmt == "coco":
            options["polygons"] = st.toggle("Polygons instead of RLE (holes are filled)", key="dataset-polygons")
        elif fmt == "yolo":
            options["tolerance"] = st.number_input(
                "Polygon simplification (px)", 0.0, 10.0, DEFAULT_TOLERANCE_PX, 0.5, key="dataset-tolerance",
                help="Kept only where the simplified polygon covers at least 98 % of the traced one (IoU); 0: none.",
            )
            options["val_fraction"] = st.slider("Validation share", 0.0, 0.5, 0.0, 0.05, key="dataset-val", help="Images split by a fixed seed.")
        st.caption(f"{project.images} images of “{project.name}”, labels as categories; objects without a label are “object”.")
        st.download_button(
            "Build and download",
            data=lambda: export_bytes(store, project.id, fmt, **options)[0],
            file_name=f"{slug(project.name)}-{fmt}.zip",
            mime="application/zip",
            on_click="ignore",
            icon=":material/download:",
            width="stretch",
            key="dataset-download",
        )
