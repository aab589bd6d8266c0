"""Label Studio export checks: streamed task by task, every region decoded by the codecs.

The export is read with ijson (a 10,000-task export is never held whole), and the raw result dicts are
checked, so nothing a reader would normalise away (missing sizes, duplicate ids, cancellations) goes unseen.
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

from converters import bitmask, brush, naming
from converters.errors import SegassistError
from converters.formats import ls_regions
from converters.formats.labelstudio import iter_tasks as read_tasks
from converters.formats.labelstudio import reference_file_name
from converters.lsconfig import LabelConfig, read_label_config, region_geometry
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
        for annotation in _list(task.get("annotations", task.get("completions"))):
            annotation_id = annotation.get("id") if isinstance(annotation, dict) else None
            if annotation_id is None:
                continue
            if annotation_id in seen_annotations:
                rec.at(task_id=task_id, annotation_id=annotation_id).add(
                    "DUPLICATE_ANNOTATION_ID", f"annotation id {annotation_id} occurs more than once"
                )
            seen_annotations.add(annotation_id)
        yield TaskJob(str(path), index, task)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def image_file_name(task: dict[str, Any]) -> str:
    """The file name of the task's image, as the converter reads it, from its first non-empty string value."""
    reference = next((v for v in (task.get("data") or {}).values() if isinstance(v, str) and v), None)
    return reference_file_name(reference) if reference else ""


def check_item(
    job: TaskJob, options: LabelStudioOptions, draw: bool = False, repair: bool = False
) -> ItemReport:
    """Check one task (what workers run); its masks stay here unless the pictures need them."""
    checked = check_task(job, options, keep_masks=draw)
    task = job.task
    file_name = image_file_name(task)
    report = ItemReport(
        ("task", str(naming.task_ref(job.index, task))), checked.findings, file_name=file_name
    )
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
                background=find_image(options.images_dir, file_name),
            )
        )
    return report


def check_task(job: TaskJob, options: LabelStudioOptions, keep_masks: bool = False) -> TaskResult:
    task = job.task
    task_id = naming.task_ref(job.index, task)
    rec = Recorder(file=job.file, task_id=task_id)
    result = TaskResult(rec.findings)
    sizes: set[tuple[Any, Any]] = set()
    # Per annotation or prediction: (kind, recorder, [(region id, label, mask)]) of the regions that decoded.
    decoded: list[tuple[str, Recorder, list[tuple[Any, str, Mask]]]] = []
    # Label Studio 1.23's JSON export lists predictions as ids unless they were expanded: nothing to check.
    predictions = [p for p in _list(task.get("predictions")) if not isinstance(p, int) or isinstance(p, bool)]
    sources = [
        (kind, position, entry)
        for kind, entries in (
            ("annotation", _list(task.get("annotations", task.get("completions")))),
            ("prediction", predictions),
        )
        for position, entry in enumerate(entries)
    ]
    for kind, position, annotation in sources:
        annotation_id = naming.annotation_ref(kind, position, annotation)
        if not isinstance(annotation, dict):
            rec.add("JSON_STRUCTURE", f"{naming.name(kind, annotation_id)} is not an object")
            continue
        at = rec.at(annotation_id=annotation_id)
        if annotation.get("was_cancelled"):
            at.add(
                "LS_ANNOTATION_CANCELLED", "cancelled (skipped) by the annotator; its regions are not used"
            )
            continue
        results = annotation.get("result")
        if not isinstance(results, list):
            at.add("JSON_STRUCTURE", f"{kind} has no result list")
            continue
        regions = [r for r in results if isinstance(r, dict) and _is_labelled_region(r)]
        for duplicate in duplicates(r.get("id") for r in regions if r.get("id") is not None):
            at.at(region_id=duplicate).add("DUPLICATE_REGION_ID", f"region id {duplicate} is used twice")
        masks: list[tuple[Any, str, Mask]] = []
        for region in regions:
            label, mask = _check_region(at.at(region_id=region.get("id")), region, options, sizes)
            if mask is not None:
                masks.append((region.get("id"), label, mask))
                if keep_masks:
                    result.masks[(annotation_id, region.get("id"))] = mask
        decoded.append((kind, at, masks))
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for w, h in sorted(sizes, key=str))
        rec.add("LS_SIZE_INCONSISTENT", f"regions give different image sizes: {listed}")
        # Masks of different sizes cannot be compared: the overlap and agreement checks wait for a fix.
        return result
    if sizes:
        width, height = next(iter(sizes))
        check_image_file(rec, options.images_dir, image_file_name(task), width, height)
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


def _is_labelled_region(result: dict[str, Any]) -> bool:
    kind = result.get("type")
    return isinstance(kind, str) and (region_geometry(kind) is not None or kind.endswith("labels"))


def _check_region(
    rec: Recorder, region: dict[str, Any], options: LabelStudioOptions, sizes: set[tuple[Any, Any]]
) -> tuple[str, Mask | None]:
    kind = region["type"]
    value = region.get("value")
    if not isinstance(value, dict):
        rec.add("JSON_STRUCTURE", "the region has no value object")
        return "", None
    labels = value.get(kind) or value.get("labels")
    label = labels[0] if isinstance(labels, list) and labels and isinstance(labels[0], str) else ""
    if not label:
        rec.add("LS_REGION_NO_LABEL", f"{kind} region has no label")
    if options.label_config is not None:
        for mismatch in options.label_config.mismatches(region, labels if isinstance(labels, list) else []):
            code = "LS_LABEL_NOT_IN_CONFIG" if mismatch.kind == "label" else "LS_CONTROL_MISMATCH"
            extra = {"label": mismatch.label} if mismatch.label is not None else {}
            rec.add(code, mismatch.message, **extra)
    rotation = region.get("image_rotation") or 0
    if rotation:
        rec.add("LS_IMAGE_ROTATION", f"image_rotation is {rotation} degrees", image_rotation=rotation)
    geometry = region_geometry(kind)
    if geometry is None:
        return label, None  # key points and other labelled results carry no area
    if geometry == "polygon":
        points = np.asarray(value.get("points") or [], dtype=np.float64).reshape(-1, 2)
        # In percent of the image: crossings and out-of-range points do not depend on the size in pixels.
        check_polygon_part(rec, points, 100, 100, 0)
        if len(points) < 3:
            return label, None
    width, height = region.get("original_width"), region.get("original_height")
    if not width or not height:
        rec.add("LS_SIZE_MISSING", f"{kind} region has no original_width/original_height")
        return label, None
    sizes.add((width, height))
    mask = _decode(rec, region, kind, value, int(width), int(height), options.alpha_threshold)
    if mask is None or not check_size_of_segment(rec, mask, options.min_area):
        return label, None
    return label, mask


def _decode(
    rec: Recorder,
    region: dict[str, Any],
    kind: str,
    value: dict[str, Any],
    width: int,
    height: int,
    threshold: int,
) -> Mask | None:
    """The region's mask, cropped to its box, by the reader's decoders."""
    try:
        geometry = region_geometry(kind)
        if geometry == "brush":
            rle = value.get("rle")
            if isinstance(rle, list | bytes) and len(rle) >= 4 and all(isinstance(b, int) for b in rle[:4]):
                declared = int.from_bytes(bytes(b & 0xFF for b in rle[:4]), "big")
                if declared != width * height * 4:
                    rec.add(
                        "MASK_SIZE_MISMATCH",
                        f"the brush RLE holds {declared} values; a {width}x{height} RGBA image has "
                        f"{width * height * 4}",
                    )
                    return None
            # The alpha counts come from the RLE's runs and the mask from its crop: no image-size plane.
            _check_soft_edges(rec, brush.alpha_histogram(rle, width, height), threshold)
            return brush.decode_mask(rle, width, height, threshold)
        if geometry == "bitmask":
            alpha = bitmask.decode(value.get("imageDataURL"))
            if alpha.shape != (height, width):
                rec.add(
                    "MASK_SIZE_MISMATCH",
                    f"the bitmask PNG is {alpha.shape[1]}x{alpha.shape[0]}; the image is {width}x{height}",
                )
                return None
            _check_soft_edges(rec, np.bincount(alpha.ravel(), minlength=256), threshold)
            return brush.to_mask(alpha, threshold)
        return ls_regions.result_to_segment(region, category_id=0).mask
    except SegassistError as error:
        rec.add("MASK_UNDECODABLE", f"the {kind} region does not decode: {error.reason}")
        return None


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
