"""`--fix OUTPUT`: a repaired copy of what can be repaired mechanically, and the list of what changed.

COCO instance: area and bbox recomputed where QA flagged them, empty annotations dropped, and (with an overlap
policy) overlapping masks made exclusive by `converters.overlap.resolve`, the changed masks written as RLE.
COCO panoptic: area and bbox recomputed from the PNG where flagged, segments without pixels dropped, the PNG
folder copied beside the output JSON. The input is never modified; the outputs are reserved in the command's
`converters.io.Outputs` and committed with its other outputs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from converters import coco_rle, overlap
from converters.errors import SegassistError
from converters.io import Outputs
from converters.mask import Mask
from converters.model import Category, Origin, Segment
from converters.parallel import process_map
from converters.qa import coco, panoptic
from converters.qa.common import load_json
from converters.qa.findings import Finding
from converters.qa.run import QAOptions, detect_format, instance_options, panoptic_options

FIXABLE_FORMATS = ("coco", "coco-panoptic")


@dataclass
class FixResult:
    output: Path
    changes: list[dict[str, Any]] = field(default_factory=list)


def fix(
    path: Path | str,
    output: Path | str,
    options: QAOptions | None = None,
    *,
    outputs: Outputs,
    overlap_policy: str | None = None,
    things_over_stuff: bool = False,
    min_kept_fraction: float = 0.0,
) -> FixResult:
    """Write the repaired copy of `path` to `output` (reserved in `outputs`, which the caller commits);
    `overlap_policy` (order|score|area) removes overlaps."""
    options = options or QAOptions()
    path, output = Path(path), Path(output)
    if output.resolve() == path.resolve():
        raise SegassistError("--fix must name a new file; the input is never modified", file=str(output))
    fmt = detect_format(path) if options.format == "auto" else options.format
    if fmt not in FIXABLE_FORMATS:
        raise SegassistError(
            f"--fix repairs {' and '.join(FIXABLE_FORMATS)} datasets, not {fmt}", file=str(path)
        )
    if overlap_policy is not None and overlap_policy not in overlap.POLICIES[1:]:
        raise SegassistError(f"overlap policy must be one of {', '.join(overlap.POLICIES[1:])}")
    json_temp = outputs.file(output)
    png_temp = outputs.folder(output.with_suffix("")) if fmt == "coco-panoptic" else None
    data = load_json(path)
    result = FixResult(output)
    if fmt == "coco":
        _fix_coco(path, data, options, result, overlap_policy, things_over_stuff, min_kept_fraction)
    else:
        png_dir = _fix_panoptic(path, data, options, result)
        shutil.copytree(png_dir, png_temp, dirs_exist_ok=True)
    json_temp.write_text(json.dumps(data) + "\n")
    return result


def _flagged(findings: list[Finding], key: str) -> dict[Any, set[str]]:
    """Codes flagged per annotation id (key="annotation_id") or segment id (key="segment_id")."""
    flagged: dict[Any, set[str]] = {}
    for finding in findings:
        flagged.setdefault(getattr(finding, key), set()).add(finding.code)
    return flagged


def _fix_coco(
    path: Path,
    data: dict[str, Any],
    options: QAOptions,
    result: FixResult,
    policy: str | None,
    things_over_stuff: bool,
    min_kept_fraction: float,
) -> None:
    coco_options = instance_options(options)
    _, jobs = coco.check_dataset(path, data, coco_options)
    categories = [
        Category(id=c["id"], name=str(c.get("name", "")), isthing=bool(c.get("isthing", 1)))
        for c in data.get("categories", [])
        if isinstance(c, dict) and "id" in c
    ]
    dropped: set[int] = set()
    checked = process_map(partial(coco.inspect_image, options=coco_options), jobs, options.workers)
    for job, (findings, masks) in zip(jobs, checked, strict=True):
        flagged = _flagged(findings, "annotation_id")
        for index, annotation in enumerate(job.annotations):
            codes = flagged.get(annotation.get("id"), set())
            change = {"image_id": job.image.get("id"), "annotation_id": annotation.get("id")}
            if "SEGMENT_EMPTY" in codes:
                dropped.add(id(annotation))
                masks.pop(index, None)
                result.changes.append({**change, "action": "dropped", "reason": "empty mask"})
            elif index in masks and codes & {"AREA_MISMATCH", "BBOX_MISMATCH"}:
                _set_area_and_bbox(annotation, masks[index].area, masks[index].bbox, change, result)
        if policy is not None:
            _resolve_overlaps(
                job, masks, categories, policy, things_over_stuff, min_kept_fraction, dropped, result
            )
    data["annotations"] = [a for a in data["annotations"] if id(a) not in dropped]


def _set_area_and_bbox(
    record: dict[str, Any], area: int, bbox: Sequence[int], change: dict[str, Any], result: FixResult
) -> None:
    """Replace the record's area and bbox with the measured ones, noting the old values in the change."""
    before = {"area": record.get("area"), "bbox": record.get("bbox")}
    record["area"], record["bbox"] = area, list(bbox)
    result.changes.append({**change, "action": "recomputed area and bbox", "before": before})


def _resolve_overlaps(
    job: coco.ImageJob,
    masks: dict[int, Mask],
    categories: list[Category],
    policy: str,
    things_over_stuff: bool,
    min_kept_fraction: float,
    dropped: set[int],
    result: FixResult,
) -> None:
    indices = sorted(masks)
    segments = [
        Segment(
            mask=masks[i],
            category_id=job.annotations[i].get("category_id"),
            score=job.annotations[i].get("score"),
            origin=Origin(annotation_id=job.annotations[i].get("id"), order=i),
            id=i,
        )
        for i in indices
    ]
    kept, report = overlap.resolve(
        segments,
        policy,
        categories=categories,
        things_over_stuff=things_over_stuff,
        min_kept_fraction=min_kept_fraction,
    )
    kept_by_index = {segment.id: segment for segment in kept}
    for change in report.changes:
        annotation = job.annotations[segments[change.index].id]
        where = {"image_id": job.image.get("id"), "annotation_id": annotation.get("id")}
        if change.dropped:
            dropped.add(id(annotation))
            result.changes.append(
                {**where, "action": "dropped", "reason": f"overlap policy {policy}: {change.dropped}"}
            )
            continue
        mask = kept_by_index[segments[change.index].id].mask
        annotation["segmentation"] = coco_rle.encode(mask)
        annotation["area"], annotation["bbox"] = mask.area, list(mask.bbox)
        result.changes.append(
            {
                **where,
                "action": f"overlap policy {policy}",
                "pixels_moved": change.area_before - change.area_after,
            }
        )


def _fix_panoptic(path: Path, data: dict[str, Any], options: QAOptions, result: FixResult) -> Path:
    pan_options = panoptic_options(path, options)
    _, jobs = panoptic.check_dataset(path, data, pan_options)
    checked = process_map(partial(panoptic.check_image, options=pan_options), jobs, options.workers)
    for job, (findings, measured) in zip(jobs, checked, strict=True):
        if measured is None:
            continue
        flagged = _flagged(findings, "segment_id")
        kept = []
        for segment in job.annotation["segments_info"]:
            if not isinstance(segment, dict):
                kept.append(segment)
                continue
            codes = flagged.get(segment.get("id"), set())
            change = {"image_id": job.annotation.get("image_id"), "segment_id": segment.get("id")}
            if "PAN_JSON_ID_MISSING_IN_PNG" in codes:
                result.changes.append({**change, "action": "dropped", "reason": "no pixel in the PNG"})
                continue
            if codes & {"AREA_MISMATCH", "BBOX_MISMATCH"}:
                _set_area_and_bbox(segment, *measured[segment["id"]], change, result)
            kept.append(segment)
        job.annotation["segments_info"] = kept
    return pan_options.png_dir
