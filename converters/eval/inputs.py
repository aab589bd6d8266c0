"""The two sides of an evaluation: read through the format readers, categories matched by name, images paired.

Each side is a format reader (`Source`). Its images come out as `Entry`s: the pairing key is known first, the
pixels are loaded only when the image is evaluated (in a worker thread):
- a COCO panoptic image loads as its PNG's id map (`load_id_map`: no per-segment masks at all);
- any other image loads through the reader as segments, and becomes an id map by painting its segments once,
  with the overlap policy deciding who owns a pixel two segments claim.
Images are paired by id when both sides are COCO files, by file name otherwise. Pairing merges the two
streams in order; an image whose partner comes later waits in a small buffer (the usual case, both sides in
the same order, keeps nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ijson
import numpy as np

from converters import overlap
from converters.errors import SegassistError
from converters.eval.core import BACKGROUND, VOID, IdImage
from converters.formats.coco_json import image_entry
from converters.formats.common import Options
from converters.formats.label_map import paint_label_map
from converters.model import Category, ImageRecord, Segment
from converters.qa.run import detect_format
from converters.registry import FORMATS

COCO_RESULTS = "coco-results"  # a detector's results list: PRED only, images and categories from GT
COCO_FAMILY = ("coco", "coco-panoptic", COCO_RESULTS)
# The metrics each format can feed; the default metrics are those both sides fit.
FITS: dict[str, tuple[str, ...]] = {
    "coco-panoptic": ("pq", "miou"),
    "coco": ("pq", "ap", "miou"),
    "labelstudio": ("pq", "ap", "miou"),
    "semantic": ("miou",),
    COCO_RESULTS: ("ap",),
}


# Formats whose unlabelled pixels mean "nothing there" (COCO panoptic and semantic maps mark void explicitly).
UNLABELLED_IS_BACKGROUND = ("labelstudio", "coco")


def detect(path: Path) -> str:
    """QA's format detection, plus the detector results list (a JSON list whose items name an image_id)."""
    found = detect_format(path)
    if found == "labelstudio":
        with path.open("rb") as handle:
            first = next(ijson.items(handle, "item"), None)
        if isinstance(first, dict) and "image_id" in first and "category_id" in first:
            return COCO_RESULTS
    return found


@dataclass
class Entry:
    """One image of one side: its pairing facts now, its pixels on demand."""

    image_id: Any
    file_name: str
    width: int | None
    height: int | None
    where: dict[str, Any]
    item: Any = None  # the reader's item, loaded when the image is evaluated
    loaded: ImageRecord | None = None  # for readers that must load an image to know its name


@dataclass
class Side:
    role: str  # "GT" or "PRED"
    format: str
    path: Path
    source: Any  # the format's reader (a Source); None for a results list
    categories: list[Category]
    overlap: str = "order"
    # this side's category id -> the GT's category id (None: left out by the category map)
    to_gt: dict[int, int | None] = field(default_factory=dict)
    gt_categories: list[Category] = field(default_factory=list)
    results: list[dict[str, Any]] | None = None

    def entries(self) -> Iterator[Entry]:
        source = self.source
        if self.format in ("coco", "coco-panoptic"):
            for item in source.items():
                image_id, file_name, width, height = image_entry(item[0], str(self.path))
                yield Entry(image_id, file_name, width, height, source.where(item), item=item)
            return
        for item in source.items():
            try:
                record = source.load(item)
            except SegassistError as error:
                raise error.at(**source.where(item)) from None
            if record is not None:
                where = source.where(item)
                yield Entry(record.id, record.file_name, record.width, record.height, where, loaded=record)

    def id_image(self, entry: Entry) -> IdImage:
        """The image as an id map whose segments carry GT category ids."""
        if self.format == "coco-panoptic":
            read = self.source.load_id_map(entry.item)
            segments = {
                info.id: (self.to_gt[info.category_id], info.iscrowd)
                for info in read.segments
                if self.to_gt[info.category_id] is not None
            }
            return IdImage(read.id_map, segments, check_present=read.check_present)
        return self.rasterise(self.record(entry))

    def record(self, entry: Entry) -> ImageRecord:
        """The image's segments as read, with GT category ids."""
        try:
            return self.translate(entry.loaded or self.source.load(entry.item))
        except SegassistError as error:
            raise error.at(**entry.where) from None

    def translate(self, record: ImageRecord) -> ImageRecord:
        """The record with GT category ids; segments the category map leaves out are removed."""
        segments = [
            _with_category(segment, self.to_gt[segment.category_id])
            for segment in record.segments
            if self.to_gt.get(segment.category_id) is not None
        ]
        return ImageRecord(record.id, record.file_name, record.width, record.height, segments, record.extra)

    def rasterise(self, record: ImageRecord) -> IdImage:
        """Paint the segments once into an id map (ids 1, 2, ... in input order); overlaps by the policy."""
        try:
            kept, _ = overlap.resolve(record.segments, self.overlap, categories=self.gt_categories)
        except SegassistError as error:
            raise error.at(image_id=record.id, file=str(self.path)) from None
        ids = paint_label_map(
            [segment.mask for segment in kept],
            list(range(1, len(kept) + 1)),
            record.height,
            record.width,
            np.uint32,
        )
        if self.format in UNLABELLED_IS_BACKGROUND:
            ids[ids == VOID] = BACKGROUND
        return IdImage(ids, {i: (s.category_id, s.iscrowd) for i, s in enumerate(kept, start=1)})


def _with_category(segment: Segment, category_id: int) -> Segment:
    if segment.category_id == category_id:
        return segment
    return Segment(segment.mask, category_id, segment.iscrowd, segment.score, segment.origin, segment.id)


def open_side(role: str, path: Path, fmt: str | None, options: Options) -> Side:
    path = Path(path)
    if not path.exists():
        raise SegassistError(f"{role} does not exist", file=str(path))
    fmt = fmt or detect(path)
    if fmt == COCO_RESULTS:
        if role == "GT":
            raise SegassistError("a detector results list can only be PRED", file=str(path))
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise SegassistError(f"cannot read the results file: {error}", file=str(path)) from None
        return Side(role, fmt, path, None, [], results=results)
    if fmt not in FORMATS:
        raise SegassistError(f"unknown {role} format {fmt!r}; known: {', '.join([*FORMATS, COCO_RESULTS])}")
    source = FORMATS[fmt].reader(path, options)
    return Side(role, fmt, path, source, list(source.categories), overlap=options.overlap)


# -- categories ----------------------------------------------------------------------------------------------


def match_categories(gt: Side, pred: Side, category_map: Path | None) -> None:
    """Fill both sides' `to_gt`: categories are matched by name. Without a map the two sides must list the
    same names; the map (a JSON object, PRED name -> GT name or null to leave the category out) renames PRED's
    categories first, and then GT may hold categories PRED lacks."""
    gt.to_gt = {category.id: category.id for category in gt.categories}
    gt.gt_categories = pred.gt_categories = gt.categories
    if pred.format == COCO_RESULTS:  # a results list uses the GT's category ids
        return
    mapping = _read_category_map(category_map) if category_map else {}
    gt_ids = {category.name: category.id for category in gt.categories}
    unknown_in_map = sorted(set(mapping) - {category.name for category in pred.categories})
    if unknown_in_map:
        raise SegassistError(
            f"the category map names PRED categories that PRED does not have: {unknown_in_map}",
            file=str(category_map),
        )
    renamed = {category.id: mapping.get(category.name, category.name) for category in pred.categories}
    missing_targets = sorted({name for name in renamed.values() if name is not None and name not in gt_ids})
    only_gt = sorted(set(gt_ids) - set(renamed.values()))
    if missing_targets or (only_gt and not category_map):
        lines = []
        if missing_targets:
            lines.append(f"only in PRED: {missing_targets}")
        if only_gt and not category_map:
            lines.append(f"only in GT: {only_gt}")
        hint = (
            "" if category_map else " (pass --category-map FILE: a JSON object, PRED name -> GT name or null)"
        )
        raise SegassistError("the two sides' categories differ: " + "; ".join(lines) + hint)
    pred.to_gt = {pred_id: (gt_ids[name] if name is not None else None) for pred_id, name in renamed.items()}


def _read_category_map(path: Path) -> dict[str, str | None]:
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SegassistError(f"cannot read the category map: {error}", file=str(path)) from None
    if not isinstance(mapping, dict) or not all(v is None or isinstance(v, str) for v in mapping.values()):
        raise SegassistError(
            "the category map must be a JSON object: PRED name -> GT name or null", file=str(path)
        )
    return mapping


# -- pairing -------------------------------------------------------------------------------------------------


@dataclass
class Unpaired:
    gt_only: list[Any] = field(default_factory=list)
    pred_only: list[Any] = field(default_factory=list)

    def check(self) -> None:
        if self.gt_only or self.pred_only:
            parts = []
            for role, keys in (("GT", self.gt_only), ("PRED", self.pred_only)):
                if keys:
                    shown = ", ".join(str(key) for key in keys[:20])
                    parts.append(f"{len(keys)} only in {role}: {shown}{' ...' if len(keys) > 20 else ''}")
            raise SegassistError("images found on one side only: " + "; ".join(parts))


def pair_entries(gt: Side, pred: Side, unpaired: Unpaired) -> Iterator[tuple[Any, Entry, Entry]]:
    """(key, GT entry, PRED entry) in GT order; images on one side only are added to `unpaired`."""
    by_id = gt.format in COCO_FAMILY and pred.format in COCO_FAMILY

    def key(entry: Entry) -> Any:
        return entry.image_id if by_id else entry.file_name

    waiting: dict[Any, Entry] = {}
    pred_entries = pred.entries()
    seen_gt: set[Any] = set()
    for gt_entry in gt.entries():
        wanted = key(gt_entry)
        if wanted in seen_gt:
            raise SegassistError(f"GT has two images with the {'id' if by_id else 'file name'} {wanted!r}")
        seen_gt.add(wanted)
        while wanted not in waiting:
            pred_entry = next(pred_entries, None)
            if pred_entry is None:
                break
            if key(pred_entry) in waiting:
                raise SegassistError(f"PRED has two images with the key {key(pred_entry)!r}")
            waiting[key(pred_entry)] = pred_entry
        if wanted in waiting:
            yield wanted, gt_entry, waiting.pop(wanted)
        else:
            unpaired.gt_only.append(wanted)
    for pred_entry in pred_entries:
        waiting[key(pred_entry)] = pred_entry
    unpaired.pred_only.extend(waiting)
