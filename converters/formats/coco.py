"""COCO instance JSON ⇄ the model.

Reading is tolerant of what real files hold: polygons (several parts per object), compressed and uncompressed
RLE, iscrowd as a string ("false"), extra fields. The file is read whole (COCO instance files are compact; the
annotations must be grouped by image anyway). Writing streams one image at a time: RLE by default (exact),
polygons on request (crowd regions stay RLE); `area` is the pixel count of the mask as written and `bbox` its
tight box, so both always agree with the segmentation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from converters import coco_rle, polygons
from converters.errors import SegassistError
from converters.formats.coco_json import (
    finish_coco_json,
    image_entry,
    parse_iscrowd,
    read_categories,
    read_document,
)
from converters.formats.common import Options, Rendered
from converters.io import JsonArrayWriter, Outputs
from converters.mask import Mask
from converters.model import Category, ImageRecord, Origin, Segment

DECLARED_AREAS = "coco_declared_areas"  # ImageRecord.extra key: {annotation position: declared area}


class CocoSource:
    """A COCO instance file; items are (image entry, [(position, annotation)])."""

    def __init__(self, path: Path, options: Options) -> None:
        self.path = Path(path)
        document = read_document(self.path)
        document.check_shape()
        self.categories = read_categories(document)
        self._images = document.images
        if not self._images:
            raise SegassistError("the file has no `images`", file=str(self.path))
        annotations = document.annotations
        if annotations and "segments_info" in annotations[0]:
            raise SegassistError(
                "this is a COCO panoptic file: read it with --from coco-panoptic", file=str(path)
            )
        known = {entry.get("id") for entry in self._images}
        self._annotations: dict[Any, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for position, annotation in enumerate(annotations):
            if annotation.get("image_id") not in known:
                raise SegassistError(
                    f"annotation refers to image {annotation.get('image_id')!r}, which is not in `images`",
                    file=str(self.path),
                    region_id=annotation.get("id"),
                )
            self._annotations[annotation["image_id"]].append((position, annotation))

    def items(self) -> Iterator[tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]]:
        for entry in self._images:
            yield entry, self._annotations.get(entry.get("id"), [])

    def where(self, item: tuple[dict[str, Any], Any]) -> dict[str, Any]:
        return {"file": str(self.path), "image_id": item[0].get("id")}

    def load(self, item: tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]) -> ImageRecord:
        entry, annotations = item
        image_id, file_name, width, height = image_entry(entry, str(self.path))
        category_ids = {category.id for category in self.categories}
        segments = []
        declared_areas = {}
        for position, annotation in annotations:
            region_id = annotation.get("id")
            try:
                if annotation.get("category_id") not in category_ids:
                    raise SegassistError(f"unknown category_id {annotation.get('category_id')!r}")
                segments.append(
                    Segment(
                        mask=decode_segmentation(annotation.get("segmentation"), height, width),
                        category_id=int(annotation["category_id"]),
                        iscrowd=parse_iscrowd(annotation.get("iscrowd", 0)),
                        score=float(annotation["score"]) if annotation.get("score") is not None else None,
                        origin=Origin(file=str(self.path), region_id=region_id, order=position),
                        id=int(region_id) if isinstance(region_id, int) else None,
                    )
                )
            except SegassistError as error:
                raise error.at(file=str(self.path), image_id=image_id, region_id=region_id) from None
            area = annotation.get("area")
            if isinstance(area, int | float) and not isinstance(area, bool):
                declared_areas[position] = area
        extra = {
            key: value for key, value in entry.items() if key not in ("id", "file_name", "width", "height")
        }
        # COCOeval sizes a GT object by its declared `area` (a polygon's area in COCO's own files, not the
        # pixel count): kept by the segment's position in the file (`Origin.order`) for mask AP.
        return ImageRecord(
            image_id,
            file_name,
            width,
            height,
            segments,
            extra={"coco_image": extra, DECLARED_AREAS: declared_areas},
        )


def decode_segmentation(segmentation: Any, height: int, width: int) -> Mask:
    """A Mask from polygons (one or several parts), or compressed or uncompressed RLE."""
    if isinstance(segmentation, dict):
        return coco_rle.decode(segmentation, height, width)
    if isinstance(segmentation, list) and segmentation:
        parts = segmentation if isinstance(segmentation[0], list) else [segmentation]
        return polygons.coco_to_mask(parts, height, width)
    raise SegassistError("annotation has no segmentation (box-only annotations have no mask to convert)")


@dataclass(frozen=True)
class AnnotationFacts:
    """What a COCO annotation declares about itself, kept as written beside the segment read from it, so that
    QA can judge the one against the other (and name what is malformed) without parsing the file again."""

    id: Any
    category_id: Any
    iscrowd: Any
    area: Any
    bbox: Any
    # The polygon parts as written (None unless the segmentation is a list).
    polygon_parts: list[Any] | None
    # The RLE header's [height, width] as written (None unless the segmentation is an RLE object).
    rle_size: Any
    is_rle: bool


@dataclass
class AnnotationRead:
    """One annotation as a tolerant read gives it: its facts, and its segment (None for a box-only annotation,
    an RLE whose size is not the image's, or a mask that does not decode: `decode_error` says why)."""

    facts: AnnotationFacts
    segment: Segment | None
    decode_error: str | None = None


@dataclass
class CocoImageRead:
    """One image of a COCO file read tolerantly, for QA: the image in the model, with the segments that decode
    (cropped masks), and every annotation of the image in file order with its facts.

    Nothing is refused here: ids, categories and iscrowd are kept as written in the facts, and the segments
    take them as they are where they are malformed (QA flags them)."""

    file: str
    image: ImageRecord
    annotations: list[AnnotationRead]

    def segments(self) -> dict[int, Segment]:
        """The decoded segments by the annotation's index in `annotations`."""
        return {
            index: read.segment for index, read in enumerate(self.annotations) if read.segment is not None
        }


def read_image_tolerantly(
    entry: dict[str, Any], annotations: list[tuple[int, dict[str, Any]]], file: str
) -> CocoImageRead:
    """An `images` entry with a valid width and height, and its (position, annotation) pairs, as the model
    plus the facts QA judges; polygon parts that are not lists of an even number (>= 6) of coordinates are
    left out of the mask (QA reports them on their own)."""
    width, height = entry["width"], entry["height"]
    image = ImageRecord(entry.get("id"), entry.get("file_name"), width, height)
    reads = []
    for position, annotation in annotations:
        segmentation = annotation.get("segmentation")
        facts = AnnotationFacts(
            id=annotation.get("id"),
            category_id=annotation.get("category_id"),
            iscrowd=annotation.get("iscrowd", 0),
            area=annotation.get("area"),
            bbox=annotation.get("bbox"),
            polygon_parts=segmentation if isinstance(segmentation, list) else None,
            rle_size=segmentation.get("size") if isinstance(segmentation, dict) else None,
            is_rle=isinstance(segmentation, dict),
        )
        if facts.is_rle and facts.rle_size != [height, width]:
            reads.append(AnnotationRead(facts, None))
            continue
        try:
            mask = _decode_tolerantly(segmentation, height, width)
        except SegassistError as error:
            reads.append(AnnotationRead(facts, None, error.reason))
            continue
        segment = None
        if mask is not None:
            score = annotation.get("score")
            segment = Segment(
                mask=mask,
                category_id=facts.category_id,
                iscrowd=facts.iscrowd in (1, True),
                score=score,
                origin=Origin(file=file, annotation_id=facts.id, order=position),
                id=facts.id,
            )
            image.segments.append(segment)
        reads.append(AnnotationRead(facts, segment))
    return CocoImageRead(file, image, reads)


def _decode_tolerantly(segmentation: Any, height: int, width: int) -> Mask | None:
    """The mask of the well-formed polygon parts, or of the RLE; None when there is nothing to decode."""
    if segmentation is None:
        return None
    if isinstance(segmentation, list):
        segmentation = [
            part for part in segmentation if isinstance(part, list) and len(part) >= 6 and len(part) % 2 == 0
        ]
        if not segmentation:
            return None
    elif not isinstance(segmentation, dict):
        raise SegassistError(
            f"segmentation is a {type(segmentation).__name__}, not a polygon list or an RLE object"
        )
    return decode_segmentation(segmentation, height, width)


class CocoPayload(NamedTuple):
    """One image's entry and annotations (without ids: the sink numbers them, unless one is given)."""

    image: dict[str, Any]
    annotations: list[dict[str, Any]]


class CocoSink:
    """Streams a COCO instance file: images and annotations to scratch parts, joined by `finish`."""

    def __init__(self, output: Path, categories: list[Category], options: Options, outputs: Outputs) -> None:
        self.output = Path(output)
        self.categories = categories
        self.renderer = CocoRenderer(
            {category.id for category in categories}, options.segmentation, options.polygon_tolerance
        )
        self._json = JsonArrayWriter(outputs, self.output, ("images", "annotations"))
        self._next_id = 1

    def write(self, rendered: Rendered[CocoPayload]) -> None:
        image, annotations = rendered.payload
        self._json.append("images", image)
        for annotation in annotations:
            self._json.append("annotations", {"id": self._next_id, **annotation})
            self._next_id += 1

    def finish(self) -> None:
        finish_coco_json(self._json, self.categories)


class CocoRenderer:
    """One image's COCO entry and annotations (picklable; runs in worker processes)."""

    def __init__(self, category_ids: set[int], segmentation: str, polygon_tolerance: float) -> None:
        if segmentation not in ("rle", "polygon"):
            raise SegassistError(f"--segmentation must be rle or polygon, got {segmentation!r}")
        self.category_ids = category_ids
        self.segmentation = segmentation
        self.polygon_tolerance = polygon_tolerance

    def render(self, image: ImageRecord) -> Rendered[CocoPayload]:
        annotations = []
        dropped = []
        polygon_loss = []
        for segment in image.segments:
            if segment.category_id not in self.category_ids:
                raise SegassistError(
                    f"segment has category {segment.category_id}, which is not among the categories",
                    **segment.origin.where(),
                )
            segmentation, written = self._encode(segment)
            if written.is_empty:
                dropped.append({**_where(segment), "reason": "empty mask"})
                continue
            if written is not segment.mask:
                changed = written.area + segment.mask.area - 2 * written.intersection_area(segment.mask)
                if changed:
                    polygon_loss.append({**_where(segment), "pixels_changed": changed})
            annotation = {
                "image_id": image.id,
                "category_id": segment.category_id,
                "segmentation": segmentation,
                "area": written.area,
                "bbox": list(written.bbox),
                "iscrowd": int(segment.iscrowd),
            }
            if segment.score is not None:
                annotation["score"] = segment.score
            annotations.append(annotation)
        entry = {"id": image.id, "file_name": image.file_name, "width": image.width, "height": image.height}
        entry.update(image.extra.get("coco_image", {}))
        report = {
            key: value for key, value in (("dropped", dropped), ("polygon_loss", polygon_loss)) if value
        }
        return Rendered(image.id, CocoPayload(entry, annotations), segments=len(annotations), report=report)

    def _encode(self, segment: Segment) -> tuple[Any, Mask]:
        """The segmentation to write and the mask it stands for (polygons lose holes and specks)."""
        if self.segmentation == "polygon" and not segment.iscrowd and not segment.mask.is_empty:
            parts = polygons.mask_to_polygons(segment.mask, tolerance=self.polygon_tolerance).polygons
            if parts:
                return parts, polygons.coco_to_mask(parts, segment.mask.height, segment.mask.width)
        return coco_rle.encode(segment.mask), segment.mask


def _where(segment: Segment) -> dict[str, Any]:
    return {key: value for key, value in segment.origin.where().items() if value is not None}
