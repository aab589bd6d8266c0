"""The QA Python API: `check(path, QAOptions(...))` runs the checks of the input's format."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import ijson
from tqdm import tqdm

from converters.errors import SegassistError
from converters.parallel import process_map
from converters.qa import coco, labelstudio, panoptic, semantic
from converters.qa.common import load_json, reading_json
from converters.qa.findings import Finding, Severity

FORMATS = ("labelstudio", "coco", "coco-panoptic", "semantic")
TARGETS = ("instance", "panoptic", "semantic")


@dataclass(frozen=True)
class QAOptions:
    format: str = "auto"
    images_dir: Path | None = None
    label_config: Path | None = None
    # COCO panoptic PNG folder; default: the JSON path without ".json" (COCO's layout).
    png_dir: Path | None = None
    # What the data is meant for: "panoptic"/"semantic" make overlapping segments an error.
    target: str = "instance"
    min_area: int = 10
    alpha_threshold: int = 128
    agreement: float = 0.5
    polygon_area_tolerance: float = 0.01
    bbox_tolerance: float = 1.0
    workers: int = 1


@dataclass
class QAResult:
    input: Path
    format: str
    findings: list[Finding] = field(default_factory=list)
    # Items (images, tasks, label maps) looked at.
    checked: int = 0
    # The image file name of each image key, where the findings name another file (a panoptic PNG).
    image_names: dict[tuple[str, str], str] = field(default_factory=dict)

    def count(self, at_least: Severity) -> int:
        return sum(1 for finding in self.findings if finding.severity >= at_least)


def detect_format(path: Path) -> str:
    """coco-panoptic, coco or labelstudio from the JSON's shape; a folder is semantic label maps.

    The JSON is streamed only as far as its first annotation, so detection costs little on big files.
    """
    if path.is_dir():
        return "semantic"
    top_keys: set[str] = set()
    annotation_keys: set[str] = set()
    with reading_json(path), path.open("rb") as handle:
        head = handle.read(4096).lstrip()
        if head.startswith(b"["):
            return "labelstudio"
        if not head.startswith(b"{"):
            raise SegassistError("not a JSON object or list, and not a folder of label maps", file=str(path))
        handle.seek(0)
        for prefix, event, value in ijson.parse(handle):
            if event == "map_key" and prefix == "":
                top_keys.add(value)
            elif event == "map_key" and prefix == "annotations.item":
                annotation_keys.add(value)
            elif event == "end_map" and prefix == "annotations.item":
                break
    if "segments_info" in annotation_keys:
        return "coco-panoptic"
    # COCO annotations name their image; Label Studio annotations hold a result list instead.
    is_coco = "image_id" in annotation_keys or bool(top_keys & {"images", "categories"})
    return "coco" if is_coco else "labelstudio"


def check(path: Path | str, options: QAOptions | None = None) -> QAResult:
    """Run every check for the input's format. Raises SegassistError when the input cannot be read at all."""
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
    fmt = detect_format(path) if options.format == "auto" else options.format
    if fmt not in FORMATS:
        raise SegassistError(f"unknown format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
    result = QAResult(path, fmt)
    if fmt == "coco-panoptic":
        pan_options = panoptic_options(path, options)
        findings, jobs = panoptic.check_dataset(path, load_json(path), pan_options)
        result.findings += findings
        result.image_names.update(
            (("image", str(job.image.get("id"))), str(job.image.get("file_name")))
            for job in jobs
            if job.image is not None and job.image.get("file_name")
        )
        checked = process_map(partial(panoptic.check_image, options=pan_options), jobs, options.workers)
        _add_per_item((found for found, _measured in checked), len(jobs), "panoptic images", result)
    elif fmt == "coco":
        coco_options = instance_options(options)
        findings, jobs = coco.check_dataset(path, load_json(path), coco_options)
        result.findings += findings
        checked = process_map(partial(coco.check_image, options=coco_options), jobs, options.workers)
        _add_per_item(checked, len(jobs), "images", result)
    elif fmt == "labelstudio":
        ls_options = labelstudio_options(options)
        id_findings: list[Finding] = []
        tasks = labelstudio.check_ids(path, labelstudio.iter_tasks(path), id_findings)
        checked = process_map(partial(labelstudio.check_task, options=ls_options), tasks, options.workers)
        _add_per_item((task.findings for task in checked), None, "tasks", result)
        # The export-wide id checks are complete only once the stream has been read to its end.
        result.findings += id_findings
    else:
        sem_options = semantic.SemanticOptions(images_dir=options.images_dir, min_area=options.min_area)
        findings, jobs = semantic.check_dataset(path, sem_options)
        result.findings += findings
        checked = process_map(partial(semantic.check_label_map, options=sem_options), jobs, options.workers)
        _add_per_item(checked, len(jobs), "label maps", result)
    return result


def _add_per_item(per_item: Iterable[list[Finding]], total: int | None, unit: str, result: QAResult) -> None:
    """Collect each item's findings into `result`, counting the items, with a progress bar."""
    for item_findings in progress(per_item, total, unit):
        result.findings += item_findings
        result.checked += 1


def panoptic_options(path: Path, options: QAOptions) -> panoptic.PanopticOptions:
    return panoptic.PanopticOptions(
        png_dir=options.png_dir or path.with_suffix(""),
        images_dir=options.images_dir,
        min_area=options.min_area,
    )


def instance_options(options: QAOptions) -> coco.CocoOptions:
    return coco.CocoOptions(
        images_dir=options.images_dir,
        min_area=options.min_area,
        polygon_area_tolerance=options.polygon_area_tolerance,
        bbox_tolerance=options.bbox_tolerance,
        target=options.target,
    )


def labelstudio_options(options: QAOptions) -> labelstudio.LabelStudioOptions:
    controls = labelstudio.read_label_config(options.label_config) if options.label_config else None
    return labelstudio.LabelStudioOptions(
        images_dir=options.images_dir,
        controls=controls,
        min_area=options.min_area,
        alpha_threshold=options.alpha_threshold,
        agreement=options.agreement,
        target=options.target,
    )


def progress(items: Iterable[Any], total: int | None, unit: str) -> Iterable[Any]:
    """A progress bar on a terminal, nothing otherwise."""
    return tqdm(items, total=total, unit=f" {unit}", disable=not sys.stderr.isatty(), leave=False)
