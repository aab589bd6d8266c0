"""COCO panoptic checks: the JSON (ids, references, categories), then each annotation as the panoptic
reader's tolerant read gives it (segments_info facts and the PNG's id map), measured in one pass over the
pixels.

The pixel pass never builds a mask per segment: it splits every row of the id map into runs of equal id, then
gets each id's area and tight box from the runs (np.unique + bincount), so its cost is one comparison per
pixel plus work proportional to the number of runs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import SegassistError
from converters.formats import coco_json
from converters.formats.coco_panoptic import (
    CocoPanopticSink,
    PanopticImageRead,
    PanopticPayload,
    png_folder,
    read_annotation_tolerantly,
)
from converters.formats.common import Options, Rendered
from converters.formats.label_map import masks_from_label_map
from converters.qa.common import (
    Recorder,
    check_area_and_bbox,
    check_image_file,
    duplicates,
    find_image,
    is_int,
    shape_findings,
)
from converters.qa.core import FixRequest, FixResult, ItemReport, QAOptions, Run
from converters.qa.findings import Finding
from converters.qa.fix import check_request, set_area_and_bbox
from converters.qa.overlay import Overlay, pictures


@dataclass
class IdStats:
    """Area and tight box [x, y, w, h] of every id in a panoptic id map (0 = void included)."""

    ids: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray  # (n, 4) int64: x, y, w, h

    def as_dict(self) -> dict[int, tuple[int, tuple[int, int, int, int]]]:
        return {
            int(i): (int(a), tuple(int(v) for v in box))
            for i, a, box in zip(self.ids, self.areas, self.boxes, strict=True)
        }


def id_stats(id_map: np.ndarray) -> IdStats:
    """Area and bbox of every id in one pass over the pixels (row runs, then per-run arithmetic)."""
    height, width = id_map.shape
    flat = np.ascontiguousarray(id_map).ravel()
    starts_mask = np.empty(flat.size, dtype=bool)
    starts_mask[0] = True
    np.not_equal(flat[1:], flat[:-1], out=starts_mask[1:])
    starts_mask[::width] = True
    starts = np.flatnonzero(starts_mask)
    lengths = np.diff(np.append(starts, flat.size))
    rows = starts // width
    first_col = starts - rows * width
    last_col = first_col + lengths - 1
    ids, inverse = np.unique(flat[starts], return_inverse=True)
    areas = np.bincount(inverse, weights=lengths, minlength=ids.size).astype(np.int64)
    # Runs come in row order, so an id's first run has its top row and its last run its bottom row.
    top = np.full(ids.size, height, dtype=np.int64)
    bottom = np.full(ids.size, -1, dtype=np.int64)
    left = np.full(ids.size, width, dtype=np.int64)
    right = np.full(ids.size, -1, dtype=np.int64)
    np.minimum.at(top, inverse, rows)
    np.maximum.at(bottom, inverse, rows)
    np.minimum.at(left, inverse, first_col)
    np.maximum.at(right, inverse, last_col)
    boxes = np.stack([left, top, right - left + 1, bottom - top + 1], axis=1)
    return IdStats(ids=ids, areas=areas, boxes=boxes)


@dataclass(frozen=True)
class PanopticOptions:
    png_dir: Path
    images_dir: Path | None = None
    min_area: int = 0
    # Panoptic areas and boxes are integer pixel facts; the default demands equality.
    area_tolerance: float = 0.0
    bbox_tolerance: float = 0.0


@dataclass
class ImageJob:
    """Everything one worker needs to check one panoptic annotation against its PNG."""

    file: str
    annotation: dict[str, Any]
    image: dict[str, Any] | None
    isthing: dict[int, bool]


def options_for(path: Path, options: QAOptions) -> PanopticOptions:
    return PanopticOptions(
        png_dir=png_folder(path, options.png_dir), images_dir=options.images_dir, min_area=options.min_area
    )


def start(path: Path, options: QAOptions) -> Run:
    """Read the JSON once through the COCO reader; the dataset-level findings and one job per annotation."""
    document = coco_json.read_document(path)
    pan_options = options_for(path, options)
    findings, jobs = check_dataset(document, pan_options)
    return Run(
        findings,
        jobs,
        partial(check_item, options=pan_options),
        unit="panoptic images",
        total=len(jobs),
        fixer=partial(PanopticFixer, document, pan_options.png_dir),
    )


def check_dataset(
    document: coco_json.CocoDocument, options: PanopticOptions
) -> tuple[list[Finding], list[ImageJob]]:
    """Checks of the document's ids, references and categories; returns the findings and one job per
    annotation for the pixel pass."""
    path = document.path
    rec = Recorder(file=str(path))
    shape_findings(rec, document.problems)
    images, annotations, categories = document.images, document.annotations, document.categories

    isthing: dict[int, bool] = {}
    for duplicate in duplicates(c.get("id") for c in categories):
        rec.add("DUPLICATE_CATEGORY_ID", f"category id {duplicate} is listed more than once")
    for category in categories:
        category_id = category.get("id")
        if not is_int(category_id):
            rec.add(
                "JSON_STRUCTURE", f"category {category.get('name')!r} has a non-integer id {category_id!r}"
            )
            continue
        if category_id == 0:
            rec.add("CATEGORY_ID_ZERO", f"category {category.get('name')!r} has id 0")
        flag = category.get("isthing")
        if flag not in (0, 1) or isinstance(flag, float):
            rec.add(
                "PAN_ISTHING_INVALID",
                f"category {category_id} ({category.get('name')!r}) has isthing={flag!r}",
            )
        isthing[category_id] = bool(flag)

    for duplicate in duplicates(i.get("id") for i in images):
        rec.at(image_id=duplicate).add("DUPLICATE_IMAGE_ID", f"image id {duplicate} is listed more than once")
    images_by_id = {image.get("id"): image for image in images}
    annotated = Counter(a.get("image_id") for a in annotations)
    for image_id, count in annotated.items():
        if count > 1:
            rec.at(image_id=image_id).add(
                "PAN_IMAGE_ANNOTATED_TWICE",
                f"{count} panoptic annotations name image {image_id}",
                count=count,
            )
    for image in images:
        if image.get("id") not in annotated:
            rec.at(image_id=image.get("id"), file_name=image.get("file_name")).add(
                "PAN_IMAGE_NOT_ANNOTATED", "no panoptic annotation for this image"
            )

    jobs = []
    for annotation in annotations:
        image_id = annotation.get("image_id")
        where = rec.at(image_id=image_id, file_name=annotation.get("file_name"))
        image = images_by_id.get(image_id)
        if image is None:
            where.add("IMAGE_REF_MISSING", f"image_id {image_id!r} is not in images")
        if not isinstance(annotation.get("segments_info"), list) or not isinstance(
            annotation.get("file_name"), str
        ):
            where.add("JSON_STRUCTURE", "an annotation needs file_name (string) and segments_info (list)")
            continue
        jobs.append(ImageJob(str(path), annotation, image, isthing))
    return rec.findings, jobs


@dataclass
class PanopticRepair:
    """What --fix needs of one annotation: the job as read, the measured {id: (area, bbox)} (None when the
    PNG could not be read) and the codes flagged on each segment id."""

    job: ImageJob
    measured: dict[int, Any] | None
    flagged: dict[Any, set[str]]


def check_item(
    job: ImageJob, options: PanopticOptions, draw: bool = False, repair: bool = False
) -> ItemReport:
    """Check one annotation against its PNG (what workers run)."""
    read = read_annotation_tolerantly(job.file, job.annotation, job.image, options.png_dir)
    findings, measured = judge(read, job.isthing, options)
    image_name = read.image.file_name if read.image is not None else None
    report = ItemReport(("image", str(read.image_id)), findings, file_name=image_name or read.png_name)
    id_map = read.png.id_map
    if draw and findings and measured is not None:
        named = {f.segment_id for f in findings}
        ids, labels = np.unique(id_map, return_inverse=True)
        outlined = [mask for i, mask in masks_from_label_map(id_map).items() if i in named]
        report.pictures = pictures(
            Overlay(
                *id_map.shape,
                labels=labels.reshape(id_map.shape).astype(np.int32) + (0 if ids[0] == 0 else 1),
                outlined=outlined,
                background=find_image(options.images_dir, image_name),
            )
        )
    if repair:
        flagged: dict[Any, set[str]] = defaultdict(set)
        for finding in findings:
            flagged[finding.segment_id].add(finding.code)
        report.repair = PanopticRepair(job, measured, dict(flagged))
    return report


def check_image(job: ImageJob, options: PanopticOptions) -> tuple[list[Finding], dict[int, Any] | None]:
    """Check one annotation against its PNG. Returns the findings and the measured {id: (area, bbox)}."""
    read = read_annotation_tolerantly(job.file, job.annotation, job.image, options.png_dir)
    return judge(read, job.isthing, options)


def judge(
    read: PanopticImageRead, isthing: dict[int, bool], options: PanopticOptions
) -> tuple[list[Finding], dict[int, Any] | None]:
    """The findings of one panoptic annotation read by the reader, and the measured {id: (area, bbox)}
    (None when the PNG gives no id map)."""
    rec = Recorder(file=read.file, image_id=read.image_id, file_name=read.png_name)
    segments = read.segments
    if read.malformed_entries:
        rec.add("JSON_STRUCTURE", "segments_info entries must be objects")

    category_counts: Counter[int] = Counter()
    for segment in segments:
        at = rec.at(segment_id=segment.id)
        if not is_int(segment.id):
            at.add("JSON_STRUCTURE", f"segment id {segment.id!r} is not an integer")
        elif segment.id == 0:
            at.add("PAN_SEGMENT_ID_ZERO", "segment id 0 is void; no segment may use it")
        if segment.category_id not in isthing:
            at.add("CATEGORY_REF_MISSING", f"category_id {segment.category_id!r} is not in categories")
        else:
            category_counts[segment.category_id] += 1
        if not is_int(segment.iscrowd) or segment.iscrowd not in (0, 1):
            at.add("ISCROWD_INVALID", f"iscrowd is {segment.iscrowd!r}, not 0 or 1")
        elif segment.iscrowd == 1 and segment.category_id in isthing and not isthing[segment.category_id]:
            at.add("PAN_CROWD_ON_STUFF", f"iscrowd=1 on stuff category {segment.category_id}")
    for duplicate in duplicates(s.id for s in segments):
        rec.at(segment_id=duplicate).add(
            "PAN_SEGMENT_ID_DUPLICATE", f"segment id {duplicate} is listed twice"
        )
    for category_id, count in category_counts.items():
        if count > 1 and not isthing[category_id]:
            rec.add(
                "PAN_STUFF_SEVERAL_SEGMENTS",
                f"stuff category {category_id} has {count} segments (COCO has one per stuff class)",
                category_id=category_id,
                count=count,
            )

    image = read.image
    if image is not None:
        check_image_file(rec, options.images_dir, image.file_name or "", image.width, image.height)

    png, png_path = read.png, read.png_path
    if png.missing:
        rec.add("PAN_PNG_MISSING", f"{png_path} does not exist")
        return rec.findings, None
    if png.error is not None:
        rec.add("PAN_PNG_NOT_RGB", f"{png_path.name} cannot be read as an image: {png.error}")
        return rec.findings, None
    if png.id_map is None:
        rec.add("PAN_PNG_NOT_RGB", f"{png_path.name} has mode {png.mode!r}; panoptic PNGs must be 8-bit RGB")
        return rec.findings, None
    if png.alpha_pixels:
        rec.add(
            "PAN_PNG_ALPHA",
            f"{png_path.name} has {png.alpha_pixels} pixels that are not fully opaque",
            pixels=png.alpha_pixels,
        )
    png_height, png_width = png.id_map.shape
    if image is not None and (image.width, image.height) != (png_width, png_height):
        rec.add(
            "PAN_PNG_SIZE_MISMATCH",
            f"{png_path.name} is {png_width}x{png_height} but image {image.id} is "
            f"{image.width}x{image.height}",
            png_width=png_width,
            png_height=png_height,
        )

    measured = id_stats(png.id_map).as_dict()
    listed = {s.id for s in segments}
    for pixel_id, (area, _box) in measured.items():
        if pixel_id != 0 and pixel_id not in listed:
            rec.at(segment_id=pixel_id).add(
                "PAN_PNG_ID_MISSING_IN_JSON",
                f"id {pixel_id} covers {area} px but is not in segments_info",
                area=area,
            )
    for segment in segments:
        at = rec.at(segment_id=segment.id)
        if segment.id not in measured or segment.id == 0:
            if segment.id != 0:
                at.add("PAN_JSON_ID_MISSING_IN_PNG", f"segment {segment.id} has no pixel in {png_path.name}")
            continue
        area, box = measured[segment.id]
        if area < options.min_area:
            at.add("SEGMENT_TINY", f"the segment covers only {area} px (< {options.min_area})", area=area)
        check_area_and_bbox(
            at,
            segment.area,
            segment.bbox,
            area=area,
            bbox=box,
            area_tolerance=options.area_tolerance,
            bbox_tolerance=options.bbox_tolerance,
        )
    return rec.findings, measured


class PanopticFixer:
    """The repaired copy, written through the COCO panoptic writer annotation by annotation: segments_info
    repaired, each PNG copied as it is (into the folder the writer names after the output JSON)."""

    def __init__(self, document: coco_json.CocoDocument, png_dir: Path, request: FixRequest) -> None:
        check_request(request)
        self.png_dir = png_dir
        self.result = FixResult(request.output)
        annotated = {annotation.get("image_id") for annotation in document.annotations}
        for image in document.images:
            if image.get("id") not in annotated:
                self.result.changes.append(
                    {"image_id": image.get("id"), "action": "dropped", "reason": "no panoptic annotation"}
                )
        categories = coco_json.read_categories(document)
        self.sink = CocoPanopticSink(request.output, categories, Options(), request.outputs)

    def take(self, report: ItemReport) -> None:
        repair: PanopticRepair = report.repair
        job = repair.job
        image_id = job.annotation.get("image_id")
        if job.image is None:
            self.result.changes.append(
                {"image_id": image_id, "action": "dropped", "reason": "its image is not in images"}
            )
            return
        if repair.measured is None:
            raise SegassistError(
                "--fix cannot repair an annotation whose PNG cannot be read; fix the PNG first",
                file=str(self.png_dir / job.annotation["file_name"]),
                image_id=image_id,
            )
        kept = []
        for segment in job.annotation["segments_info"]:
            if not isinstance(segment, dict):
                kept.append(segment)
                continue
            codes = repair.flagged.get(segment.get("id"), set())
            change = {"image_id": image_id, "segment_id": segment.get("id")}
            if "PAN_JSON_ID_MISSING_IN_PNG" in codes:
                self.result.changes.append({**change, "action": "dropped", "reason": "no pixel in the PNG"})
                continue
            segment = dict(segment)
            if codes & {"AREA_MISMATCH", "BBOX_MISMATCH"}:
                set_area_and_bbox(segment, *repair.measured[segment["id"]], change, self.result)
            kept.append(segment)
        annotation = {**job.annotation, "segments_info": kept}
        png = (self.png_dir / job.annotation["file_name"]).read_bytes()
        payload = PanopticPayload(job.image, annotation, png)
        self.sink.write(Rendered(image_id, payload, segments=len(kept)))

    def finish(self) -> FixResult:
        self.sink.finish()
        return self.result
