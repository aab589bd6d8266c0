"""Semantic label maps: a folder with one single-channel PNG per image and the mapping file `labelmap.json`.

Pixel value 0 is void (unlabeled); category k of the mapping (categories in id order) has value k + 1.
PNGs are uint8 up to 255 categories and uint16 beyond. The mapping lists the classes (value, id, name,
isthing, color) and the images (id, file name, size, PNG name), so a semantic folder converts back.
Semantic maps hold one segment per class per image: instances of a class merge (an instance format read
back gets one per class).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from converters.errors import SegassistError
from converters.formats.common import (
    Options,
    OverlapOptions,
    Rendered,
    category_from_dict,
    category_to_dict,
    check_categories,
    exclusive_segments,
    with_colors,
)
from converters.formats.label_map import PNG_PARAMS, masks_from_label_map, paint_label_map, png_name
from converters.io import Outputs, inside, parse_json
from converters.model import Category, ImageRecord, Origin, Segment

MAPPING_FILE = "labelmap.json"
VOID = 0


def label_dtype(category_count: int) -> type:
    return np.uint8 if category_count <= 255 else np.uint16


def dataset_folder(path: Path) -> Path:
    """The semantic dataset's folder, given the folder itself or its mapping file."""
    path = Path(path)
    return path.parent if path.is_file() else path


def read_mapping(folder: Path) -> Any:
    """The one read of a semantic folder's mapping file (any JSON value: the caller checks its shape)."""
    mapping_path = folder / MAPPING_FILE
    try:
        return parse_json(mapping_path.read_bytes())
    except OSError as error:
        reason = error.strerror or error
        raise SegassistError(
            f"cannot read the semantic mapping file: {reason}", file=str(mapping_path)
        ) from None
    except ValueError as error:
        raise SegassistError(
            f"cannot read the semantic mapping file: {error}", file=str(mapping_path)
        ) from None


def read_label_map(path: Path) -> np.ndarray | None:
    """A label map PNG as stored (any channel count and depth); None when it cannot be read."""
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@dataclass
class LabelMapRead:
    """One image entry of the mapping file and its label map, read tolerantly for QA (nothing is refused):
    the image as the entry declares it (values as written, QA reports the malformed ones), the PNG's path,
    and its pixels as stored (None when the file is missing or cannot be read). The map is the image's
    segments, one per value, which QA counts in one pass rather than as one mask per class."""

    image: ImageRecord
    png_path: Path
    missing: bool
    label_map: np.ndarray | None


def read_label_map_tolerantly(entry: dict[str, Any], png_path: Path) -> LabelMapRead:
    """An image entry of the mapping file, with its label map's path already resolved inside the folder."""
    image = ImageRecord(entry.get("id"), entry.get("file_name"), entry.get("width"), entry.get("height"))
    if not png_path.is_file():
        return LabelMapRead(image, png_path, True, None)
    return LabelMapRead(image, png_path, False, read_label_map(png_path))


class SemanticSource:
    """A semantic folder (or its mapping file); items are the mapping's image entries."""

    def __init__(self, path: Path, options: Options) -> None:
        self.folder = dataset_folder(path)
        mapping_path = self.folder / MAPPING_FILE
        mapping = read_mapping(self.folder)
        try:
            self.void = int(mapping.get("void", VOID))
            classes = mapping["classes"]
            self.categories = [category_from_dict(entry) for entry in classes]
            self.values = {int(entry["value"]): int(entry["id"]) for entry in classes}
            self._images = list(mapping["images"])
        except (AttributeError, ValueError, KeyError, TypeError) as error:
            raise SegassistError(
                f"cannot read the semantic mapping file: {error!r}", file=str(mapping_path)
            ) from None
        check_categories(self.categories, str(mapping_path))

    def items(self) -> Iterator[dict[str, Any]]:
        yield from self._images

    def where(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"file": str(self.folder / str(item.get("label_map"))), "image_id": item.get("id")}

    def load(self, item: dict[str, Any]) -> ImageRecord:
        png_path = inside(self.folder, item.get("label_map"))
        width, height = int(item["width"]), int(item["height"])
        label_map = read_label_map(png_path)
        if label_map is None:
            raise SegassistError("cannot read the label map PNG", file=str(png_path))
        if label_map.ndim != 2:
            raise SegassistError(
                f"a label map must be single-channel, got shape {label_map.shape}", file=str(png_path)
            )
        if label_map.shape != (height, width):
            raise SegassistError(
                f"label map is {label_map.shape[1]}x{label_map.shape[0]}, the mapping says {width}x{height}",
                file=str(png_path),
            )
        segments = []
        for order, (value, mask) in enumerate(
            sorted(masks_from_label_map(label_map, void=self.void).items())
        ):
            if value not in self.values:
                raise SegassistError(
                    f"pixel value {value} is not in the mapping's classes", file=str(png_path)
                )
            origin = Origin(file=str(png_path), region_id=f"value-{value}", order=order)
            segments.append(Segment(mask=mask, category_id=self.values[value], origin=origin))
        return ImageRecord(int(item["id"]), str(item["file_name"]), width, height, segments)


class SemanticPayload(NamedTuple):
    """One image's entry in the mapping file and the PNG bytes of its label map."""

    entry: dict[str, Any]
    png: bytes


class SemanticSink:
    """Writes PNGs into a reserved temporary folder, then the mapping file (committed by the command)."""

    def __init__(self, output: Path, categories: list[Category], options: Options, outputs: Outputs) -> None:
        self.output = Path(output)
        self.categories = with_colors(sorted(categories, key=lambda category: category.id))
        self.renderer = SemanticRenderer(self.categories, options)
        self._temp = outputs.folder(self.output)
        self._images: list[dict[str, Any]] = []

    def write(self, rendered: Rendered[SemanticPayload]) -> None:
        entry, png = rendered.payload
        if (self._temp / entry["label_map"]).exists():
            raise SegassistError(
                f"two images would share the label map {entry['label_map']!r} (same file name stem)",
                image_id=entry["id"],
            )
        (self._temp / entry["label_map"]).write_bytes(png)
        self._images.append(entry)

    def finish(self) -> None:
        mapping = {
            "void": VOID,
            "dtype": np.dtype(label_dtype(len(self.categories))).name,
            "classes": [
                {"value": value, **category_to_dict(category)}
                for value, category in enumerate(self.categories, start=1)
            ],
            "images": self._images,
        }
        (self._temp / MAPPING_FILE).write_text(json.dumps(mapping, indent=1) + "\n")


class SemanticRenderer:
    """One image's label map PNG (picklable; runs in worker processes)."""

    def __init__(self, categories: list[Category], options: Options) -> None:
        self.categories = categories
        self.values = {category.id: value for value, category in enumerate(categories, start=1)}
        self.dtype = label_dtype(len(categories))
        self.overlap = OverlapOptions.of(options)

    def render(self, image: ImageRecord) -> Rendered[SemanticPayload]:
        kept, report = exclusive_segments(image, self.categories, self.overlap)
        label_map = paint_label_map(
            [segment.mask for segment in kept],
            [self.values[segment.category_id] for segment in kept],
            image.height,
            image.width,
            self.dtype,
        )
        ok, png = cv2.imencode(".png", label_map, PNG_PARAMS)
        if not ok:
            raise SegassistError("PNG encoding failed", image_id=image.id)
        entry = {
            "id": image.id,
            "file_name": image.file_name,
            "width": image.width,
            "height": image.height,
            "label_map": png_name(image.file_name),
        }
        changes = {"overlap": report.to_dict()} if report.changes else {}
        # What the map holds: one segment per class present (instances of a class merge into it).
        written = len({segment.category_id for segment in kept if not segment.mask.is_empty})
        return Rendered(image.id, SemanticPayload(entry, png.tobytes()), written, changes)
