"""COCO panoptic checks: the JSON (ids, references, categories) and each PNG in one pass over its pixels.

The pixel pass never builds a mask per segment: it splits every row of the id map into runs of equal id, then
gets each id's area and tight box from the runs (np.unique + bincount), so its cost is one comparison per
pixel plus work proportional to the number of runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.formats.coco_panoptic import read_id_map
from converters.qa.common import (
    Recorder,
    check_area_and_bbox,
    check_image_file,
    duplicates,
    is_int,
    top_level_lists,
)
from converters.qa.findings import Finding


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


def check_dataset(path: Path, data: Any, options: PanopticOptions) -> tuple[list[Finding], list[ImageJob]]:
    """JSON-level checks; returns the findings and one job per annotation for the pixel pass."""
    rec = Recorder(file=str(path))
    lists = top_level_lists(rec, data)
    if lists is None:
        return rec.findings, []
    images, annotations, categories = lists

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


def check_image(job: ImageJob, options: PanopticOptions) -> tuple[list[Finding], dict[int, Any] | None]:
    """Check one annotation against its PNG. Returns the findings and the measured {id: (area, bbox)}."""
    annotation = job.annotation
    rec = Recorder(file=job.file, image_id=annotation.get("image_id"), file_name=annotation["file_name"])
    segments = [s for s in annotation["segments_info"] if isinstance(s, dict)]
    if len(segments) != len(annotation["segments_info"]):
        rec.add("JSON_STRUCTURE", "segments_info entries must be objects")

    category_counts: Counter[int] = Counter()
    for segment in segments:
        segment_id, category_id = segment.get("id"), segment.get("category_id")
        at = rec.at(segment_id=segment_id)
        if not is_int(segment_id):
            at.add("JSON_STRUCTURE", f"segment id {segment_id!r} is not an integer")
        elif segment_id == 0:
            at.add("PAN_SEGMENT_ID_ZERO", "segment id 0 is void; no segment may use it")
        if category_id not in job.isthing:
            at.add("CATEGORY_REF_MISSING", f"category_id {category_id!r} is not in categories")
        else:
            category_counts[category_id] += 1
        iscrowd = segment.get("iscrowd", 0)
        if not is_int(iscrowd) or iscrowd not in (0, 1):
            at.add("ISCROWD_INVALID", f"iscrowd is {iscrowd!r}, not 0 or 1")
        elif iscrowd == 1 and category_id in job.isthing and not job.isthing[category_id]:
            at.add("PAN_CROWD_ON_STUFF", f"iscrowd=1 on stuff category {category_id}")
    for duplicate in duplicates(s.get("id") for s in segments):
        rec.at(segment_id=duplicate).add(
            "PAN_SEGMENT_ID_DUPLICATE", f"segment id {duplicate} is listed twice"
        )
    for category_id, count in category_counts.items():
        if count > 1 and not job.isthing[category_id]:
            rec.add(
                "PAN_STUFF_SEVERAL_SEGMENTS",
                f"stuff category {category_id} has {count} segments (COCO has one per stuff class)",
                category_id=category_id,
                count=count,
            )

    if job.image is not None:
        check_image_file(
            rec,
            options.images_dir,
            job.image.get("file_name", ""),
            job.image.get("width"),
            job.image.get("height"),
        )

    png_path = options.png_dir / annotation["file_name"]
    read = read_id_map(png_path)
    if read.missing:
        rec.add("PAN_PNG_MISSING", f"{png_path} does not exist")
        return rec.findings, None
    if read.error is not None:
        rec.add("PAN_PNG_NOT_RGB", f"{png_path.name} cannot be read as an image: {read.error}")
        return rec.findings, None
    if read.id_map is None:
        rec.add("PAN_PNG_NOT_RGB", f"{png_path.name} has mode {read.mode!r}; panoptic PNGs must be 8-bit RGB")
        return rec.findings, None
    if read.alpha_pixels:
        rec.add(
            "PAN_PNG_ALPHA",
            f"{png_path.name} has {read.alpha_pixels} pixels that are not fully opaque",
            pixels=read.alpha_pixels,
        )
    png_height, png_width = read.id_map.shape
    if job.image is not None and (job.image.get("width"), job.image.get("height")) != (png_width, png_height):
        rec.add(
            "PAN_PNG_SIZE_MISMATCH",
            f"{png_path.name} is {png_width}x{png_height} but image {job.image.get('id')} is "
            f"{job.image.get('width')}x{job.image.get('height')}",
            png_width=png_width,
            png_height=png_height,
        )

    measured = id_stats(read.id_map).as_dict()
    listed = {s.get("id") for s in segments}
    for pixel_id, (area, _box) in measured.items():
        if pixel_id != 0 and pixel_id not in listed:
            rec.at(segment_id=pixel_id).add(
                "PAN_PNG_ID_MISSING_IN_JSON",
                f"id {pixel_id} covers {area} px but is not in segments_info",
                area=area,
            )
    for segment in segments:
        segment_id = segment.get("id")
        at = rec.at(segment_id=segment_id)
        if segment_id not in measured or segment_id == 0:
            if segment_id != 0:
                at.add("PAN_JSON_ID_MISSING_IN_PNG", f"segment {segment_id} has no pixel in {png_path.name}")
            continue
        area, box = measured[segment_id]
        if area < options.min_area:
            at.add("SEGMENT_TINY", f"the segment covers only {area} px (< {options.min_area})", area=area)
        check_area_and_bbox(
            at,
            segment.get("area"),
            segment.get("bbox"),
            area=area,
            bbox=box,
            area_tolerance=options.area_tolerance,
            bbox_tolerance=options.bbox_tolerance,
        )
    return rec.findings, measured
