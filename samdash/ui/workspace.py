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

So what comes and goes (what the page waits for, an error) goes into a container
that is always there.

The page never waits inside a run: while the model loads or the image is
encoded, the canvas and the saved objects are shown and the run ends; a small
fragment on the status line polls the work and runs the page again once it is
done, and that run segments whatever was drawn meanwhile (the canvas holds it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitAPIException

from samdash.canvas import (
    BRUSH_COLOR,
    ERASER_COLOR,
    EXCLUDE_COLOR,
    INCLUDE_COLOR,
    VIEW_COLOR,
    BackgroundFit,
    Shape,
    shapes_from_canvas,
)
from samdash.config import Settings
from samdash.drawings import Workspace
from samdash.encode_queue import URGENT, encode_ahead, shared
from samdash.engine import Embedding, Segmenter, cached_embedding
from samdash.errors import SamdashError
from samdash.imaging import LoadedImage
from samdash.render import draw_layers
from samdash.store import ImageInfo, Store
from samdash.ui.display import MAX_CANVAS_HEIGHT, background_jpeg, jpeg_data_url, resized
from samdash.ui.drawable_canvas import st_canvas
from samdash.ui.everything_panel import everything_panel
from samdash.ui.export_panel import download_panel
from samdash.ui.feedback import reported
from samdash.ui.instant_send import send_drawings_on_release
from samdash.ui.labels import new_object_label, project_labels
from samdash.ui.objects import candidate_picker, object_list
from samdash.ui.autosave import Replaced, autosave, catch_up
from samdash.ui.projects import project_store
from samdash.ui.resources import start_held_model
from samdash.ui.sidebar import DisplayOptions, ModelState
from samdash.ui.state import current_image, session
from samdash.ui.width_probe import column_width
from samdash.ui.zoom import current_view, overview, show_view, zoom_bar
from samdash.view import View

# One line of caption: the status line never grows, so nothing below it moves.
STATUS_LINE_PX = 24
# Work done within this much time shows no progress at all (a cached embedding read from disk, a GrabCut copy).
_QUICK_WAIT_S = 0.5
# A column's width on a common laptop screen, for the result drawn before the browser has measured the column.
_LIKELY_COLUMN_PX = 640
# Images after the current one encoded in the background.
ENCODE_AHEAD = 2
# Prompts are drawn in one colour that stands out on most photos; objects get their own colours in the result.
PROMPT_COLOR = "#00e5ff"
MODES = {
    "Box": "rect",
    "Freehand region": "freedraw",
    "Include point": "point",
    "Exclude point": "point",
    "Polygon": "polygon",
    "Brush": "freedraw",
    "Eraser": "freedraw",
    "Zoom to box": "rect",
}
# Drawings that are not SAM prompts are told apart by their colour (see samdash.canvas).
_STROKES = {"Brush": BRUSH_COLOR, "Eraser": ERASER_COLOR, "Zoom to box": VIEW_COLOR}
MODES_HELP = (
    "**Box**, **Freehand region**: SAM segments what you outline. **Include/Exclude point**: refine the selected "
    "object. **Polygon**: click its corners and then the first one again; the object is the polygon itself, no SAM. "
    "**Brush**, **Eraser**: paint onto the selected object's mask. **Zoom to box**: drag around the part to look at."
)


# When the page first waited for a piece of work, and when that work started running: a drawing reruns the area
# and makes a new ``_Pending``, and the time shown must not start again from zero.
_SEEN: WeakKeyDictionary[Future, float] = WeakKeyDictionary()
_RUNNING: WeakKeyDictionary[Future, float] = WeakKeyDictionary()


@dataclass(frozen=True)
class _Pending:
    """Work the page waits for (the model loading, the image encoding) while it shows the image and takes drawings."""

    future: Future
    what: str
    queued_behind: str | None = None  # what the work waits for before it starts, if it can wait

    def text(self) -> str:
        now = time.monotonic()
        asked = _SEEN.setdefault(self.future, now)
        if self.queued_behind is None or self.future.running():
            started = _RUNNING.setdefault(self.future, now)
            doing = f"{self.what}… {now - started:.0f} s"
        else:
            doing = f"Waiting for the encoder, busy with {self.queued_behind}… {now - asked:.0f} s"
        return f":material/hourglass_top: {doing} · You can draw now: drawings are segmented once it is done."


@st.fragment(run_every=1.0)
def _wait_for(pending: _Pending) -> None:
    """The status line while ``pending`` runs; the page runs again once it is done, and segments what was drawn.

    A fragment of its own, polled by the browser: the working area's run ends at once and takes each drawing as
    it comes, so nothing drawn meanwhile waits behind a run that is itself waiting.
    """
    if pending.future.done():
        st.rerun(scope="app")
    start_held_model(shown=False)  # a canvas that never reports itself holds the model back only so long
    st.caption(pending.text())


def _embedding(segmenter: Segmenter, image: LoadedImage) -> tuple[Embedding | None, _Pending | None]:
    """The image's embedding, or the encode to wait for (one already cached or quick returns at once)."""
    key = (segmenter.cache_id, image.content_hash)
    data = session()
    if data.encode is not None and data.encode[0] != key:
        data.encode[1].cancel()  # an image this session has left: if its encode has not started, it never will
        data.encode = None
    embedding = cached_embedding(segmenter, image.content_hash)
    if embedding is not None:
        return embedding, None  # at once, even while another session's image is being encoded
    if data.encode is None or data.encode[1].cancelled():
        # Encodes run beside the script thread; this image goes before encode-ahead, and one already queued (by
        # this session, another one, or ahead of time) is the same encode.
        future = shared.submit(URGENT, key, lambda: segmenter.embed(image.rgb, image.content_hash))
        data.encode = (key, future)
    future = data.encode[1]
    try:
        embedding = future.result(timeout=_QUICK_WAIT_S)
    except TimeoutError:
        return None, _Pending(future, f"Encoding the image with {segmenter.name} (once per image)", "another image")
    except CancelledError:  # another session waiting for this image left it before its encode began
        data.encode = None
        return _embedding(segmenter, image)
    except Exception:
        data.encode = None  # shown once; the next drawing or click tries again
        raise
    return embedding, None


def _in_image(json_data: dict | None, fit: dict[str, float], view: View) -> list[Shape]:
    """The canvas's shapes in image pixels; the canvas measures against the background we sent (the view's part of
    the image), scaled and moved back here."""
    ratio_x = fit["natural_width"] / view.width
    ratio_y = fit["natural_height"] / view.height
    to_image = BackgroundFit(fit["scale_x"] * ratio_x, fit["scale_y"] * ratio_y, fit["offset_x"], fit["offset_y"],
                             view.x, view.y)
    return shapes_from_canvas(json_data, to_image)


def _sent(canvas_key: str, view: View) -> list[Shape] | None:
    """The shapes on a canvas as the browser last sent them, read before this run draws any canvas; None when it
    has sent nothing."""
    state = st.session_state.get(canvas_key)
    drawing = state.get("drawing") if state is not None else None
    fit = state.get("backgroundFit") if state is not None else None
    if not drawing or not fit:
        return None
    names = {"natural_width": "naturalWidth", "natural_height": "naturalHeight", "scale_x": "scaleX",
             "scale_y": "scaleY", "offset_x": "offsetX", "offset_y": "offsetY"}
    return _in_image(drawing.get("raw"), {name: fit[sent] for name, sent in names.items()}, view)


def _carry_over(replaced: Replaced, view: View) -> None:
    """Another session saved this image: it shows as saved now, and the drawings made here and not saved yet go
    on top of it, not lost.

    The canvas is remounted with the saved drawings and this tab's new ones; once it reports back, the new ones
    are applied like any other drawing (so an object made here gets an id after the saved ones).
    """
    previous, saved = replaced
    workspace = session().workspace
    on_canvas = _sent(previous.canvas_key, view)
    if on_canvas is None:
        on_canvas = [entry.shape for entry in previous.applied]
    known = [entry.shape for entry in saved.drawings]
    new = []
    for shape in on_canvas:
        twin = next((saved_shape for saved_shape in known if saved_shape.same_as(shape)), None)
        if twin is not None:
            known.remove(twin)
        else:
            new.append(shape)
    # Laid out, with the saved drawings, for this tab's view before its next canvas mounts (a canvas of its own:
    # the one on screen shows the drawings of the replaced objects, not the saved ones).
    workspace.carried = new
    workspace.drawing_view = None
    workspace.generation = max(workspace.generation, previous.generation) + 1


def _canvas(workspace: Workspace, image: LoadedImage, view: View, mode: str, brush_px: int, width: int | None) -> list[Shape] | None:
    """Draw the canvas ``width`` px wide, showing ``view``; return the shapes on it, in image pixels.

    None until the canvas has reported how it fitted the image (a second or so after it mounts).
    """
    if width is None:
        st.empty()  # the canvas's place, until the browser has measured the column
        return None
    size = view.canvas_size(width, MAX_CANVAS_HEIGHT)
    point = MODES[mode] == "point"
    result = st_canvas(
        background_image=background_jpeg(image, size, view),
        background_image_fit="contain",
        width=size[0],
        height=size[1],
        drawing_mode=MODES[mode],
        stroke_width=brush_px if mode in ("Brush", "Eraser") else 2 if point else 3,
        stroke_color=_STROKES.get(mode, "#ffffff" if point else PROMPT_COLOR),
        fill_color=(EXCLUDE_COLOR if mode == "Exclude point" else INCLUDE_COLOR) if point else "rgba(0,0,0,0)",
        point_display_radius=6,
        initial_drawing=workspace.drawing,
        key=workspace.canvas_key,
    )
    if result.background_fit is None or result.json_data is None:
        return None
    return _in_image(result.json_data, result.background_fit, view)


def _result(workspace: Workspace, image: LoadedImage, view: View, display: DisplayOptions, width: int | None) -> None:
    """The view of the image with its objects outlined at that view's resolution, drawn ``width`` px wide.

    Before the browser has measured the column it is drawn at a likely width and scaled to fit: a reopened image
    shows its objects with the page's first run, not a run later.
    """
    size = view.canvas_size(width or _LIKELY_COLUMN_PX, MAX_CANVAS_HEIGHT)
    shown = [s for s in workspace.segments if s.visible and (not display.only_active or s.id == workspace.active_id)]
    layers = [s.layer(display.single_color) for s in shown]
    drawn = draw_layers(
        resized(image, size, view),
        layers,
        scale=size[0] / view.width,
        origin=(view.x, view.y),
        thickness=display.thickness,
        fill_opacity=display.fill_opacity,
    )
    st.image(jpeg_data_url(drawn), width="stretch")


def _rerun_area() -> None:
    """Run the working area again: the fragment alone when it is what runs, else the page it ran with."""
    try:
        st.rerun(scope="fragment")
    except StreamlitAPIException:
        st.rerun()


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
    view = current_view(image)
    if replaced is not None:
        _carry_over(replaced, view)
    workspace = session().workspace
    segmenter = model.segmenter
    embedding, pending = None, None
    # The status line (what the page waits for, then what the encode and the last prompt took) has a fixed height:
    # a canvas that moves while the analyst draws puts the drawing elsewhere than aimed.
    status_line = st.container(key="status-line", height=STATUS_LINE_PX, border=False)
    with st.container(key="encoding"), reported("encoding the image"):  # where an encoding error appears
        if segmenter is None:
            pending = _Pending(model.engine, f"Loading {model.name} (once per server process)")
        else:
            embedding, pending = _embedding(segmenter, image)
    labels = project_labels(store)
    mode = st.segmented_control("Draw", list(MODES), default="Box", key="mode", required=True, help=MODES_HELP)
    # Zooming needs the drawings made so far applied first: not while the image is still being encoded.
    change_view, beside_zoom = zoom_bar(view, embedding is None)
    with beside_zoom:
        brush_px = 0
        if mode in ("Brush", "Eraser"):
            brush_px = st.slider("Brush width (screen px)", 2, 80, 16, key="brush-px",
                                 help="Zoom in for a finer brush: the width is kept in image pixels.")
        else:
            new_object_label(workspace, labels)
    left, right = st.columns(2, gap="medium")
    result_area = right.container(key="result")
    with right:
        # The two columns are equally wide: one measure serves both (a second would cost another run to report).
        # It sits under the result, where its line of height moves nothing: above the canvas, it would set the
        # canvas lower than the result beside it.
        width = column_width("column_width", 560)
    with left, st.container(key="canvas"):
        st.markdown("**Draw your prompt**")
        if width is not None and workspace.drawing_view != view:
            if workspace.drawing is None and not workspace.carried:
                workspace.drawing_view = view  # nothing to lay out: the canvas keeps its key
            else:  # drawings as saved or carried over (at whatever zoom they were drawn), laid out for this view
                show_view(workspace, image, view, width)
        shapes = _canvas(workspace, image, view, mode, brush_px, width)
        start_held_model(shown=shapes is not None)
        send_drawings_on_release()
        decoded_before = workspace.last_decode_ms
        zoom_to = next((shape for shape in shapes or () if shape.kind == "view"), None)
        if shapes is not None and embedding is not None:
            with reported("segmenting"):
                prompts = [shape for shape in shapes if shape.kind != "view"]
                for refused in workspace.sync(prompts, segmenter, embedding, (image.width, image.height)):
                    st.error(str(refused), icon="⚠️")
            # A zoom or pan goes after the drawings sent with it are applied: they move with the view.
            target = change_view(view, width) if change_view is not None and width is not None else None
            if zoom_to is not None and width is not None:
                (x0, y0), (x1, y1) = zoom_to.points
                target = view.around((x0, y0, x1, y1), width)
            if target is not None:
                show_view(workspace, image, target, width)
                _rerun_area()
    with result_area:
        st.markdown("**Result**" if view.is_whole else f"**Result** · {view.label()}")
        with reported("drawing the result"):
            _result(workspace, image, view, display, width)
        overview(image, view)
    # (decode ms, outlined ms) of the last prompt this session decoded: the server's time from the start of the run
    # to its result sent, shown only beside the decode it belongs to (not on another image's).
    timings = session().cache("timing")
    if workspace.last_decode_ms != decoded_before:
        timings["last"] = (workspace.last_decode_ms, (time.perf_counter() - run_began) * 1000)
    with status_line:
        if pending is not None:
            _wait_for(pending)  # a fragment: a block of its own holding its caption, as below
        else:
            st.container().caption(_done_text(segmenter, embedding, workspace.last_decode_ms, timings.get("last")))
    with st.container(key="candidates"):
        candidate_picker(workspace, image, segmenter.name if segmenter is not None else model.name)
    with st.container(key="objects"):
        object_list(workspace, labels, _counts_elsewhere(store) if labels else {})
    everything_panel(workspace, segmenter, embedding, image)
    with st.container(key="downloads"):
        download_panel(workspace, image, display)
    autosave(store, save_status)
    if embedding is not None and store is not None:
        _encode_next(store, segmenter)


def _counts_elsewhere(store: Store | None) -> dict[int | None, int]:
    """Objects per label on the project's other images, as saved (this image's are counted from the page)."""
    data = session()
    if store is None or data.project_id is None:
        return {}
    try:
        return store.label_counts(data.project_id, except_image=data.saved.image_id if data.saved is not None else None)
    except SamdashError:
        return {}  # the store's own message is on the page already


def _done_text(segmenter: Segmenter, embedding: Embedding | None, decode_ms: float | None,
               last: tuple[float, float] | None) -> str:
    """The status line once nothing is pending: what the encode and the last prompt took, or that the encode failed."""
    if embedding is None:
        return f"The image could not be encoded with {segmenter.name}: see the message above."
    if segmenter.is_fallback:  # nothing worth calling an encode: a working copy of the image
        text = f"Segmenting with {segmenter.name}"
    else:
        text = f"Image encoded in {embedding.encode_seconds:.1f} s with {segmenter.name} (cached for this image)"
    if decode_ms is not None:
        text += f" · last prompt decoded in {decode_ms:.0f} ms"
        if last is not None and last[0] == decode_ms:
            text += f", outlined in {last[1]:.0f} ms"
    return text


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
