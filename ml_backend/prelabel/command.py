"""`segassist prelabel`: the command line around the batch driver.

Arguments are checked before any model is loaded; a problem with them (a missing or empty folder, a project
that does not exist, a refused token, an output that cannot be written, another run's journal in the way)
exits 2 with one line. Per-image failures exit 1 at the end, listed in --report; Ctrl-C or SIGTERM exits 130
and the same command continues the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import hashlib
import sys
from pathlib import Path
from typing import Any

from converters.errors import SegassistError
from converters.formats.common import Options
from converters.io import Outputs
from converters.lsconfig import label_config_xml
from converters.overlap import POLICIES
from ml_backend.settings import ENGINES, MODE_CHOICES, Settings

EXECUTORS = ("local", "ray")
# --to formats: Label Studio tasks, or a converters' writer (names as in converters.registry.FORMATS). Plain
# data, so building the `segassist` parser imports no sink (nor torch behind it).
TARGETS = ("labelstudio", "coco", "coco-panoptic", "semantic")
# The options shared with `serve`: each overrides its environment variable (see Settings).
ENGINE_OPTIONS = ("engine", "model", "mode", "device", "batch_size", "score_threshold", "max_regions")
ON_ERROR = ("continue", "fail")


def register_prelabel(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prelabel",
        help="pre-label a folder, a tasks file or a Label Studio project in one resumable command",
        description="Predict every image of SOURCE (a folder, searched recursively, or a Label Studio tasks "
        "JSON) or of --project ID, and write the predictions with --to FORMAT OUTPUT or create them in the "
        "project with --push. Engine options and environment variables are those of `serve`. An interrupted "
        "run continues when the same command runs again; tasks that already hold a prediction of this "
        "model version are skipped unless --redo.",
    )
    parser.add_argument("source", nargs="?", type=Path, metavar="SOURCE", help="image folder or tasks JSON")
    parser.add_argument(
        "--project",
        type=int,
        metavar="ID",
        help="a Label Studio project (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY from the environment)",
    )
    parser.add_argument("--to", nargs=2, metavar=("FORMAT", "OUTPUT"), help=f"FORMAT: {', '.join(TARGETS)}")
    parser.add_argument("--push", action="store_true", help="create the predictions in --project")
    engine = parser.add_argument_group("engine (as for serve; default: the embedded model)")
    engine.add_argument("--engine", choices=tuple(ENGINES))
    engine.add_argument("--model", metavar="NAME_OR_PATH")
    engine.add_argument("--mode", choices=MODE_CHOICES)
    engine.add_argument("--device", metavar="auto|cpu|cuda[:N]")
    engine.add_argument("--batch-size", type=int, help="images per forward (default 8 on a GPU, 2 on a CPU)")
    engine.add_argument("--score-threshold", type=float)
    engine.add_argument("--max-regions", type=int)
    parser.add_argument(
        "--label-config",
        type=Path,
        help="Label Studio config the predictions are for "
        "(default: the project's, else one listing the model's classes)",
    )
    parser.add_argument(
        "--redo", action="store_true", help="predict tasks again and replace this model version's prediction"
    )
    parser.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="continue",
        help="continue (default; failures are listed, exit 1) or fail at the first",
    )
    parser.add_argument("--report", type=Path, help="write the summary and every failure as JSON")
    parser.add_argument(
        "--overlap",
        choices=POLICIES,
        default="score",
        help="how coco-panoptic and semantic output resolve overlaps (default: score)",
    )
    parser.add_argument("--segmentation", choices=("rle", "polygon"), default="rle", help="coco output")
    parser.add_argument(
        "--url-prefix",
        default="",
        help="labelstudio output from a folder: prefix of each "
        "task's image URL (e.g. /data/local-files/?d=photos/)",
    )
    parser.add_argument("--journal", type=Path, help="the resume journal (default: beside OUTPUT)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--ray-address", help="a running Ray cluster (default: start a local one)")
    parser.add_argument("--actors", type=int, help="Ray model actors (default: one per GPU, else 1)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    # Start-up imports torch and builds the model: nearly half a million objects that live as long as the
    # process. The garbage collector would walk them again and again while they are made (and once more, for
    # about a second, when the process exits) and free none: it is off while they are made, and they are
    # then frozen out of its reach. What the run itself allocates is collected as usual.
    gc.disable()
    try:
        from ml_backend.prelabel.driver import prelabel, write_report

        run = build_run(args)
    except SegassistError as error:
        print(f"segassist prelabel: error: {error}", file=sys.stderr)
        return 2
    finally:
        gc.freeze()
        gc.enable()
    try:
        summary = prelabel(run)
    except KeyboardInterrupt:
        print(
            f"segassist prelabel: interrupted; run the same command to continue ({run.journal_path})",
            file=sys.stderr,
        )
        return 130
    finally:
        gc.freeze()  # what the run left (its items, Ray's modules) need no walk at exit either
    if args.report is not None:
        write_report(args.report, summary)
    print(f"segassist prelabel: {summary.line()}", file=sys.stderr)
    return 1 if summary.failed else 0


def build_run(args: argparse.Namespace, engine: Any = None, engine_factory: Any = None):
    """The checked Run for `args`. `engine` (and, for Ray, a picklable `engine_factory`) replace loading
    the engine from the settings: tests pass ones built through the same loaders."""
    from ml_backend.prelabel.driver import Run
    from ml_backend.prelabel.project import LabelStudioProject
    from ml_backend.prelabel.sinks import ConverterSink, LabelStudioFileSink, PushSink
    from ml_backend.prelabel.sources import FolderSource, ImageLoader, ProjectSource, TasksFileSource

    if (args.source is None) == (args.project is None):
        raise SegassistError("give either SOURCE (a folder or a tasks JSON) or --project ID")
    if (args.to is None) == (not args.push):
        raise SegassistError("give either --to FORMAT OUTPUT or --push")
    if args.push and args.project is None:
        raise SegassistError("--push needs --project ID")
    target, output = (args.to[0], Path(args.to[1])) if args.to else ("push", None)
    if args.to and target not in TARGETS:
        raise SegassistError(f"unknown output format {target!r}; choose one of {', '.join(TARGETS)}")
    if args.actors is not None and args.actors < 1:
        raise SegassistError("--actors must be at least 1")
    overrides = {name: getattr(args, name) for name in ENGINE_OPTIONS}
    # Each image is read once: the media cache would only hold memory.
    settings = dataclasses.replace(Settings.from_env(**overrides), media_cache_bytes=0)

    project = None
    if args.project is not None:
        project = LabelStudioProject(settings.label_studio_url, settings.label_studio_api_key, args.project)
    elif not args.source.exists():
        raise SegassistError("the source does not exist", file=str(args.source))
    if output is not None:
        _check_writable(output, folder=target == "semantic")
    label_config = None
    if args.label_config is not None:
        try:
            label_config = args.label_config.read_text()
        except OSError as error:
            raise SegassistError(
                f"cannot read the label config: {error.strerror}", file=str(args.label_config)
            ) from None
    elif project is not None:
        label_config = project.label_config

    if args.source is not None and args.source.is_dir():
        # Sources are opened before the engine loads, so a bad one fails fast.
        source = FolderSource(args.source, url_prefix=args.url_prefix)
        total = source.count
    elif args.source is not None:
        source = TasksFileSource(args.source)
        total = source.count
    else:
        source = ProjectSource(project)
        total = project.task_count

    service = _service(settings, engine)
    if label_config is None and target in ("labelstudio", "push"):
        label_config = label_config_xml(service.engine.categories)
    info = service.label_config(label_config) if target in ("labelstudio", "push") or label_config else None
    if info is not None:
        _check_usable(info, service)
    model_version = service.model_version
    if target == "labelstudio":
        sink = LabelStudioFileSink(output, model_version)
    elif target == "push":
        sink = PushSink(project, model_version)
    else:
        categories = service.engine.categories
        if info is not None:
            categories = [c for c in categories if c.id in info.label_for_category]
        options = Options(overlap=args.overlap, things_over_stuff=True, segmentation=args.segmentation)
        sink = ConverterSink(target, output, categories, options)

    destination = str(output) if output is not None else f"project {project.id} at {project.url}"
    fingerprint = {
        "source": source.description,
        "destination": f"{target} {destination}",
        "model_version": model_version,
        "label_config": hashlib.sha256((label_config or "").encode()).hexdigest(),
        "redo": args.redo,
        "settings": [
            settings.score_threshold,
            settings.max_regions,
            args.overlap,
            args.segmentation,
            args.url_prefix,
        ],
    }
    if args.journal is not None:
        journal = args.journal
    elif output is not None:
        journal = output.parent / f".{output.name}.prelabel-journal"
    else:
        journal = Path.cwd() / f".segassist-prelabel-project-{project.id}.journal"
    if engine_factory is None:
        from ml_backend.engines.registry import load_engine
        from ml_backend.engines.torch_utils import resolve_device

        engine_factory = functools.partial(
            load_engine,
            settings.engine,
            settings.model,
            resolve_device(settings.device),
            sam_cache_mb=settings.sam_cache_mb,
        )
    return Run(
        source=source,
        sink=sink,
        service=service,
        info=info,
        loader=ImageLoader(settings),
        journal_path=journal,
        fingerprint=fingerprint,
        destination=destination,
        redo=args.redo,
        on_error=args.on_error,
        executor=args.executor,
        ray_address=args.ray_address,
        actors=args.actors,
        engine_factory=engine_factory,
        total=total,
    )


def _service(settings: Settings, engine: Any):
    from ml_backend.service import PredictionService

    if engine is None:
        return PredictionService.from_settings(settings)
    return PredictionService(settings, engine)


def _check_usable(info: Any, service: Any) -> None:
    if info.output is None:
        raise SegassistError(
            "the label config has no BrushLabels, BitmaskLabels, PolygonLabels or RectangleLabels control "
            "to receive the predictions"
        )
    if not info.label_for_category:
        raise SegassistError(
            f"no class of {service.engine.model_version} matches a label of control {info.output.name!r}: "
            "name the labels after the classes, or map them with <Label predicted_values=...> or "
            "SEGASSIST_LABEL_MAP"
        )


def _check_writable(output: Path, folder: bool) -> None:
    """Raise OutputError now, not after the last image, if OUTPUT could not be written (a reservation made
    and dropped; the final files are reserved when the run ends)."""
    with Outputs() as outputs:
        if folder:
            outputs.folder(output)
        else:
            outputs.file(output)
