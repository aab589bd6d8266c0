"""COCO panoptic (JSON + one RGB PNG of segment ids per image) ⇄ the model.

A dataset is named by its JSON file; its PNG folder is the JSON path without `.json` (COCO's layout) unless
`png_dir` says otherwise. PNG ids are R + 256·G + 256²·B, 0 is void. Reading checks that the PNG and
`segments_info` agree. Writing makes the segments exclusive with the overlap policy, merges stuff into one
segment per category, numbers segments 1, 2, ... per image (deterministic, unique, never 0) and takes every
area and bbox from the pixels written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from converters.errors import SegassistError
from converters.formats.coco_json import (
    finish_coco_json,
    image_entry,
    parse_iscrowd,
    read_categories,
    read_document,
)
from converters.formats.common import Options, OverlapOptions, Rendered, exclusive_segments, with_colors
from converters.formats.label_map import PNG_PARAMS, masks_from_label_map, png_name
from converters.id_png import decode_ids
from converters.io import JsonArrayWriter, Outputs, inside
from converters.mask import Mask
from converters.model import Category, ImageRecord, Origin, Segment

MAX_SEGMENT_ID = 2**24 - 1


def png_folder(json_path: Path, png_dir: Path | None) -> Path:
    return Path(png_dir) if png_dir else Path(json_path).with_suffix("")


class CocoPanopticSource:
    """A COCO panoptic JSON plus its PNG folder; items are (image entry, panoptic annotation)."""

    def __init__(self, path: Path, options: Options) -> None:
        self.path = Path(path)
        self.png_dir = png_folder(self.path, options.png_dir)
        document = read_document(self.path)
        document.check_shape()
        self.categories = read_categories(document)
        self._images = {entry.get("id"): entry for entry in document.images}
        self._annotations = document.annotations
        if self._annotations and "segments_info" not in self._annotations[0]:
            raise SegassistError(
                "this is not a COCO panoptic file (annotations have no segments_info)", file=str(path)
            )

    def items(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        for annotation in self._annotations:
            entry = self._images.get(annotation.get("image_id"))
            if entry is None:
                raise SegassistError(
                    f"annotation for image {annotation.get('image_id')!r}, which is not in `images`",
                    file=str(self.path),
                )
            yield entry, annotation

    def where(self, item: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        return {"file": str(self.path), "image_id": item[1].get("image_id")}

    def load(self, item: tuple[dict[str, Any], dict[str, Any]]) -> ImageRecord:
        ids = self.load_id_map(item)
        masks = masks_from_label_map(ids.id_map)
        ids.check_present(masks)
        segments = [
            Segment(
                mask=masks[info.id],
                category_id=info.category_id,
                iscrowd=info.iscrowd,
                origin=Origin(file=str(self.path), region_id=info.id, order=position),
                id=info.id,
            )
            for position, info in enumerate(ids.segments)
        ]
        image = ids.image
        return ImageRecord(image.id, image.file_name, image.width, image.height, segments)

    def load_id_map(self, item: tuple[dict[str, Any], dict[str, Any]]) -> IdMapImage:
        """The image with its PNG's id map and its checked segments_info, no masks: for work on the id map
        itself (eval). The caller checks the ids present in the map with `check_present`."""
        entry, annotation = item
        image_id, file_name, width, height = image_entry(entry, str(self.path))
        png_path = inside(self.png_dir, annotation.get("file_name") or png_name(file_name))
        id_map = read_id_png(png_path, width, height)
        category_ids = {category.id for category in self.categories}
        infos: dict[int, SegmentInfo] = {}
        for info in annotation.get("segments_info") or []:
            segment_id = info.get("id")
            try:
                if segment_id in infos:
                    raise SegassistError("segment id is listed twice in segments_info")
                if info.get("category_id") not in category_ids:
                    raise SegassistError(f"unknown category_id {info.get('category_id')!r}")
                iscrowd = parse_iscrowd(info.get("iscrowd", 0))
            except SegassistError as error:
                raise error.at(file=str(png_path), image_id=image_id, region_id=segment_id) from None
            infos[segment_id] = SegmentInfo(segment_id, int(info["category_id"]), iscrowd)
        image = ImageRecord(image_id, file_name, width, height)
        return IdMapImage(image, list(infos.values()), id_map, png_path)


class SegmentInfo(NamedTuple):  # a tuple: eval builds hundreds per image
    id: int
    category_id: int
    iscrowd: bool


@dataclass
class IdMapImage:
    """A panoptic image as read: the image (without segments), its segments_info in order, its id map."""

    image: ImageRecord
    segments: list[SegmentInfo]
    id_map: np.ndarray
    png_path: Path

    def check_present(self, present: Iterable[int]) -> None:
        """Every listed segment has pixels and every non-void id in the map is listed (`present`: the ids
        found in the map, void included or not)."""
        present = set(present) - {0}
        listed = {info.id for info in self.segments}
        where = {"file": str(self.png_path), "image_id": self.image.id}
        for info in self.segments:
            if info.id not in present:
                raise SegassistError(
                    "segment is listed in segments_info but has no pixels in the PNG",
                    **where,
                    region_id=info.id,
                )
        unlisted = sorted(present - listed)
        if unlisted:
            raise SegassistError(
                f"PNG holds segment ids that segments_info does not list: {unlisted[:10]}", **where
            )


@dataclass
class PngRead:
    """An id map, or why there is none."""

    id_map: np.ndarray | None
    mode: str | None = None
    alpha_pixels: int = 0
    missing: bool = False
    error: str | None = None


def read_id_map(path: Path) -> PngRead:
    """A panoptic PNG as uint32 ids; palette, grey and 16-bit PNGs give none (panopticapi fails on them).

    8-bit RGB/RGBA PNGs go through the fast id decoder (converters.id_png). Others: Pillow reads the header
    (the mode); OpenCV decodes the pixels, and its 4-byte RGBA layout read as little-endian uint32 is
    R + 256·G + 256²·B + 256³·A in one step.
    """
    if not path.is_file():
        return PngRead(None, missing=True)
    try:
        fast = decode_ids(path.read_bytes())
    except OSError as error:
        return PngRead(None, error=str(error))
    if fast is not None:
        ids, mode, translucent = fast
        return PngRead(ids, mode=mode, alpha_pixels=translucent)
    try:
        with Image.open(path) as image:
            mode = image.mode
    except (OSError, UnidentifiedImageError) as error:
        return PngRead(None, error=str(error))
    if mode not in ("RGB", "RGBA"):
        return PngRead(None, mode=mode)
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint8:
        return PngRead(None, mode=mode, error="OpenCV cannot decode it as 8-bit colour")
    rgba = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGBA)
    alpha = int(np.count_nonzero(rgba[..., 3] != 255)) if mode == "RGBA" else 0
    ids = rgba.view("<u4")[..., 0]
    ids &= 0xFFFFFF
    return PngRead(ids, mode=mode, alpha_pixels=alpha)


def read_id_png(path: Path, width: int, height: int) -> np.ndarray:
    """The segment-id map (uint32) of a panoptic PNG, checked against the image size."""
    read = read_id_map(path)
    if read.missing:
        raise SegassistError("the panoptic PNG does not exist", file=str(path))
    if read.error is not None:
        raise SegassistError(f"cannot read the panoptic PNG: {read.error}", file=str(path))
    if read.id_map is None:
        raise SegassistError(f"panoptic PNG must be 8-bit RGB, got mode {read.mode}", file=str(path))
    if read.id_map.shape != (height, width):
        rows, cols = read.id_map.shape
        raise SegassistError(
            f"panoptic PNG is {cols}x{rows} but the image entry says {width}x{height}", file=str(path)
        )
    return read.id_map


@dataclass(frozen=True)
class SegmentInfoFacts:
    """One `segments_info` entry as written: QA judges the PNG's pixels against it."""

    id: Any
    category_id: Any
    iscrowd: Any
    area: Any
    bbox: Any


@dataclass
class PanopticImageRead:
    """One panoptic annotation read tolerantly, for QA, where nothing is refused.

    `image` is the image as its `images` entry declares it (None when the annotation names no listed image);
    values are kept as written, since QA reports the malformed ones. The segments are the PNG's id map as
    read (`png`: the map, or why there is none), which QA measures in one pass, never one mask per segment;
    `segments` are the facts of the `segments_info` entries that are objects (`malformed_entries` counts
    the others)."""

    file: str
    image_id: Any
    # The PNG's name as the annotation writes it, and its path in the PNG folder.
    png_name: str
    png_path: Path
    image: ImageRecord | None
    segments: list[SegmentInfoFacts]
    malformed_entries: int
    png: PngRead


def read_annotation_tolerantly(
    file: str, annotation: dict[str, Any], entry: dict[str, Any] | None, png_dir: Path
) -> PanopticImageRead:
    """An annotation with a string file_name and a segments_info list, its image entry (None when not
    listed) and the PNG folder, as the facts QA judges and the id map."""
    infos = annotation["segments_info"]
    facts = [
        SegmentInfoFacts(
            info.get("id"),
            info.get("category_id"),
            info.get("iscrowd", 0),
            info.get("area"),
            info.get("bbox"),
        )
        for info in infos
        if isinstance(info, dict)
    ]
    image = None
    if entry is not None:
        image = ImageRecord(entry.get("id"), entry.get("file_name"), entry.get("width"), entry.get("height"))
    image_id = annotation.get("image_id")
    png_path = inside(png_dir, annotation["file_name"], image_id=image_id)
    return PanopticImageRead(
        file,
        image_id,
        annotation["file_name"],
        png_path,
        image,
        facts,
        len(infos) - len(facts),
        read_id_map(png_path),
    )


class PanopticPayload(NamedTuple):
    """One image's entry, its panoptic annotation and the PNG bytes of its segment ids."""

    image: dict[str, Any]
    annotation: dict[str, Any]
    png: bytes


class CocoPanopticSink:
    """Writes PNGs into a reserved temporary folder and the JSON in parts (committed together)."""

    def __init__(self, output: Path, categories: list[Category], options: Options, outputs: Outputs) -> None:
        self.output = Path(output)
        self.png_dir = png_folder(self.output, options.png_dir)
        self.categories = with_colors(categories)
        self.renderer = CocoPanopticRenderer(categories, options)
        self._json = JsonArrayWriter(outputs, self.output, ("images", "annotations"))
        self._png_temp = outputs.folder(self.png_dir)
        self._png_names: set[str] = set()

    def write(self, rendered: Rendered[PanopticPayload]) -> None:
        image, annotation, png = rendered.payload
        if annotation["file_name"] in self._png_names:
            raise SegassistError(
                f"two images would share the PNG {annotation['file_name']!r} (same file name stem)",
                image_id=image["id"],
            )
        self._png_names.add(annotation["file_name"])
        inside(self._png_temp, annotation["file_name"]).write_bytes(png)  # --fix passes the input's names
        self._json.append("images", image)
        self._json.append("annotations", annotation)

    def finish(self) -> None:
        finish_coco_json(self._json, self.categories)


class CocoPanopticRenderer:
    """One image's PNG and segments_info (picklable; runs in worker processes)."""

    def __init__(self, categories: list[Category], options: Options) -> None:
        self.categories = categories
        self.isthing = {category.id: category.isthing for category in categories}
        self.overlap = OverlapOptions.of(options)

    def render(self, image: ImageRecord) -> Rendered[PanopticPayload]:
        kept, report = exclusive_segments(image, self.categories, self.overlap)
        segments = self._merge_stuff(kept)
        if len(segments) > MAX_SEGMENT_ID:
            raise SegassistError(f"{len(segments)} segments do not fit in a 24-bit panoptic PNG")
        ids = np.zeros((image.height, image.width), dtype=np.uint32)
        segments_info = []
        for segment_id, (category_id, iscrowd, parts) in enumerate(segments, start=1):
            for mask in parts:
                mask.paste_into(ids, segment_id)
            segments_info.append(
                {
                    "id": segment_id,
                    "category_id": category_id,
                    "iscrowd": int(iscrowd),
                    "bbox": _envelope([mask.bbox for mask in parts]),
                    # The parts are disjoint after overlap resolution, so their areas add up.
                    "area": sum(mask.area for mask in parts),
                }
            )
        name = png_name(image.file_name)
        entry = {"id": image.id, "file_name": image.file_name, "width": image.width, "height": image.height}
        annotation = {"image_id": image.id, "file_name": name, "segments_info": segments_info}
        changes = {"overlap": report.to_dict()} if report.changes else {}
        payload = PanopticPayload(entry, annotation, encode_id_png(ids))
        return Rendered(image.id, payload, len(segments_info), changes)

    def _merge_stuff(self, segments: list[Segment]) -> list[tuple[int, bool, list[Mask]]]:
        """(category, iscrowd, masks) in input order; all stuff of a category is one segment."""
        merged: list[tuple[int, bool, list[Mask]]] = []
        stuff_parts: dict[int, list[Mask]] = {}
        for segment in segments:
            if self.isthing[segment.category_id]:
                merged.append((segment.category_id, segment.iscrowd, [segment.mask]))
            elif segment.category_id in stuff_parts:
                stuff_parts[segment.category_id].append(segment.mask)
            else:
                stuff_parts[segment.category_id] = [segment.mask]
                merged.append((segment.category_id, False, stuff_parts[segment.category_id]))
        return merged


def _envelope(boxes: list[tuple[int, int, int, int]]) -> list[int]:
    """The tight [x, y, w, h] around several tight boxes."""
    left = min(x for x, _, _, _ in boxes)
    top = min(y for _, y, _, _ in boxes)
    right = max(x + w for x, _, w, _ in boxes)
    bottom = max(y + h for _, y, _, h in boxes)
    return [left, top, right - left, bottom - top]


def encode_id_png(ids: np.ndarray) -> bytes:
    """PNG bytes of a uint32 id map; little-endian uint32 bytes are already R, G, B (+ an unused 4th)."""
    rgba = ids.astype("<u4", copy=False).view(np.uint8).reshape(*ids.shape, 4)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR), PNG_PARAMS)
    if not ok:
        raise SegassistError("PNG encoding failed")
    return png.tobytes()
