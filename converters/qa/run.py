"""The QA Python API: `check(path, QAOptions(...))` runs the checks of the input's format.

The input is read once, through its format's reader (the format's checks come from `converters.registry`).
The same run draws the HTML report's pictures of the worst flagged images (`pictures=True`) and writes the
--fix copy through the format's writer (`fix=FixRequest(...)`), so neither reads the input again.
"""

from __future__ import annotations

import codecs
import contextlib
import sys
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import ijson
from tqdm import tqdm

from converters import registry
from converters.errors import SegassistError
from converters.parallel import process_map
from converters.qa.common import reading_json
from converters.qa.core import TARGETS, Fixer, FixRequest, ItemReport, QAOptions, QAResult
from converters.qa.findings import badness

# The HTML report shows this many flagged images, worst first; the run keeps the pictures of as many.
MAX_PICTURES = 200

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["TARGETS", "FixRequest", "QAOptions", "QAResult", "check", "detect_format"]


def detect_format(path: Path) -> str:
    """coco-panoptic, coco or labelstudio from the JSON's shape; a folder is semantic label maps.

    The JSON is streamed only as far as its first annotation, so detection costs little on big files.
    """
    if path.is_dir():
        return "semantic"
    top_keys: set[str] = set()
    annotation_keys: set[str] = set()
    with reading_json(path), path.open("rb") as handle:
        start = len(codecs.BOM_UTF8) if handle.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8 else 0
        handle.seek(start)
        head = handle.read(4096).lstrip()
        if head.startswith(b"["):
            return "labelstudio"
        if not head:
            raise SegassistError("the file is empty", file=str(path))
        if not head.startswith(b"{"):
            raise SegassistError("not a JSON object or list, and not a folder of label maps", file=str(path))
        handle.seek(start)
        for prefix, event, value in ijson.parse(handle):
            if event == "map_key" and prefix == "":
                top_keys.add(value)
            elif event == "map_key" and prefix == "annotations.item":
                annotation_keys.add(value)
            elif event == "end_map" and prefix == "annotations.item":
                break
    # Without an annotation to tell, the PNG folder beside the JSON does.
    if "segments_info" in annotation_keys or (not annotation_keys and path.with_suffix("").is_dir()):
        return "coco-panoptic"
    # COCO annotations name their image; Label Studio annotations hold a result list instead.
    is_coco = "image_id" in annotation_keys or bool(top_keys & {"images", "categories"})
    return "coco" if is_coco else "labelstudio"


def check(
    path: Path | str,
    options: QAOptions | None = None,
    *,
    pictures: bool = False,
    fix: FixRequest | None = None,
) -> QAResult:
    """Run every check for the input's format. Raises SegassistError when the input cannot be read at all.

    `pictures` keeps the overlay pictures of the worst flagged images (the HTML report); `fix` writes the
    repaired copy into `fix.outputs` as the items are checked (the caller commits it).
    """
    options = options or QAOptions()
    path = Path(path)
    if not path.exists():
        raise SegassistError("input does not exist", file=str(path))
    if options.target not in TARGETS:
        raise SegassistError(f"unknown target {options.target!r}; choose one of {', '.join(TARGETS)}")
    for option, folder in (("--images", options.images_dir), ("--png-dir", options.png_dir)):
        if folder is not None and not Path(folder).is_dir():
            what = "is not a folder" if Path(folder).exists() else "does not exist"
            raise SegassistError(f"the {option} folder {what}", file=str(folder))
    if fix is not None and Path(fix.output).resolve() == path.resolve():
        raise SegassistError("--fix must name a new file; the input is never modified", file=str(fix.output))
    fmt = detect_format(path) if options.format == "auto" else options.format
    if fmt not in registry.FORMATS:
        raise SegassistError(f"unknown format {fmt!r}; choose one of auto, {', '.join(registry.FORMATS)}")
    run = registry.get(fmt).checks(path, options)
    fixer: Fixer | None = None
    if fix is not None:
        if run.fixer is None:
            raise SegassistError(f"--fix repairs coco and coco-panoptic datasets, not {fmt}", file=str(path))
        fixer = run.fixer(fix)
    result = QAResult(path, fmt, list(run.findings))
    ranks: dict[tuple[str, str], tuple[tuple[int, ...], int]] = {}
    check_one = partial(run.check, draw=pictures, repair=fixer is not None)
    # Closed on an error too, so that the workers stop before the error goes up.
    with contextlib.closing(process_map(check_one, run.items, options.workers)) as reports:
        for index, report in enumerate(progress(reports, run.total, run.unit)):
            _add(result, report, index, ranks)
            if fixer is not None:
                fixer.take(report)
    # The export-wide checks (Label Studio's ids) are complete only once the stream has been read.
    result.findings += run.late_findings
    if fixer is not None:
        result.fix = fixer.finish()
    return result


def _add(
    result: QAResult,
    report: ItemReport,
    index: int,
    ranks: dict[tuple[str, str], tuple[tuple[int, ...], int]],
) -> None:
    """Collect one item's report; of the pictures, keep those of the MAX_PICTURES worst items."""
    result.findings += report.findings
    result.checked += 1
    if report.findings and report.file_name:
        result.image_names[report.key] = report.file_name
    if report.pictures is None:
        return
    result.pictures[report.key] = report.pictures
    ranks[report.key] = (badness(report.findings), index)
    if len(ranks) > MAX_PICTURES:
        least = max(ranks, key=ranks.__getitem__)
        del ranks[least], result.pictures[least]


def progress(items: Iterable[Any], total: int | None, unit: str) -> Iterable[Any]:
    """A progress bar on a terminal, nothing otherwise."""
    return tqdm(items, total=total, unit=f" {unit}", disable=not sys.stderr.isatty(), leave=False)
