"""Download buttons: files are built only when a button is pressed, not on every rerun."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from samdash import export
from samdash.drawings import Workspace
from samdash.imaging import LoadedImage
from samdash.segments import Segment
from samdash.ui.sidebar import DisplayOptions


def _button(label: str, data: Callable[[], bytes | str], file_name: str, mime: str, key: str) -> None:
    st.download_button(label, data=data, file_name=file_name, mime=mime, key=key, on_click="ignore", width="stretch", icon=":material/download:")


def _active(segment: Segment, image: LoadedImage, stem: str, key: str) -> None:
    slug = export.slug(segment.name)
    _button("Mask (PNG)", lambda: export.mask_png(segment.mask), f"{stem}-{slug}-mask.png", "image/png", f"mask-{key}")
    _button("Cut-out (RGBA PNG)", lambda: export.cutout_png(image.rgb, segment.mask), f"{stem}-{slug}-cutout.png", "image/png", f"cutout-{key}")


def _all(segments: list[Segment], image: LoadedImage, display: DisplayOptions, stem: str, key: str) -> None:
    size = (image.width, image.height)
    polygons = st.toggle("COCO as polygons (instead of RLE)", key=f"polygons-{key}")
    _button("Label map (PNG)", lambda: export.label_map_png(segments, size), f"{stem}-labels.png", "image/png", f"labels-{key}")
    _button(
        "Outlined result (PNG, full size)",
        lambda: export.overlay_png(image.rgb, segments, thickness=display.thickness, fill_opacity=display.fill_opacity),
        f"{stem}-outlined.png",
        "image/png",
        f"overlay-{key}",
    )
    _button(
        "COCO instances (JSON)",
        lambda: export.coco_json(segments, image.name, size, polygons=polygons),
        f"{stem}-coco.json",
        "application/json",
        f"coco-{key}-{polygons}",
    )
    _button("YOLO-seg (TXT)", lambda: export.yolo_seg(segments, size), f"{stem}-yolo.txt", "text/plain", f"yolo-{key}")


def download_panel(workspace: Workspace, image: LoadedImage, display: DisplayOptions) -> None:
    if not workspace.segments:
        return
    stem = Path(image.name).stem or "image"
    key = workspace.image_hash[:8]
    st.markdown("**Download**")
    active_col, all_col = st.columns(2, gap="medium")
    with active_col:
        active = workspace.active
        st.caption(f"Active object: {active.name}" if active else "No active object")
        if active is not None:
            _active(active, image, stem, f"{key}-{active.id}")
    with all_col:
        visible = [s for s in workspace.segments if s.visible]
        st.caption(f"All visible objects ({len(visible)})")
        if visible:
            _all(visible, image, display, stem, key)
