"""``python -m samdash``: the page's segmentation and downloads without a browser.

Every failure a user can cause ends in one line on stderr that names the file
and a non-zero exit; in a batch the other images are still processed.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TextIO

import numpy as np

from samdash.coco_import import import_coco
from samdash.config import Settings
from samdash.download import progress_text
from samdash.engine import Embedding, EmbeddingCache, Segmenter
from samdash.sam_engine import SamEngine
from samdash.errors import SamdashError
from samdash.everything import EverythingParams, segment_everything
from samdash.export import FORMATS, export_all
from samdash.grabcut import GrabCutEngine
from samdash.imaging import SUPPORTED_EXTENSIONS, LoadedImage, load_image_file, thumbnail_jpeg
from samdash.checkpoints import CATALOGUE, DEFAULT_MODEL, download_checkpoint
from samdash.prompts import INCLUDE, box_prompt, inside, point_prompt
from samdash.segmenter import sam_engine
from samdash.segments import Segment, SegmentState
from samdash.dataset import DEFAULT_TOLERANCE_PX, export_project
from samdash.dataset import FORMATS as DATASET_FORMATS
from samdash.store import ProjectInfo, Store


def _numbers(text: str, counts: tuple[int, ...], what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in counts:
        raise argparse.ArgumentTypeError(f"{what} must be {' or '.join(str(c) for c in counts)} comma-separated numbers, got {text!r}")
    return values


def _box(text: str) -> tuple[float, ...]:
    return _numbers(text, (4,), "--box X0,Y0,X1,Y1")


def _point(text: str) -> tuple[float, ...]:
    values = _numbers(text, (2, 3), "--point X,Y[,1|0]")
    if len(values) == 3 and values[2] not in (0, 1):
        raise argparse.ArgumentTypeError(f"a point's label is 1 (include) or 0 (exclude), got {text!r}")
    return values


def _formats(text: str) -> list[str]:
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FORMATS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    return chosen


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m samdash", description="Segment Anything from the command line.")
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser("segment", help="segment images with box / point prompts or everything in them")
    segment.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    segment.add_argument("--box", type=_box, action="append", default=[], help="X0,Y0,X1,Y1 in image pixels; one object per box")
    segment.add_argument("--point", type=_point, action="append", default=[], help="X,Y[,1|0]: include (1, default) or exclude (0); refines the last object")
    segment.add_argument("--everything", action="store_true", help="every object SAM finds (automatic mask generator)")
    segment.add_argument("--points-per-side", type=int, default=EverythingParams.points_per_side, help="grid density for --everything")
    segment.add_argument("--pred-iou-thresh", type=float, default=EverythingParams.pred_iou_thresh, help="--everything keeps masks above this predicted IoU")
    segment.add_argument("--stability-thresh", type=float, default=EverythingParams.stability_score_thresh, help="--everything keeps masks above this stability score")
    segment.add_argument("--min-area", type=int, default=EverythingParams.min_mask_region_area, help="--everything removes regions and holes smaller than this (px)")
    segment.add_argument("--model", choices=sorted(CATALOGUE), default=None, help=f"SAM model (default {DEFAULT_MODEL}, or as the checkpoint says)")
    segment.add_argument("--checkpoint", type=Path, help="a checkpoint file (official or fine-tuned)")
    segment.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default=None)
    segment.add_argument("--allow-fallback", action="store_true", help="use GrabCut when no SAM checkpoint is available")
    segment.add_argument("--out", type=Path, help="output folder (one sub-folder per image)")
    segment.add_argument(
        "--project",
        help="also save the images and their objects into this project (an id or a name; a new name starts one), "
        "to review and refine them in the page",
    )
    segment.add_argument("--ray", action="store_true", help="segment on Ray Data: an actor pool, a model per actor "
                         "(on the cluster at SAMDASH_RAY_ADDRESS, or one started here)")
    segment.add_argument("--format", type=_formats, default=["png", "coco"], help=f"comma-separated: {','.join(FORMATS)} (default png,coco)")

    commands.add_parser("projects", help="list the projects in SAMDASH_DATA_DIR")

    coco = commands.add_parser("import", help="a COCO instances file and its images into a project, to review in the page")
    coco.add_argument("annotations", type=Path, help="the COCO instances JSON")
    coco.add_argument("--images", type=Path, required=True, help="the folder holding its images (file_name is looked up there)")
    coco.add_argument("--project", required=True, help="the project's id or name (a new name starts one)")

    export = commands.add_parser("export", help="a whole project as a dataset: COCO, YOLO-seg or mask PNGs")
    export.add_argument("project", help="the project's id or name (see `projects`)")
    export.add_argument("--format", choices=DATASET_FORMATS, required=True)
    export.add_argument("--out", type=Path, required=True, help="a .zip (images with their annotations); coco also takes a .json (annotations only)")
    export.add_argument("--polygons", action="store_true", help="coco: polygons instead of RLE (holes are filled)")
    export.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_PX, help="yolo: polygon simplification in px (0: none)")
    export.add_argument("--val", type=float, default=0.0, help="yolo: share of images in a validation split (0: no split)")
    export.add_argument("--seed", type=int, default=0, help="yolo: the split's random seed")

    serve = commands.add_parser("serve", help="run the image encoder as the samdash-encoder Ray Serve application")
    serve.add_argument("--address", default=None, help="join this Ray cluster (e.g. auto, or ray://head:10001); default: start one here")
    serve.add_argument("--model", choices=sorted(CATALOGUE), default=None, help=f"SAM model (default {DEFAULT_MODEL}, or as the checkpoint says)")
    serve.add_argument("--checkpoint", type=Path, help="a checkpoint file: the same one the page loads")
    serve.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    serve.add_argument("--replicas", type=int, default=1, help="replicas of the encoder, each with its own model")
    serve.add_argument("--cpus-per-replica", type=float, default=1.0)
    serve.add_argument("--gpus-per-replica", type=float, default=0.0)

    download = commands.add_parser("download", help="download an official SAM checkpoint")
    download.add_argument("--model", choices=sorted(CATALOGUE), default=DEFAULT_MODEL)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "checkpoint", None):
        settings = replace(settings, checkpoint=args.checkpoint)
    if getattr(args, "model", None):
        settings = replace(settings, model_type=args.model)
    if getattr(args, "device", None):
        settings = replace(settings, device=args.device)
    return settings


def _image_paths(arguments: Sequence[Path]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted); missing paths are kept to be reported."""
    paths: list[Path] = []
    for argument in arguments:
        if argument.is_dir():
            paths.extend(sorted(p for p in argument.iterdir() if p.suffix.lower().lstrip(".") in SUPPORTED_EXTENSIONS))
        else:
            paths.append(argument)
    return paths


def _prompted_segments(segmenter: Segmenter, image: LoadedImage, embedding: Embedding, boxes: list, points: list) -> list[Segment]:
    """One object per box; points refine the last object (or make one when there is no box)."""
    segments: list[Segment] = []
    for box in boxes:
        prompt = box_prompt(tuple(box), image.width, image.height)
        segments.append(Segment.create(len(segments) + 1, SegmentState.of(prompt, segmenter.predict(embedding, prompt))))
    for x, y, *label in points:
        label_value = int(label[0]) if label else INCLUDE
        if segments:
            segments[-1].refine(segmenter, embedding, inside((x, y), image.width, image.height), label_value)
        else:
            prompt = point_prompt((x, y), label_value, image.width, image.height)
            segments.append(Segment.create(1, SegmentState.of(prompt, segmenter.predict(embedding, prompt))))
    return segments


def _everything_segments(
    segmenter: Segmenter, image: LoadedImage, embedding: Embedding, params: EverythingParams, first_id: int, err: TextIO
) -> list[Segment]:
    if not isinstance(segmenter, SamEngine):
        raise SamdashError("--everything needs SAM: the GrabCut fallback cannot find objects by itself")

    def progress(done: int, total: int) -> None:  # a run takes minutes on a CPU
        print(f"\r{image.name}: point batch {done} of {total}", end="\n" if done == total else "", file=err)

    found = segment_everything(segmenter.model, image.rgb, embedding, params, progress)
    return [item.to_segment(first_id + i, segmenter.cache_id) for i, item in enumerate(found)]


def _open_segmenter(settings: Settings, allow_fallback: bool, err: TextIO) -> Segmenter:
    cache = EmbeddingCache(settings.embedding_cache_mb << 20)
    try:
        return sam_engine(settings.model_type, settings, cache)
    except SamdashError as exc:
        if not allow_fallback:
            raise
        print(f"samdash: {exc} — using {GrabCutEngine.name}", file=err)
        return GrabCutEngine(cache)


def _find_project(store: Store, wanted: str) -> ProjectInfo | None:
    """The project with this id, or else with this name."""
    projects = store.projects()
    return next((p for p in projects if p.id == wanted), None) or next((p for p in projects if p.name == wanted), None)


def _project(store: Store, wanted: str) -> ProjectInfo:
    """The project with this id or name; a new one with this name when there is none."""
    return _find_project(store, wanted) or store.create_project(wanted)


def _save_to_project(store: Store, project: ProjectInfo, path: Path, image: LoadedImage, segments: list[Segment]) -> None:
    """The image joins the project (once), and the objects are added after any it has already."""
    size = (image.width, image.height)
    info, _ = store.add_image(project.id, path.read_bytes(), path.name, image.content_hash, size, thumbnail_jpeg(image.rgb))
    workspace, saved = store.load_workspace(info)
    for segment in segments:
        workspace.add(Segment.create(workspace.next_id, segment.state))
    store.save_workspace(workspace, saved)


@dataclass
class _Outcome:
    """What segmenting one image gave: its objects and the files written, or why it failed."""

    path: Path
    segments: list[Segment]
    written: int
    seconds: float
    error: str | None = None


# Saves an image and its objects into a project (``_save_to_project`` with its store and project).
_Save = Callable[[Path, LoadedImage, list[Segment]], None]


def _segment_one(segmenter: Segmenter, path: Path, args: argparse.Namespace, max_pixels: int, err: TextIO,
                 save: _Save | None = None) -> _Outcome:
    start = time.perf_counter()
    try:
        image = load_image_file(path, max_pixels=max_pixels)
        embedding = segmenter.embed(image.rgb, image.content_hash)
        segments = _prompted_segments(segmenter, image, embedding, args.box, args.point)
        if args.everything:
            params = EverythingParams(args.points_per_side, args.pred_iou_thresh, args.stability_thresh, args.min_area)
            segments += _everything_segments(segmenter, image, embedding, params, len(segments) + 1, err)
        written = export_all(image.rgb, path.name, segments, args.format, args.out / path.stem) if args.out else []
        if save is not None:
            save(path, image, segments)
    except SamdashError as exc:
        return _Outcome(path, [], 0, time.perf_counter() - start, str(exc))
    return _Outcome(path, segments, len(written), time.perf_counter() - start)


class _SegmentWorker:
    """A Ray Data actor: one segmenter, loaded once, for every image the actor is given.

    It computes with as many threads as the command that started it: PyTorch's sums split over another number of
    threads round differently in the last bits, and the files written must be those the local command writes.
    """

    def __init__(self, args: argparse.Namespace, settings: Settings, threads: int) -> None:
        import torch  # noqa: PLC0415

        torch.set_num_threads(threads)
        self.args, self.settings = args, replace(settings, encoder="local")
        self.segmenter = _open_segmenter(self.settings, args.allow_fallback, sys.stderr)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        # Pickled here: a column of bytes is one Arrow knows, where Python objects would be tried and refused first.
        return {"outcome": [pickle.dumps(_segment_one(self.segmenter, Path(p), self.args, self.settings.max_image_pixels, sys.stderr))
                            for p in batch["path"]]}


def _ray_outcomes(paths: list[Path], args: argparse.Namespace, settings: Settings) -> Iterator[_Outcome]:
    """The images segmented by an actor pool on Ray Data (the cluster at SAMDASH_RAY_ADDRESS, or one started here),
    in the folder's order."""
    from samdash.ray_encoder import error_line, start_or_join  # noqa: PLC0415 - Ray is optional

    ray = start_or_join(os.environ.get("SAMDASH_RAY_ADDRESS", "").strip() or None)
    import ray.data  # noqa: PLC0415

    import torch  # noqa: PLC0415

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    threads = torch.get_num_threads()
    # An actor reserves the CPUs its threads use, as far as the cluster has them free (an encoder may hold some).
    cpus = max(1, min(threads, int(ray.available_resources().get("CPU", 1))))
    actors = max(1, min(len(paths), int(ray.cluster_resources().get("CPU", 1)) // threads))
    rows = ray.data.from_items([{"path": str(path)} for path in paths]).map_batches(
        _SegmentWorker, fn_constructor_args=(args, settings, threads), batch_size=1, concurrency=actors, num_cpus=cpus,
    )
    try:
        for row in rows.iter_rows():
            yield pickle.loads(row["outcome"])
    except SamdashError:
        raise
    except Exception as exc:  # noqa: BLE001 - an actor that could not start (a broken checkpoint) and the like
        raise SamdashError(f"segment --ray failed on the cluster: {error_line(exc)}") from exc


def _segment(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not (args.box or args.point or args.everything):
        print("samdash: error: give at least one --box, --point, or --everything", file=err)
        return 2
    if args.out is None and args.project is None:
        print("samdash: error: give --out, --project, or both", file=err)
        return 2
    settings = _settings(args)
    store = Store(settings.data_dir) if args.project else None
    project = _project(store, args.project) if store is not None else None
    paths = _image_paths(args.images)
    if not paths:
        print("samdash: error: no images found in " + ", ".join(str(p) for p in args.images), file=err)
        return 2
    save = partial(_save_to_project, store, project) if project is not None else None
    if args.ray:
        outcomes, name = _ray_outcomes(paths, args, settings), "an actor pool on Ray Data"
    else:
        segmenter = _open_segmenter(settings, args.allow_fallback, err)
        outcomes = (_segment_one(segmenter, path, args, settings.max_image_pixels, err, save) for path in paths)
        name = segmenter.name
    failures: list[str] = []
    batch_start = time.perf_counter()
    for number, outcome in enumerate(outcomes, start=1):
        path = outcome.path
        if args.ray and outcome.error is None and save is not None:
            # The actors segment on the cluster, away from this machine's store: the image is decoded again here.
            try:
                save(path, load_image_file(path, max_pixels=settings.max_image_pixels), outcome.segments)
            except SamdashError as exc:
                outcome.error = str(exc)
        if outcome.error is not None:
            failures.append(path.name)
            print(f"samdash: error: {path}: {outcome.error}", file=err)
            continue
        print(f"[{number}/{len(paths)}] {path.name}: {len(outcome.segments)} objects, {outcome.written} files, "
              f"{outcome.seconds:.1f} s", file=out)
    total = time.perf_counter() - batch_start
    done = len(paths) - len(failures)
    summary = f"{done} of {len(paths)} images segmented in {total:.1f} s with {name}"
    if args.out:
        summary += f"; outputs in {args.out}"
    if project is not None:
        summary += f"; saved into project {project.name!r} (open it at ?project={project.id})"
    if failures:
        summary += f"; failed: {', '.join(failures)}"
    print(summary, file=out)
    return 1 if failures else 0


def _bar(done: int, total: int) -> str:
    """A 30-character progress bar, "[#####.....]"."""
    filled = int(30 * done / max(total, 1))
    return f"[{'#' * filled}{'.' * (30 - filled)}]"


def _image_bar(name: str, err: TextIO) -> Callable[[int, int], None]:
    """Progress through a project's images, redrawn on one line of ``err``."""

    def progress(done: int, total: int) -> None:
        print(f"\r{name} {_bar(done, total)} {done}/{total} images", end="", file=err)

    return progress


def _download(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    spec = CATALOGUE[args.model]
    start = time.monotonic()

    def progress(done: int, total: int | None) -> None:
        total = total or spec.size_bytes
        print(f"\r{spec.filename} {_bar(done, total)} {progress_text(done, total, start)}", end="", file=err)

    path = download_checkpoint(args.model, _settings(args), progress=progress)
    print(file=err)
    print(f"{spec.filename} is ready at {path}", file=out)
    return 0


def _export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = Store(Settings.from_env().data_dir)
    project = _find_project(store, args.project)
    if project is None:
        raise SamdashError(f"there is no project {args.project!r} in {store.data_dir} (`python -m samdash projects` lists them)")
    start = time.monotonic()
    report = export_project(
        store, project.id, args.format, args.out, polygons=args.polygons, tolerance=args.tolerance, val_fraction=args.val,
        seed=args.seed, progress=_image_bar(project.name, err),
    )
    print(file=err)
    print(f"{args.out}: {report.text()} in {time.monotonic() - start:.1f} s", file=out)
    return 0


def _import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    settings = Settings.from_env()
    if not args.images.is_dir():
        raise SamdashError(f"{args.images} is not a folder of images")
    store = Store(settings.data_dir)
    project = _project(store, args.project)
    report = import_coco(store, args.annotations, args.images, project, settings.max_image_pixels,
                         progress=_image_bar(project.name, err))
    print(file=err)
    print(f"{report.text()}; open it at ?project={project.id}", file=out)
    return 1 if report.skipped else 0


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    from samdash.ray_encoder import APP_NAME, ray_modules, serve_encoder, start_or_join  # noqa: PLC0415 - optional

    _, serve = ray_modules()
    settings = _settings(args)
    start_or_join(args.address)
    serve_encoder(args.model or settings.model_type, settings.checkpoint, args.device, args.replicas,
                  args.cpus_per_replica, args.gpus_per_replica)
    print(f"{APP_NAME} is running ({args.replicas} replica(s)); pages reach it with SAMDASH_ENCODER=ray and "
          f"SAMDASH_RAY_ADDRESS={args.address or 'auto'}. Ctrl-C stops it.", file=out, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.delete(APP_NAME)
    return 0


def _projects(out: TextIO) -> int:
    store = Store(Settings.from_env().data_dir)
    for project in store.projects():
        images = store.images(project.id)
        done = sum(image.done for image in images)
        objects = sum(image.objects for image in images)
        print(f"{project.id}\t{project.name}\t{len(images)} images ({done} done)\t{objects} objects", file=out)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "projects":
            return _projects(out)
        if args.command == "export":
            return _export(args, out, err)
        if args.command == "import":
            return _import(args, out, err)
        if args.command == "serve":
            return _serve(args, out)
        return _segment(args, out, err) if args.command == "segment" else _download(args, out, err)
    except SamdashError as exc:
        print(f"samdash: error: {exc}", file=err)
        return 2
