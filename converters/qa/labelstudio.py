"""Label Studio export checks: streamed task by task, each task as the Label Studio reader's tolerant read
gives it (every annotation and prediction, each region's facts and its cropped mask).

The export is streamed (a 10,000-task export is never held whole), and the tolerant read keeps what a
conversion would normalise away (missing sizes, duplicate ids, cancellations, unknown labels) as facts.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from converters import naming
from converters.errors import SegassistError
from converters.formats.labelstudio import TaskRead, read_task_tolerantly
from converters.formats.labelstudio import iter_tasks as read_tasks
from converters.formats.ls_regions import RegionRead
from converters.lsconfig import LabelConfig, read_label_config
from converters.mask import Mask, overlapping_pairs
from converters.qa.common import (
    EXCLUSIVE_TARGETS,
    Recorder,
    check_image_file,
    check_polygon_part,
    check_size_of_segment,
    duplicates,
    find_image,
    reading_json,
)
from converters.qa.core import ItemReport, QAOptions, Run
from converters.qa.findings import Finding
from converters.qa.overlay import Overlay, pictures


@dataclass(frozen=True)
class LabelStudioOptions:
    images_dir: Path | None = None
    # None when no labeling config was given (label and control checks are skipped).
    label_config: LabelConfig | None = None
    min_area: int = 0
    alpha_threshold: int = 128
    # Two annotations of one task whose masks of a label match below this IoU are reported for review.
    agreement: float = 0.5
    target: str = "instance"


def start(path: Path, options: QAOptions) -> Run:
    """Stream the export once through the Label Studio reader; the export-wide id checks complete as the
    tasks go by."""
    ls_options = labelstudio_options(options)
    id_findings: list[Finding] = []
    tasks = check_ids(path, iter_tasks(path), id_findings)
    return Run([], tasks, partial(check_item, options=ls_options), unit="tasks", late_findings=id_findings)


def labelstudio_options(options: QAOptions) -> LabelStudioOptions:
    return LabelStudioOptions(
        images_dir=options.images_dir,
        label_config=read_label_config(options.label_config) if options.label_config else None,
        min_area=options.min_area,
        alpha_threshold=options.alpha_threshold,
        agreement=options.agreement,
        target=options.target,
    )


def iter_tasks(path: Path) -> Iterator[dict[str, Any]]:
    """The tasks of an export (a list of tasks, or one task object), streamed by the converter's reader."""
    with reading_json(path), path.open("rb") as handle:
        first = handle.read(64).removeprefix(codecs.BOM_UTF8).lstrip()[:1]
        handle.seek(0)
        if first not in (b"{", b"["):
            raise SegassistError(
                "a Label Studio export is a JSON list of tasks (or one task object)", file=str(path)
            )
        yield from read_tasks(handle, str(path))


@dataclass
class TaskJob:
    file: str
    index: int
    task: Any


@dataclass
class TaskResult:
    findings: list[Finding]
    # (annotation id, region id) -> decoded mask, kept only when asked for (the HTML report draws them).
    masks: dict[tuple[Any, Any], Mask] = field(default_factory=dict)


def check_ids(path: Path, tasks: Iterator[Any], findings: list[Finding]) -> Iterator[TaskJob]:
    """Pass tasks through as jobs, recording the export-wide checks (duplicate task and annotation ids, tasks
    that are not objects) into `findings` on the way."""
    rec = Recorder(findings, file=str(path))
    seen_tasks: set[Any] = set()
    seen_annotations: set[Any] = set()
    for index, task in enumerate(tasks):
        if not isinstance(task, dict):
            task_name = naming.name("task", naming.position_ref(index))
            rec.add("JSON_STRUCTURE", f"{task_name} is a {type(task).__name__}, not an object")
            continue
        task_id = task.get("id")
        if task_id is not None:
            if task_id in seen_tasks:
                rec.at(task_id=task_id).add("DUPLICATE_TASK_ID", f"task id {task_id} occurs more than once")
            seen_tasks.add(task_id)
        annotations = task.get("annotations", task.get("completions"))
        for annotation in annotations if isinstance(annotations, list) else []:
            annotation_id = annotation.get("id") if isinstance(annotation, dict) else None
            if annotation_id is None:
                continue
            if annotation_id in seen_annotations:
                rec.at(task_id=task_id, annotation_id=annotation_id).add(
                    "DUPLICATE_ANNOTATION_ID", f"annotation id {annotation_id} occurs more than once"
                )
            seen_annotations.add(annotation_id)
        yield TaskJob(str(path), index, task)


def check_item(
    job: TaskJob, options: LabelStudioOptions, draw: bool = False, repair: bool = False
) -> ItemReport:
    """Check one task (what workers run); its masks stay here unless the pictures need them."""
    read = read_task_tolerantly(job.file, job.index, job.task, options.alpha_threshold, options.label_config)
    checked = judge(read, options, keep_masks=draw)
    report = ItemReport(("task", str(read.task_id)), checked.findings, file_name=read.file_name)
    if draw and checked.findings and checked.masks:
        height, width = next(iter(checked.masks.values())).shape
        same_size = [(where, mask) for where, mask in checked.masks.items() if mask.shape == (height, width)]
        named = {(f.annotation_id, f.region_id) for f in checked.findings}
        report.pictures = pictures(
            Overlay(
                height,
                width,
                masks=[mask for _, mask in same_size],
                outlined=[mask for where, mask in same_size if where in named],
                background=find_image(options.images_dir, read.file_name),
            )
        )
    return report


def judge(read: TaskRead, options: LabelStudioOptions, keep_masks: bool = False) -> TaskResult:
    """The findings of one task as the Label Studio reader's tolerant read gives it."""
    rec = Recorder(file=read.file, task_id=read.task_id)
    result = TaskResult(rec.findings)
    sizes: set[tuple[Any, Any]] = set()
    # Per annotation or prediction: (kind, recorder, [(region id, label, mask)]) of the regions that decoded.
    decoded: list[tuple[str, Recorder, list[tuple[Any, str, Mask]]]] = []
    for entry in read.entries:
        if not entry.is_object:
            rec.add("JSON_STRUCTURE", f"{naming.name(entry.kind, entry.id)} is not an object")
            continue
        at = rec.at(annotation_id=entry.id)
        if entry.cancelled:
            at.add(
                "LS_ANNOTATION_CANCELLED", "cancelled (skipped) by the annotator; its regions are not used"
            )
            continue
        if not entry.has_results:
            at.add("JSON_STRUCTURE", f"{entry.kind} has no result list")
            continue
        region_ids = (region.facts.id for region in entry.regions if region.facts.id is not None)
        for duplicate in duplicates(region_ids):
            at.at(region_id=duplicate).add("DUPLICATE_REGION_ID", f"region id {duplicate} is used twice")
        masks: list[tuple[Any, str, Mask]] = []
        for region in entry.regions:
            mask = _check_region(at.at(region_id=region.facts.id), region, options, sizes)
            if mask is not None:
                masks.append((region.facts.id, region.facts.label, mask))
                if keep_masks:
                    result.masks[(entry.id, region.facts.id)] = mask
        decoded.append((entry.kind, at, masks))
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for w, h in sorted(sizes, key=str))
        rec.add("LS_SIZE_INCONSISTENT", f"regions give different image sizes: {listed}")
        # Masks of different sizes cannot be compared: the overlap and agreement checks wait for a fix.
        return result
    if sizes:
        width, height = next(iter(sizes))
        check_image_file(rec, options.images_dir, read.file_name, width, height)
    if options.target in EXCLUSIVE_TARGETS:
        for _, at, masks in decoded:
            _check_overlaps(at, masks, options.target)
    _check_agreement(
        rec,
        [(at.where["annotation_id"], masks) for kind, at, masks in decoded if kind == "annotation"],
        options.agreement,
    )
    return result


def _check_overlaps(at: Recorder, masks: list[tuple[Any, str, Mask]], target: str) -> None:
    for a, b, shared in overlapping_pairs([mask for _, _, mask in masks]):
        (first, first_label, _), (second, second_label, _) = masks[a], masks[b]
        at.at(region_id=first).add(
            "SEGMENTS_OVERLAP",
            f"regions {first} ({first_label}) and {second} ({second_label}) share {shared} px "
            f"({target} output allows one segment per pixel)",
            other_region_id=second,
            category=first_label,
            other_category=second_label,
            pixels=shared,
        )


def _check_region(
    rec: Recorder, region: RegionRead, options: LabelStudioOptions, sizes: set[tuple[Any, Any]]
) -> Mask | None:
    """The region's findings; returns its mask when it decoded and has pixels."""
    facts = region.facts
    if not facts.has_value:
        rec.add("JSON_STRUCTURE", "the region has no value object")
        return None
    if not facts.label:
        rec.add("LS_REGION_NO_LABEL", f"{facts.type} region has no label")
    for mismatch in facts.mismatches:
        code = "LS_LABEL_NOT_IN_CONFIG" if mismatch.kind == "label" else "LS_CONTROL_MISMATCH"
        extra = {"label": mismatch.label} if mismatch.label is not None else {}
        rec.add(code, mismatch.message, **extra)
    if facts.rotation:
        rec.add(
            "LS_IMAGE_ROTATION", f"image_rotation is {facts.rotation} degrees", image_rotation=facts.rotation
        )
    if facts.geometry is None:
        return None
    if facts.polygon_points is not None:
        # In percent of the image: crossings and out-of-range points do not depend on the size in pixels.
        check_polygon_part(rec, facts.polygon_points, 100, 100, 0)
        if len(facts.polygon_points) < 3:
            return None
    if not facts.width or not facts.height:
        rec.add("LS_SIZE_MISSING", f"{facts.type} region has no original_width/original_height")
        return None
    sizes.add((facts.width, facts.height))
    width, height = int(facts.width), int(facts.height)
    if facts.rle_values is not None and facts.rle_values != width * height * 4:
        rec.add(
            "MASK_SIZE_MISMATCH",
            f"the brush RLE holds {facts.rle_values} values; a {width}x{height} RGBA image has "
            f"{width * height * 4}",
        )
        return None
    if facts.bitmask_shape is not None and facts.bitmask_shape != (height, width):
        rows, cols = facts.bitmask_shape[:2]
        rec.add(
            "MASK_SIZE_MISMATCH",
            f"the bitmask PNG is {cols}x{rows}; the image is {width}x{height}",
        )
        return None
    if facts.alpha_histogram is not None:
        _check_soft_edges(rec, facts.alpha_histogram, options.alpha_threshold)
    if region.decode_error is not None:
        rec.add("MASK_UNDECODABLE", f"the {facts.type} region does not decode: {region.decode_error}")
        return None
    mask = region.segment.mask
    if not check_size_of_segment(rec, mask, options.min_area):
        return None
    return mask


def _check_soft_edges(rec: Recorder, histogram: np.ndarray, threshold: int) -> None:
    """LS_BRUSH_ANTIALIASED when some pixels have an alpha from 1 to 254 (`histogram`: pixels per alpha)."""
    soft = int(histogram[1:255].sum())
    if soft:
        rec.add(
            "LS_BRUSH_ANTIALIASED",
            f"{soft} edge pixels have alpha between 1 and 254; foreground is alpha >= {threshold}",
            soft_pixels=soft,
            area_alpha_gt0=int(histogram[1:].sum()),
            area_at_threshold=int(histogram[threshold:].sum()),
        )


def _check_agreement(
    rec: Recorder, decoded: list[tuple[Any, list[tuple[Any, str, Mask]]]], threshold: float
) -> None:
    """Pairwise IoU of each label's union mask between annotations of one task."""
    if len(decoded) < 2:
        return  # nothing to compare, and a label's union can span the whole image
    per_annotation = []
    for annotation_id, masks in decoded:
        by_label: dict[str, Mask] = {}
        for _, label, mask in masks:
            by_label[label] = by_label[label].union(mask) if label in by_label else mask
        per_annotation.append((annotation_id, by_label))
    for (first_id, first), (second_id, second) in combinations(per_annotation, 2):
        for label in sorted(set(first) | set(second)):
            if label in first and label in second:
                iou = first[label].iou(second[label])
            else:
                iou = 0.0
            if iou < threshold:
                rec.at(annotation_id=first_id).add(
                    "LS_ANNOTATORS_DISAGREE",
                    f"annotations {first_id} and {second_id} agree on {label!r} with IoU {iou:.2f} "
                    f"(< {threshold})",
                    other_annotation_id=second_id,
                    label=label,
                    iou=round(iou, 4),
                )
