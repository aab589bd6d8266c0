"""COCO instance checks: ids and references in the JSON, then every annotation decoded by the codecs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters import coco_rle, polygons
from converters.errors import SegassistError
from converters.mask import Mask, overlapping_pairs
from converters.polygons import is_finite_number
from converters.qa.common import (
    EXCLUSIVE_TARGETS,
    Recorder,
    check_area_and_bbox,
    check_bbox_valid,
    check_image_file,
    check_polygon_part,
    check_size_of_segment,
    duplicates,
    is_int,
    top_level_lists,
)
from converters.qa.findings import Finding


@dataclass(frozen=True)
class CocoOptions:
    images_dir: Path | None = None
    min_area: int = 0
    # Polygon areas are the polygon's own area, not a pixel count: allow this fraction of the mask's pixels,
    # and at least half the box's width + height (the pixels a rasteriser may put on either side of the edge).
    polygon_area_tolerance: float = 0.01
    # RLE areas and boxes are exact pixel facts (pycocotools area, toBbox); floats get a half-pixel slack.
    rle_tolerance: float = 0.5
    # Polygon boxes are the polygon's float extent, which may differ from the pixel box by up to a pixel.
    bbox_tolerance: float = 1.0
    target: str = "instance"


@dataclass
class ImageJob:
    file: str
    image: dict[str, Any]
    annotations: list[dict[str, Any]]
    # Category id -> name, of the listed categories.
    category_names: dict[Any, str]


def check_dataset(path: Path, data: Any, options: CocoOptions) -> tuple[list[Finding], list[ImageJob]]:
    """JSON-level checks; returns the findings and one job per image for the mask pass."""
    rec = Recorder(file=str(path))
    lists = top_level_lists(rec, data)
    if lists is None:
        return rec.findings, []
    images, annotations, categories = lists

    for duplicate in duplicates(c.get("id") for c in categories):
        rec.add("DUPLICATE_CATEGORY_ID", f"category id {duplicate} is listed more than once")
    for category in categories:
        if category.get("id") == 0:
            rec.add("CATEGORY_ID_ZERO", f"category {category.get('name')!r} has id 0")
    for duplicate in duplicates(i.get("id") for i in images):
        rec.at(image_id=duplicate).add("DUPLICATE_IMAGE_ID", f"image id {duplicate} is listed more than once")
    for duplicate in duplicates(a.get("id") for a in annotations):
        rec.at(annotation_id=duplicate).add(
            "DUPLICATE_ANNOTATION_ID", f"annotation id {duplicate} is used more than once"
        )

    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    images_by_id = {image.get("id"): image for image in images}
    for annotation in annotations:
        image_id = annotation.get("image_id")
        if image_id not in images_by_id:
            rec.at(image_id=image_id, annotation_id=annotation.get("id")).add(
                "IMAGE_REF_MISSING", f"image_id {image_id!r} is not in images"
            )
            continue
        by_image[image_id].append(annotation)
    category_names = {c.get("id"): str(c.get("name")) for c in categories}
    jobs = []
    for image in images_by_id.values():
        width, height = image.get("width"), image.get("height")
        if not (is_int(width) and is_int(height) and width > 0 and height > 0):
            rec.at(image_id=image.get("id"), file_name=image.get("file_name")).add(
                "JSON_STRUCTURE", f"image size {width!r}x{height!r} is not two positive integers"
            )
            continue
        jobs.append(ImageJob(str(path), image, by_image.get(image.get("id"), []), category_names))
    return rec.findings, jobs


def decode_segmentation(segmentation: Any, height: int, width: int) -> Mask | None:
    """The annotation's mask; None when it has no segmentation (box-only annotations, as detection data has).

    Raises SegassistError when the segmentation does not decode; the RLE size is checked against the image.
    """
    if segmentation is None:
        return None
    if isinstance(segmentation, dict):
        return coco_rle.decode(segmentation, height=height, width=width)
    if isinstance(segmentation, list):
        parts = [
            part for part in segmentation if isinstance(part, list) and len(part) >= 6 and len(part) % 2 == 0
        ]
        return polygons.coco_to_mask(parts, height, width) if parts else None
    raise SegassistError(
        f"segmentation is a {type(segmentation).__name__}, not a polygon list or an RLE object"
    )


def check_image(job: ImageJob, options: CocoOptions) -> list[Finding]:
    """Check one image's annotations (what workers run: the masks stay in the worker)."""
    return inspect_image(job, options)[0]


def inspect_image(job: ImageJob, options: CocoOptions) -> tuple[list[Finding], dict[int, Mask]]:
    """Check one image's annotations; returns the findings and the decoded masks by annotation index."""
    image = job.image
    width, height = image["width"], image["height"]
    rec = Recorder(file=job.file, image_id=image.get("id"), file_name=image.get("file_name"))
    check_image_file(rec, options.images_dir, image.get("file_name", ""), width, height)
    masks: dict[int, Mask] = {}
    for index, annotation in enumerate(job.annotations):
        at = rec.at(annotation_id=annotation.get("id"))
        mask = _check_annotation(at, annotation, width, height, job.category_names, options)
        if mask is not None:
            masks[index] = mask
    if options.target in EXCLUSIVE_TARGETS:
        indices = sorted(masks)
        for a, b, shared in overlapping_pairs([masks[i] for i in indices]):
            first, second = job.annotations[indices[a]], job.annotations[indices[b]]
            names = [job.category_names.get(entry.get("category_id")) for entry in (first, second)]
            rec.at(annotation_id=first.get("id")).add(
                "SEGMENTS_OVERLAP",
                f"annotations {first.get('id')} ({names[0]}) and {second.get('id')} ({names[1]}) share "
                f"{shared} px ({options.target} output allows one segment per pixel)",
                other_annotation_id=second.get("id"),
                category=names[0],
                other_category=names[1],
                pixels=shared,
            )
    return rec.findings, masks


def _check_annotation(
    at: Recorder,
    annotation: dict[str, Any],
    width: int,
    height: int,
    category_names: dict[Any, str],
    options: CocoOptions,
) -> Mask | None:
    if not is_int(annotation.get("id")):
        at.add("JSON_STRUCTURE", f"annotation id {annotation.get('id')!r} is not an integer")
    category_id = annotation.get("category_id")
    if category_id not in category_names:
        at.add("CATEGORY_REF_MISSING", f"category_id {category_id!r} is not in categories")
    iscrowd = annotation.get("iscrowd", 0)
    if not is_int(iscrowd) or iscrowd not in (0, 1):
        at.add("ISCROWD_INVALID", f"iscrowd is {iscrowd!r}, not the integer 0 or 1")

    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list):
        for part_index, part in enumerate(segmentation):
            if not isinstance(part, list) or not all(is_finite_number(v) for v in part):
                at.add("JSON_STRUCTURE", f"polygon part {part_index} is not a list of numbers")
                continue
            if len(part) % 2:
                at.add("POLYGON_ODD_COORDINATES", f"polygon part {part_index} has {len(part)} coordinates")
                continue
            check_polygon_part(
                at, np.asarray(part, dtype=np.float64).reshape(-1, 2), width, height, part_index
            )
    elif isinstance(segmentation, dict) and segmentation.get("size") != [height, width]:
        at.add(
            "MASK_SIZE_MISMATCH",
            f"RLE size {segmentation.get('size')!r} but the image is [height, width] = [{height}, {width}]",
        )
        return None
    try:
        mask = decode_segmentation(segmentation, height, width)
    except SegassistError as error:
        at.add("MASK_UNDECODABLE", f"segmentation does not decode: {error.reason}")
        return None
    if mask is None:
        # A box-only annotation: only the box can be checked.
        if annotation.get("bbox") is not None:
            check_bbox_valid(at, annotation["bbox"])
        return None
    if not check_size_of_segment(at, mask, options.min_area):
        return mask
    if isinstance(segmentation, list):
        area_tolerance = max(options.polygon_area_tolerance * mask.area, 0.5 * sum(mask.bbox[2:]))
        bbox_tolerance = options.bbox_tolerance
    else:
        area_tolerance = bbox_tolerance = options.rle_tolerance
    check_area_and_bbox(
        at,
        annotation.get("area"),
        annotation.get("bbox"),
        area=mask.area,
        bbox=mask.bbox,
        area_tolerance=area_tolerance,
        bbox_tolerance=bbox_tolerance,
    )
    return mask
