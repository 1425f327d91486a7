"""The working area: canvas on the left, outlined result on the right, candidates and objects below.

It is one ``st.fragment``, so a drawing reruns this area, not the page.

Every run lays out the same skeleton: the same blocks and elements at the same
places, whether the image is being encoded, has just failed to encode, or is
ready. Two things depend on it:

- Streamlit's page applies each message at a path (the n-th child of the n-th
  child …). When a run starts, the messages of the previous run that have not
  reached the browser yet are dropped, except references to elements the
  browser has cached (the canvas, with its background image, is one). Such a
  reference then lands on the layout of an earlier run; if that run had an
  element where this one has a block, the page fails ("'setIn' cannot be
  called on an ElementNode") and goes blank. Under load, when the server is
  slow to send, this happens.
- An element whose place (or whose container's place) changes is remounted by
  the browser, and a remounted canvas forgets what was drawn on it: the drawing
  vanishes, and the next drawing sent without it takes its object away.

So what comes and goes (the encoder's status, an error) goes into a container
that is always there.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import CancelledError, Future

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from samdash.canvas import EXCLUDE_COLOR, INCLUDE_COLOR, BackgroundFit, Shape, shapes_from_canvas
from samdash.config import Settings
from samdash.drawings import Workspace
from samdash.encode_queue import URGENT, encode_ahead, shared
from samdash.engine import Embedding, Segmenter, cached_embedding
from samdash.imaging import LoadedImage
from samdash.render import draw_layers
from samdash.store import ImageInfo, Store
from samdash.ui.display import background_jpeg, fit_size, jpeg_data_url, resized
from samdash.ui.drawable_canvas import st_canvas
from samdash.ui.everything_panel import everything_panel
from samdash.ui.export_panel import download_panel
from samdash.ui.feedback import reported
from samdash.ui.instant_send import send_drawings_on_release
from samdash.ui.objects import candidate_picker, object_list
from samdash.ui.autosave import Replaced, autosave, catch_up
from samdash.ui.projects import project_store
from samdash.ui.sidebar import DisplayOptions, ModelState
from samdash.ui.state import current_image, session
from samdash.ui.width_probe import column_width

# One line of caption: the status line never grows, so nothing below it moves.
STATUS_LINE_PX = 24
# Images after the current one encoded in the background.
ENCODE_AHEAD = 2
# Prompts are drawn in one colour that stands out on most photos; objects get their own colours in the result.
PROMPT_COLOR = "#00e5ff"
MODES = {
    "Box": "rect",
    "Freehand region": "freedraw",
    "Include point": "point",
    "Exclude point": "point",
}


def _embed(segmenter: Segmenter, image: LoadedImage, status: DeltaGenerator) -> Embedding:
    """The image's embedding; a cached one returns at once, a first encode shows its progress on the status line."""
    key = (segmenter.cache_id, image.content_hash)
    data = session()
    if data.encode is not None and data.encode[0] != key:
        data.encode[1].cancel()  # an image this session has left: if its encode has not started, it never will
        data.encode = None
    embedding = cached_embedding(segmenter, image.content_hash)
    if embedding is not None:
        return embedding  # at once, even while another session's image is being encoded

    def ask() -> Future[Embedding]:
        """Encodes run beside the script thread, so the page can show elapsed time; this image goes before
        encode-ahead, and one already queued (by this session, another one, or ahead of time) is the same encode."""
        future = shared.submit(URGENT, key, lambda: segmenter.embed(image.rgb, image.content_hash))
        data.encode = (key, future)
        return future

    future = ask()
    start, started, wait = time.monotonic(), None, 0.3
    while True:
        try:
            return future.result(timeout=wait)
        except CancelledError:  # another session waiting for this image has left it before its encode began
            future = ask()
        except TimeoutError:
            pass
        wait = 0.5
        if started is None and future.running():
            started = time.monotonic()
        if started is not None:
            status.caption(f":material/hourglass_top: Encoding the image with {segmenter.name} (once per image)… {time.monotonic() - started:.0f} s")
        else:
            status.caption(f":material/hourglass_top: Waiting for the encoder, busy with another request… {time.monotonic() - start:.0f} s")


def _in_image(json_data: dict | None, fit: dict[str, float], image: LoadedImage) -> list[Shape]:
    """The canvas's shapes in image pixels; the canvas measures against the background we sent, scaled back here."""
    ratio_x = fit["natural_width"] / image.width
    ratio_y = fit["natural_height"] / image.height
    to_image = BackgroundFit(fit["scale_x"] * ratio_x, fit["scale_y"] * ratio_y, fit["offset_x"], fit["offset_y"])
    return shapes_from_canvas(json_data, to_image)


def _sent(canvas_key: str, image: LoadedImage) -> list[Shape] | None:
    """The shapes on a canvas as the browser last sent them, read before this run draws any canvas; None when it
    has sent nothing."""
    state = st.session_state.get(canvas_key)
    drawing = state.get("drawing") if state is not None else None
    fit = state.get("backgroundFit") if state is not None else None
    if not drawing or not fit:
        return None
    names = {"natural_width": "naturalWidth", "natural_height": "naturalHeight", "scale_x": "scaleX",
             "scale_y": "scaleY", "offset_x": "offsetX", "offset_y": "offsetY"}
    return _in_image(drawing.get("raw"), {name: fit[sent] for name, sent in names.items()}, image)


def _carry_over(replaced: Replaced, image: LoadedImage) -> None:
    """Another session saved this image: it shows as saved now, and the drawings made here and not saved yet go
    on top of it, not lost.

    The canvas is remounted with the saved drawings and this tab's new ones; once it reports back, the new ones
    are applied like any other drawing (so an object made here gets an id after the saved ones).
    """
    previous, saved = replaced
    workspace = session().workspace
    on_canvas = _sent(previous.canvas_key, image)
    if on_canvas is None:
        on_canvas = [entry.shape for entry in previous.applied]
    known = Counter(entry.key for entry in saved.drawings)
    new = []
    for shape in on_canvas:
        if known[shape.key] > 0:
            known[shape.key] -= 1
        else:
            new.append(shape)
    kept = [entry.shape.raw for entry in workspace.applied] + [shape.raw for shape in new]
    workspace.drawing = {"objects": kept} if kept else None
    # A canvas of its own: the one on screen shows the drawings of the replaced objects, not the saved ones.
    workspace.generation = max(workspace.generation, previous.generation) + 1


def _canvas(workspace: Workspace, image: LoadedImage, mode: str) -> list[Shape] | None:
    """Draw the canvas; return the shapes on it, in image pixels.

    None until the canvas has reported how it fitted the image (a second or so after it mounts).
    """
    width = column_width("canvas_width", 560)
    if width is None:
        st.empty()  # the canvas's place, until the browser has measured the column
        return None
    size = fit_size(image, width)
    exclude = mode == "Exclude point"
    result = st_canvas(
        background_image=background_jpeg(image, size),
        background_image_fit="contain",
        width=size[0],
        height=size[1],
        drawing_mode=MODES[mode],
        stroke_width=3 if MODES[mode] != "point" else 2,
        stroke_color="#ffffff" if MODES[mode] == "point" else PROMPT_COLOR,
        fill_color=(EXCLUDE_COLOR if exclude else INCLUDE_COLOR) if MODES[mode] == "point" else "rgba(0,0,0,0)",
        point_display_radius=6,
        initial_drawing=workspace.drawing,
        key=workspace.canvas_key,
    )
    if result.background_fit is None or result.json_data is None:
        return None
    return _in_image(result.json_data, result.background_fit, image)


def _result(workspace: Workspace, image: LoadedImage, display: DisplayOptions) -> None:
    width = column_width("result_width", 560)
    if width is None:
        st.empty()  # the result's place, until the browser has measured the column
        return
    size = fit_size(image, width)
    shown = [s for s in workspace.segments if s.visible and (not display.only_active or s.id == workspace.active_id)]
    layers = [s.layer(display.single_color) for s in shown]
    drawn = draw_layers(
        resized(image, size),
        layers,
        scale=size[0] / image.width,
        thickness=display.thickness,
        fill_opacity=display.fill_opacity,
    )
    st.image(jpeg_data_url(drawn), width="stretch")


@st.fragment
def workspace_area(model: ModelState, display: DisplayOptions) -> None:
    run_began = time.perf_counter()
    # The image is read here, not passed in: a fragment rerun keeps the arguments of the last full run,
    # and a drawing sent while a new image loads must not bring the previous image back.
    store = project_store()
    replaced = catch_up(store)
    # A change made by a button of the last run (which reruns at once) is saved here.
    save_status = st.container(key="save-status")
    autosave(store, save_status)
    image = current_image()
    if image is None:
        return
    if replaced is not None:
        _carry_over(replaced, image)
    workspace = session().workspace
    segmenter = model.segmenter
    embedding = None
    # The status line (the encoder's progress, then what the encode and the last prompt took) has a fixed height:
    # a canvas that moves while the analyst draws puts the drawing elsewhere than aimed.
    status = st.container(key="status-line", height=STATUS_LINE_PX, border=False).empty()
    with st.container(key="encoding"), reported("encoding the image"):  # where an encoding error appears
        embedding = _embed(segmenter, image, status)
    mode = st.segmented_control("Draw", list(MODES), default="Box", key="mode", required=True)
    left, right = st.columns(2, gap="medium")
    with left, st.container(key="canvas"):
        st.markdown("**Draw your prompt**")
        shapes = _canvas(workspace, image, mode)
        send_drawings_on_release()
        decoded_before = workspace.last_decode_ms
        if shapes is not None and embedding is not None:
            with reported("segmenting"):
                for refused in workspace.sync(shapes, segmenter, embedding, (image.width, image.height)):
                    st.error(str(refused), icon="⚠️")
    with right, st.container(key="result"):
        st.markdown("**Result**")
        with reported("drawing the result"):
            _result(workspace, image, display)
    # (decode ms, outlined ms) of the last prompt this session decoded: the server's time from the start of the run
    # to its result sent, shown only beside the decode it belongs to (not on another image's).
    timings = session().cache("timing")
    if workspace.last_decode_ms != decoded_before:
        timings["last"] = (workspace.last_decode_ms, (time.perf_counter() - run_began) * 1000)
    if embedding is None:
        status.caption(f"The image could not be encoded with {segmenter.name}: see the message above.")
    else:
        if segmenter.is_fallback:  # nothing worth calling an encode: a working copy of the image
            timing = f"Segmenting with {segmenter.name}"
        else:
            timing = f"Image encoded in {embedding.encode_seconds:.1f} s with {segmenter.name} (cached for this image)"
        if workspace.last_decode_ms is not None:
            timing += f" · last prompt decoded in {workspace.last_decode_ms:.0f} ms"
            decode_ms, outlined_ms = timings.get("last", (None, None))
            if decode_ms == workspace.last_decode_ms:
                timing += f", outlined in {outlined_ms:.0f} ms"
        status.caption(timing)
    with st.container(key="candidates"):
        candidate_picker(workspace, image, segmenter.name)
    with st.container(key="objects"):
        object_list(workspace)
    everything_panel(workspace, segmenter, embedding, image)
    with st.container(key="downloads"):
        download_panel(workspace, image, display)
    autosave(store, save_status)
    if embedding is not None and store is not None:
        _encode_next(store, segmenter)


def _encode_next(store: Store, segmenter: Segmenter) -> None:
    """Encode the project's next images while the analyst works on this one, so "Next" finds them ready."""
    data = session()
    if data.saved is None or data.project_id is None:
        return
    images = store.images(data.project_id)
    index = next((i for i, info in enumerate(images) if info.id == data.saved.image_id), len(images))
    settings: Settings = st.session_state["settings"]

    def loader(info: ImageInfo) -> Callable[[], np.ndarray]:
        return lambda: store.load_image(info, settings.max_image_pixels).rgb

    encode_ahead(segmenter, [(info.content_hash, loader(info)) for info in images[index + 1 : index + 1 + ENCODE_AHEAD]])
