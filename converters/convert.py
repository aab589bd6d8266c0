"""Conversion between Label Studio JSON, COCO instance, COCO panoptic and semantic label maps.

Python API: `convert("labelstudio", "coco", "export.json", "coco.json", overlap="order")` returns a
`ConversionReport`; `read("coco-panoptic", "panoptic.json")` (from `converters.registry`) gives the input as
a `Dataset` (streamed). Command: `segassist convert --from labelstudio --to coco export.json coco.json`.

`converters.registry` maps format names to a reader (`Source`) and a writer (`Sink`); the model knows none.
Items stream from the reader through `load` and `render` (in `workers` processes when asked, a bounded number
of images in flight: `converters.parallel`) to the writer. All outputs of a conversion (the writer's, the
report) are reserved in one `converters.io.Outputs` before the work and committed together at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from converters import naming
from converters.errors import SegassistError
from converters.formats.common import Options, Renderer, Sink, Source, read_categories_file
from converters.formats.labelstudio import ANNOTATION_CHOICES
from converters.io import Outputs
from converters.overlap import POLICIES
from converters.parallel import process_map
from converters.registry import FORMATS, get, options_from, read

__all__ = ["ConversionReport", "convert", "read"]

ON_ERROR = ("fail", "skip")


@dataclass
class ConversionReport:
    """What a conversion did: counts, skipped items with their errors, and per-image changes."""

    source_format: str
    target_format: str
    input: str
    output: str
    images: int = 0
    segments: int = 0
    not_labeled: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    # Per image: overlap resolution (pixels moved, segments dropped), polygon losses, dropped empty masks.
    changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pixels_moved(self) -> int:
        return sum(change.get("overlap", {}).get("pixels_moved", 0) for change in self.changes)

    @property
    def segments_dropped(self) -> int:
        return sum(
            sum(1 for entry in change.get("overlap", {}).get("changes", []) if entry["dropped"])
            + len(change.get("dropped", []))
            for change in self.changes
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.source_format,
            "to": self.target_format,
            "input": self.input,
            "output": self.output,
            "images": self.images,
            "segments": self.segments,
            "pixels_moved": self.pixels_moved,
            "segments_dropped": self.segments_dropped,
            "not_labeled": self.not_labeled,
            "skipped": self.skipped,
            "changes": self.changes,
        }

    def summary(self) -> str:
        plural = naming.plural
        return (
            f"{plural(self.images, 'image')}, {plural(self.segments, 'segment')} written to {self.output}; "
            f"{plural(self.pixels_moved, 'overlapping pixel')} moved, "
            f"{plural(self.segments_dropped, 'segment')} dropped, "
            f"{plural(len(self.skipped), 'item')} skipped on error, {len(self.not_labeled)} not labeled"
        )


def convert(
    src_format: str,
    dst_format: str,
    input: str | Path,
    output: str | Path,
    *,
    workers: int = 1,
    on_error: str = "fail",
    report: str | Path | None = None,
    progress: bool | None = None,
    **options: Any,
) -> ConversionReport:
    """Convert `input` (format `src_format`) to `output` (format `dst_format`).

    `options` are the fields of `Options` (overlap, categories_file, annotations, ...). With
    `on_error="skip"` an image whose conversion raises SegassistError is left out and listed in the report;
    with "fail" the error propagates and nothing is written. `report` also writes the report as JSON; an
    output that cannot be written raises `OutputError` before the input is converted.
    """
    reader, writer = get(src_format, "source").reader, get(dst_format, "target").writer
    if on_error not in ON_ERROR:
        raise SegassistError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    settings = options_from(options)
    input, output = Path(input), Path(output)
    with Outputs() as outputs:
        report_temp = outputs.file(report) if report is not None else None
        source = reader(input, settings)
        categories = (
            read_categories_file(settings.categories_file) if settings.categories_file else source.categories
        )
        sink = writer(output, categories, settings, outputs)
        result = ConversionReport(src_format, dst_format, str(input), str(output))
        _run_conversion(source, sink, result, max(1, int(workers)), on_error, progress)
        if report_temp is not None:
            report_temp.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        outputs.commit()
    return result


def _run_conversion(
    source: Source, sink: Sink, result: ConversionReport, workers: int, on_error: str, progress: bool | None
) -> None:
    """Every item through load + render (in workers when asked) into the sink; `result` counts outcomes."""
    # Two views of one stream: the workers read ahead of the loop by at most the map's bound, which is all the
    # tee holds.
    items, processed = itertools.tee(source.items())
    bar = tqdm(
        desc="converting", unit="image", disable=not sys.stderr.isatty() if progress is None else not progress
    )
    process = partial(_process_one, source=source, renderer=sink.renderer)
    # Closed on an error too, so the workers stop before the error goes up.
    with contextlib.closing(process_map(process, processed, workers)) as outcomes, bar:
        for item, outcome in zip(items, outcomes, strict=True):
            bar.update()
            kind, value = outcome
            if kind == "not_labeled":
                result.not_labeled.append(source.where(item))
                continue
            if kind == "error":
                error = value.at(**source.where(item))
                if on_error == "fail":
                    raise error
                result.skipped.append({**_present(source.where(item)), "error": str(error)})
                continue
            try:
                sink.write(value)
            except SegassistError as error:
                raise error.at(**source.where(item)) from None
            result.images += 1
            result.segments += value.segments
            if value.report:
                result.changes.append({"image_id": value.image_id, **value.report})
        sink.finish()


# -- the pipeline: load + render per item, in this process or in workers -------------------------------------


def _process_one(item: Any, source: Source, renderer: Renderer) -> tuple[str, Any]:
    """("ok", Rendered) | ("not_labeled", None) | ("error", SegassistError), which pickles with its fields."""
    try:
        image = source.load(item)
        if image is None:
            return "not_labeled", None
        return "ok", renderer.render(image)
    except SegassistError as error:
        return "error", error


def _present(where: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in where.items() if value is not None}


# -- command line --------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert between Label Studio JSON, COCO instance, COCO panoptic and semantic label maps",
        description="Convert a segmentation dataset. A COCO panoptic dataset is named by its JSON file "
        "(PNGs in the folder of the same name without .json, or --png-dir); semantic output is a folder "
        "of PNGs plus labelmap.json.",
    )
    parser.add_argument(
        "--from", dest="src_format", required=True, choices=tuple(FORMATS), help="the input's format"
    )
    parser.add_argument(
        "--to", dest="dst_format", required=True, choices=tuple(FORMATS), help="the output's format"
    )
    parser.add_argument(
        "input",
        type=Path,
        help="Label Studio export (JSON list of tasks), COCO JSON, COCO panoptic JSON, or semantic folder",
    )
    parser.add_argument(
        "output",
        type=Path,
        help="JSON file (labelstudio, coco; '-' for standard output), COCO panoptic JSON (its PNGs go to the "
        "folder of the same name, or --png-dir), or a folder (semantic)",
    )
    parser.add_argument(
        "--categories",
        dest="categories_file",
        type=Path,
        help="COCO-style category list (id, name, isthing, color)",
    )
    parser.add_argument("--label-config", type=Path, help="Label Studio labeling config to take labels from")
    parser.add_argument(
        "--annotations",
        choices=ANNOTATION_CHOICES,
        default="latest",
        help="Label Studio input: which annotations of a task (default: latest)",
    )
    parser.add_argument("--predictions", action="store_true", help="Label Studio input: read predictions")
    parser.add_argument(
        "--alpha-threshold",
        type=int,
        default=128,
        help="brush/bitmask alpha counted as foreground (>=; 1 = any visible pixel)",
    )
    parser.add_argument(
        "--overlap",
        choices=POLICIES,
        default="error",
        help="how panoptic/semantic output resolves overlapping segments (default: error)",
    )
    parser.add_argument("--things-over-stuff", action="store_true", help="things always above stuff")
    parser.add_argument("--min-area", type=int, default=0, help="drop segments left with fewer pixels")
    parser.add_argument(
        "--min-kept-fraction",
        type=float,
        default=0.0,
        help="drop segments left with less than this fraction of their pixels",
    )
    parser.add_argument(
        "--segmentation",
        choices=("rle", "polygon"),
        default="rle",
        help="COCO / Label Studio output: RLE or brush masks (exact), or polygons",
    )
    parser.add_argument("--polygon-tolerance", type=float, default=1.0, help="polygon simplification, pixels")
    parser.add_argument("--images", type=Path, help="image folder, to read sizes the input lacks")
    parser.add_argument("--png-dir", type=Path, help="COCO panoptic PNG folder (input or output)")
    parser.add_argument(
        "--write-predictions",
        action="store_true",
        help="Label Studio output: write masks as predictions instead of annotations",
    )
    parser.add_argument(
        "--model-version", default="segassist", help="Label Studio output: prediction model_version"
    )
    parser.add_argument("--from-name", help="Label Studio output: labels control name (default: tag)")
    parser.add_argument("--to-name", help="Label Studio output: image tag name (default: image)")
    parser.add_argument(
        "--image-root",
        metavar="URL_OR_PREFIX",
        help="Label Studio output from file names: prefix of each task's image URL, e.g. "
        "/data/local-files/?d=dataset/images/ or https://bucket/images/ (default: the bare file name)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="fail",
        help="fail (default; nothing is written) or skip the image and list it in the report",
    )
    parser.add_argument("--report", type=Path, help="write the report as JSON")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    option_names = {item.name for item in fields(Options)}
    options = {key: value for key, value in vars(args).items() if key in option_names}
    result = convert(
        args.src_format,
        args.dst_format,
        args.input,
        args.output,
        workers=args.workers,
        on_error=args.on_error,
        report=args.report,
        **options,
    )
    print(result.summary(), file=sys.stderr)
    return 0
