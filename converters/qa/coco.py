"""COCO instance checks, on what the COCO reader reads: the ids and references of its document, then each
image as the reader's tolerant read gives it (the model's segments, and each annotation's declared facts),
the segments judged against the facts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from converters import overlap
from converters.errors import SegassistError
from converters.formats import coco as coco_format
from converters.formats import coco_json
from converters.formats.common import Options, Rendered
from converters.mask import Mask, overlapping_pairs
from converters.model import ImageRecord, Origin, Segment
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
    find_image,
    is_int,
    shape_findings,
)
from converters.qa.core import FixRequest, FixResult, ItemReport, QAOptions, Run
from converters.qa.findings import Finding
from converters.qa.fix import check_request, set_area_and_bbox
from converters.qa.overlay import Overlay, pictures


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
    """One image to check: the reader's item (the `images` entry and its (position, annotation) pairs),
    which the worker reads into the model plus facts."""

    file: str
    image: dict[str, Any]
    annotations: list[tuple[int, dict[str, Any]]]
    # Category id -> name, of the listed categories.
    category_names: dict[Any, str]


def options_for(options: QAOptions) -> CocoOptions:
    return CocoOptions(
        images_dir=options.images_dir,
        min_area=options.min_area,
        polygon_area_tolerance=options.polygon_area_tolerance,
        bbox_tolerance=options.bbox_tolerance,
        target=options.target,
    )


def start(path: Path, options: QAOptions) -> Run:
    """Read the file once through the COCO reader; the dataset-level findings and one job per image."""
    document = coco_json.read_document(path)
    coco_options = options_for(options)
    findings, jobs = check_dataset(document, coco_options)
    return Run(
        findings,
        jobs,
        partial(check_item, options=coco_options),
        unit="images",
        total=len(jobs),
        fixer=partial(CocoFixer, document, len(jobs)),
    )


def check_dataset(
    document: coco_json.CocoDocument, options: CocoOptions
) -> tuple[list[Finding], list[ImageJob]]:
    """Checks of the document's ids and references; returns the findings and one job per image."""
    path = document.path
    rec = Recorder(file=str(path))
    shape_findings(rec, document.problems)
    images, annotations, categories = document.images, document.annotations, document.categories

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

    by_image: dict[Any, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    images_by_id = {image.get("id"): image for image in images}
    for position, annotation in enumerate(annotations):
        image_id = annotation.get("image_id")
        if image_id not in images_by_id:
            rec.at(image_id=image_id, annotation_id=annotation.get("id")).add(
                "IMAGE_REF_MISSING", f"image_id {image_id!r} is not in images"
            )
            continue
        by_image[image_id].append((position, annotation))
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


@dataclass
class CocoRepair:
    """What --fix needs of one image: its entry and annotations as read, the decoded masks by annotation
    index, and the codes flagged on each annotation id."""

    job: ImageJob
    masks: dict[int, Mask]
    flagged: dict[Any, set[str]]


def check_item(job: ImageJob, options: CocoOptions, draw: bool = False, repair: bool = False) -> ItemReport:
    """Check one image (what workers run); the masks stay here unless the pictures or --fix need them."""
    read = coco_format.read_image_tolerantly(job.image, job.annotations, job.file)
    findings = inspect_image(read, job.category_names, options)
    image = read.image
    masks = {index: segment.mask for index, segment in read.segments().items()}
    report = ItemReport(("image", str(image.id)), findings, file_name=image.file_name)
    if draw and findings:
        named = {f.annotation_id for f in findings}
        report.pictures = pictures(
            Overlay(
                image.height,
                image.width,
                masks=[masks[i] for i in sorted(masks)],
                outlined=[masks[i] for i in sorted(masks) if read.annotations[i].facts.id in named],
                background=find_image(options.images_dir, image.file_name),
            )
        )
    if repair:
        flagged: dict[Any, set[str]] = defaultdict(set)
        for finding in findings:
            flagged[finding.annotation_id].add(finding.code)
        report.repair = CocoRepair(job, masks, dict(flagged))
    return report


def inspect_image(
    read: coco_format.CocoImageRead, category_names: dict[Any, str], options: CocoOptions
) -> list[Finding]:
    """Check one image's segments against what its annotations declare."""
    image = read.image
    rec = Recorder(file=read.file, image_id=image.id, file_name=image.file_name)
    check_image_file(rec, options.images_dir, image.file_name or "", image.width, image.height)
    for annotation in read.annotations:
        _check_annotation(
            rec.at(annotation_id=annotation.facts.id), annotation, image, category_names, options
        )
    if options.target in EXCLUSIVE_TARGETS:
        segments = read.segments()
        indices = sorted(segments)
        for a, b, shared in overlapping_pairs([segments[i].mask for i in indices]):
            first, second = (read.annotations[indices[i]].facts for i in (a, b))
            names = [category_names.get(facts.category_id) for facts in (first, second)]
            rec.at(annotation_id=first.id).add(
                "SEGMENTS_OVERLAP",
                f"annotations {first.id} ({names[0]}) and {second.id} ({names[1]}) share "
                f"{shared} px ({options.target} output allows one segment per pixel)",
                other_annotation_id=second.id,
                category=names[0],
                other_category=names[1],
                pixels=shared,
            )
    return rec.findings


def _check_annotation(
    at: Recorder,
    annotation: coco_format.AnnotationRead,
    image: ImageRecord,
    category_names: dict[Any, str],
    options: CocoOptions,
) -> None:
    facts = annotation.facts
    width, height = image.width, image.height
    if not is_int(facts.id):
        at.add("JSON_STRUCTURE", f"annotation id {facts.id!r} is not an integer")
    if facts.category_id not in category_names:
        at.add("CATEGORY_REF_MISSING", f"category_id {facts.category_id!r} is not in categories")
    if not is_int(facts.iscrowd) or facts.iscrowd not in (0, 1):
        at.add("ISCROWD_INVALID", f"iscrowd is {facts.iscrowd!r}, not the integer 0 or 1")

    if facts.polygon_parts is not None:
        for part_index, part in enumerate(facts.polygon_parts):
            if not isinstance(part, list) or not all(is_finite_number(v) for v in part):
                at.add("JSON_STRUCTURE", f"polygon part {part_index} is not a list of numbers")
                continue
            if len(part) % 2:
                at.add("POLYGON_ODD_COORDINATES", f"polygon part {part_index} has {len(part)} coordinates")
                continue
            check_polygon_part(
                at, np.asarray(part, dtype=np.float64).reshape(-1, 2), width, height, part_index
            )
    elif facts.is_rle and facts.rle_size != [height, width]:
        at.add(
            "MASK_SIZE_MISMATCH",
            f"RLE size {facts.rle_size!r} but the image is [height, width] = [{height}, {width}]",
        )
        return
    if annotation.decode_error is not None:
        at.add("MASK_UNDECODABLE", f"segmentation does not decode: {annotation.decode_error}")
        return
    if annotation.segment is None:
        # A box-only annotation: only the box can be checked.
        if facts.bbox is not None:
            check_bbox_valid(at, facts.bbox)
        return
    mask = annotation.segment.mask
    if not check_size_of_segment(at, mask, options.min_area):
        return
    if facts.is_rle:
        area_tolerance = bbox_tolerance = options.rle_tolerance
    else:
        area_tolerance = max(options.polygon_area_tolerance * mask.area, 0.5 * sum(mask.bbox[2:]))
        bbox_tolerance = options.bbox_tolerance
    check_area_and_bbox(
        at,
        facts.area,
        facts.bbox,
        area=mask.area,
        bbox=mask.bbox,
        area_tolerance=area_tolerance,
        bbox_tolerance=bbox_tolerance,
    )


class CocoFixer:
    """The repaired copy, written through the COCO writer image by image; annotation ids are kept."""

    def __init__(self, document: coco_json.CocoDocument, jobs: int, request: FixRequest) -> None:
        check_request(request)
        images = {image.get("id") for image in document.images}
        if jobs != len(document.images):
            raise SegassistError(
                "--fix cannot repair images with duplicate ids or without a valid size; fix those first",
                file=str(document.path),
            )
        self.request = request
        self.result = FixResult(request.output)
        for annotation in document.annotations:
            if annotation.get("image_id") not in images:
                self.result.changes.append(
                    {
                        "image_id": annotation.get("image_id"),
                        "annotation_id": annotation.get("id"),
                        "action": "dropped",
                        "reason": "its image is not in images",
                    }
                )
        self.categories = coco_json.read_categories(document)
        # RLE for the masks the overlap policy changes: exact, as the input's area and bbox then are.
        self.sink = coco_format.CocoSink(
            request.output, self.categories, Options(segmentation="rle"), request.outputs
        )

    def take(self, report: ItemReport) -> None:
        repair: CocoRepair = report.repair
        image, masks = repair.job.image, dict(repair.masks)
        kept: dict[int, dict[str, Any]] = {}
        for index, (_, annotation) in enumerate(repair.job.annotations):
            codes = repair.flagged.get(annotation.get("id"), set())
            change = {"image_id": image.get("id"), "annotation_id": annotation.get("id")}
            if "SEGMENT_EMPTY" in codes:
                masks.pop(index, None)
                self.result.changes.append({**change, "action": "dropped", "reason": "empty mask"})
                continue
            annotation = dict(annotation)
            if index in masks and codes & {"AREA_MISMATCH", "BBOX_MISMATCH"}:
                set_area_and_bbox(annotation, masks[index].area, masks[index].bbox, change, self.result)
            kept[index] = annotation
        if self.request.overlap_policy is not None:
            self._resolve_overlaps(image, kept, masks)
        payload = coco_format.CocoPayload(image, list(kept.values()))
        self.sink.write(Rendered(image.get("id"), payload, segments=len(kept)))

    def _resolve_overlaps(
        self, image: dict[str, Any], kept: dict[int, dict[str, Any]], masks: dict[int, Mask]
    ) -> None:
        """Make the kept annotations exclusive; a changed mask is rendered by the writer."""
        policy = self.request.overlap_policy
        segments = [
            Segment(
                mask=masks[index],
                category_id=kept[index].get("category_id"),
                score=kept[index].get("score"),
                origin=Origin(annotation_id=kept[index].get("id"), order=index),
                id=index,
            )
            for index in sorted(set(kept) & set(masks))
        ]
        resolved, report = overlap.resolve(
            segments,
            policy,
            categories=self.categories,
            things_over_stuff=self.request.things_over_stuff,
            min_kept_fraction=self.request.min_kept_fraction,
        )
        resolved_by_index = {segment.id: segment for segment in resolved}
        for change in report.changes:
            index = segments[change.index].id
            annotation = kept[index]
            where = {"image_id": image.get("id"), "annotation_id": annotation.get("id")}
            if change.dropped:
                del kept[index]
                self.result.changes.append(
                    {**where, "action": "dropped", "reason": f"overlap policy {policy}: {change.dropped}"}
                )
                continue
            record = ImageRecord(image["id"], image["file_name"], image["width"], image["height"])
            record.segments = [resolved_by_index[index]]
            _, written = self.sink.renderer.render(record).payload
            if not written:  # the policy left no pixel (the writer drops empty masks)
                del kept[index]
                self.result.changes.append(
                    {**where, "action": "dropped", "reason": f"overlap policy {policy}: no pixel left"}
                )
                continue
            annotation.update({key: written[0][key] for key in ("segmentation", "area", "bbox")})
            self.result.changes.append(
                {
                    **where,
                    "action": f"overlap policy {policy}",
                    "pixels_moved": change.area_before - change.area_after,
                }
            )

    def finish(self) -> FixResult:
        self.sink.finish()
        return self.result
