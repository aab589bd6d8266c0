"""The one in-memory model every format reads into and writes from. It knows no format."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from converters.mask import Mask


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    isthing: bool = True
    color: tuple[int, int, int] | None = None
    supercategory: str = ""


@dataclass(frozen=True)
class Origin:
    """Where a segment came from, so errors and QA findings can name the exact region to fix."""

    file: str | None = None
    task_id: Any = None
    annotation_id: Any = None
    region_id: Any = None
    # Position of the region in its source (Label Studio paints later regions over earlier ones).
    order: int = 0

    def where(self) -> dict[str, Any]:
        """The location fields, as SegassistError.at() and QA findings take them."""
        return {
            "file": self.file,
            "task_id": self.task_id,
            "annotation_id": self.annotation_id,
            "region_id": self.region_id,
        }


@dataclass
class Segment:
    mask: Mask
    category_id: int
    iscrowd: bool = False
    score: float | None = None
    origin: Origin = field(default_factory=Origin)
    # An id the source gave the segment (COCO annotation id, panoptic segment id); writers may renumber.
    id: int | None = None

    @staticmethod
    def union(parts: Sequence[Segment]) -> Segment:
        """Disjoint segments as one, with the first part's category: the union of their masks, scored with
        the area-weighted mean of the parts' scores (None when no part has one)."""
        scored = [(part.score, part.mask.area) for part in parts if part.score is not None]
        weight = sum(area for _, area in scored)
        return Segment(
            mask=functools.reduce(Mask.union, (part.mask for part in parts)),
            category_id=parts[0].category_id,
            score=sum(score * area for score, area in scored) / weight if weight else None,
        )


@dataclass
class ImageRecord:
    id: int
    file_name: str
    width: int
    height: int
    segments: list[Segment] = field(default_factory=list)
    # Format-specific facts a writer may carry through (the Label Studio task's data, COCO image extras ...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    """Categories plus images. `images` may be a one-shot iterator: readers stream large inputs."""

    categories: list[Category]
    images: Iterable[ImageRecord]
    info: dict[str, Any] = field(default_factory=dict)

    def category(self, category_id: int) -> Category:
        for category in self.categories:
            if category.id == category_id:
                return category
        raise KeyError(category_id)

    def iter_images(self) -> Iterator[ImageRecord]:
        return iter(self.images)
