"""What every format shares: conversion options, the reader/writer protocol, category files.

A reader is a `Source`: its categories, an iterator of raw items (one per image, picklable, cheap) and a
`load(item) -> ImageRecord | None` (None: nothing to convert, e.g. an unlabeled task). A writer is a `Sink`:
a picklable `renderer` whose `render(image) -> Rendered` does the heavy work (overlap resolution, encoding),
and `write(rendered)`, `finish()` in the main process. Sources and renderers are picklable because `load` and
`render` run in worker processes. A sink reserves its outputs in the command's `converters.io.Outputs` when it
is made and writes into their temporary paths; the command commits them (or drops them on an error).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from PIL import Image

from converters import naming, overlap
from converters.errors import SegassistError
from converters.io import parse_json
from converters.model import Category, ImageRecord, Segment


@dataclass(frozen=True)
class Options:
    """Every option of a conversion, as the command takes them. Each format keeps only its own part
    (`OverlapOptions`, `LabelStudioReading`, `LabelStudioWriting`, a COCO writer's segmentation ...), taken
    from these when its reader or writer is made, so what travels to the workers is that part alone."""

    categories_file: Path | None = None
    label_config: Path | None = None
    annotations: str = "latest"  # all | latest | ground-truth
    predictions: bool = False
    alpha_threshold: int = 128
    overlap: str = "error"
    things_over_stuff: bool = False
    min_area: int = 0
    min_kept_fraction: float = 0.0
    segmentation: str = "rle"  # rle | polygon (COCO instance and Label Studio output)
    polygon_tolerance: float = 1.0
    images: Path | None = None
    png_dir: Path | None = None
    write_predictions: bool = False  # Label Studio output: predictions instead of annotations
    model_version: str = "segassist"
    from_name: str | None = None
    to_name: str | None = None
    image_root: str | None = None  # Label Studio output: URL or prefix joined to file names in task data


P = TypeVar("P")


@dataclass(frozen=True)
class OverlapOptions:
    """How a writer that allows one segment per pixel (panoptic, semantic) makes the segments exclusive."""

    policy: str = "error"
    things_over_stuff: bool = False
    min_area: int = 0
    min_kept_fraction: float = 0.0

    @classmethod
    def of(cls, options: Options) -> OverlapOptions:
        return cls(options.overlap, options.things_over_stuff, options.min_area, options.min_kept_fraction)


@dataclass
class Rendered(Generic[P]):
    """A writer's output for one image, made in a worker: the payload (each format's own type: what its sink
    writes) plus report entries."""

    image_id: Any
    payload: P
    segments: int = 0
    report: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    categories: list[Category]

    def items(self) -> Iterator[Any]: ...

    def load(self, item: Any) -> ImageRecord | None: ...

    def where(self, item: Any) -> dict[str, Any]: ...


class Renderer(Protocol):
    def render(self, image: ImageRecord) -> Rendered: ...


class Sink(Protocol):
    renderer: Renderer

    def write(self, rendered: Rendered) -> None: ...

    def finish(self) -> None:
        """Complete the reserved temporary outputs (the command then commits them)."""
        ...


# -- categories ----------------------------------------------------------------------------------------------


def category_from_dict(entry: dict[str, Any]) -> Category:
    color = entry.get("color")
    if isinstance(color, str):  # "#rrggbb", as Label Studio and BRUSH_TO_COCO write it
        color = tuple(int(color.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
    return Category(
        id=int(entry["id"]),
        name=str(entry["name"]),
        isthing=bool(int(entry.get("isthing", 1))),
        color=tuple(int(c) for c in color) if color else None,
        supercategory=str(entry.get("supercategory") or ""),
    )


def category_to_dict(category: Category) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": category.id,
        "name": category.name,
        "supercategory": category.supercategory,
        "isthing": int(category.isthing),
    }
    if category.color is not None:
        entry["color"] = list(category.color)
    return entry


def with_colors(categories: list[Category]) -> list[Category]:
    """The categories, each without a colour given a distinct deterministic one (panoptic files need one)."""
    taken = {category.color for category in categories if category.color is not None}
    colored = []
    for category in categories:
        color, attempt = category.color, 0
        while color is None or (category.color is None and color in taken):
            # A hash of (id, attempt) spreads colours over the RGB cube; retry on the rare collision.
            digest = hashlib.sha1(f"{category.id}:{attempt}".encode()).digest()
            color = (digest[0], digest[1], digest[2])
            attempt += 1
        taken.add(color)
        colored.append(dataclasses.replace(category, color=color))
    return colored


def read_categories_file(path: Path) -> list[Category]:
    """A COCO-style category list (a JSON list, or an object with `categories`), not empty."""
    where = {"file": str(path)}
    try:
        data = parse_json(Path(path).read_bytes())
    except OSError as error:
        raise SegassistError(f"cannot read the category list: {error.strerror or error}", **where) from None
    except ValueError as error:
        raise SegassistError(f"cannot read the category list: {error}", **where) from None
    entries = data.get("categories") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise SegassistError(
            "a category list is a non-empty JSON list of categories, or an object with one as `categories`",
            **where,
        )
    categories = []
    for position, entry in enumerate(entries):
        try:
            categories.append(category_from_dict(entry))
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            reason = f"it has no {error}" if isinstance(error, KeyError) else str(error)
            raise SegassistError(
                f"category {naming.position_ref(position)} ({entry!r:.60}) cannot be read: {reason}", **where
            ) from None
    check_categories(categories, str(path))
    return categories


def check_categories(categories: list[Category], file: str | None) -> None:
    ids = [category.id for category in categories]
    if len(set(ids)) != len(ids):
        raise SegassistError("category ids are not unique", file=file)
    names = [category.name for category in categories]
    if len(set(names)) != len(names):
        raise SegassistError("category names are not unique", file=file)


def exclusive_segments(
    image: ImageRecord, categories: list[Category], options: OverlapOptions
) -> tuple[list[Segment], overlap.OverlapReport]:
    """The image's segments made non-overlapping by the options' policy, for writers that need one owner
    per pixel (panoptic, semantic); a segment of an unknown category is an error naming its region."""
    known = {category.id for category in categories}
    for segment in image.segments:
        if segment.category_id not in known:
            raise SegassistError(
                f"segment has category {segment.category_id}, which is not among the categories",
                **segment.origin.where(),
            )
    return overlap.resolve(
        image.segments,
        options.policy,
        categories=categories,
        things_over_stuff=options.things_over_stuff,
        min_kept_fraction=options.min_kept_fraction,
        min_area=options.min_area,
    )


# -- images --------------------------------------------------------------------------------------------------

# EXIF orientations that swap width and height (the browser and Label Studio show the image turned).
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}


def image_file_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file as a browser shows it (EXIF orientation applied); header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except OSError as error:
        raise SegassistError(f"cannot read the image size: {error}", file=str(path)) from None
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)
