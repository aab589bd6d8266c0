"""Non-overlap enforcement: make the segments of one image exclusive under a named policy, and say what moved.

Policies (each combinable with `things_over_stuff`, which puts every thing above every stuff segment first):

- ``error``: refuse; the error lists every overlapping pair with its pixel count and where both came from.
- ``order``: the later region wins, as Label Studio paints them (Origin.order, then input position).
- ``score``: the higher score wins (a missing score counts as 0), as detectron2 and Mask2Former fuse.
- ``area``: the smaller segment wins (small objects are usually in front).

Resolution is greedy from the top segment down on one owner canvas per image (never one full-size array per
segment): each segment keeps its pixels nobody above it claimed. A segment left with fewer than
`min_kept_fraction` of its pixels or fewer than `min_area` pixels is dropped, and its pixels go to the
segments below it. Stuff segments may have thresholds of their own (`stuff_min_kept_fraction`,
`stuff_min_area`), as detectron2's panoptic fusion drops a thing by the share it keeps and a stuff region by
its area. Masks (hence area and bbox) are rebuilt from the kept pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.errors import SegassistError
from converters.mask import Mask, overlapping_pairs
from converters.model import Category, Origin, Segment

POLICIES = ("error", "order", "score", "area")


@dataclass
class SegmentChange:
    """What resolution did to one segment: pixels it lost (to which segment) or why it was dropped."""

    index: int
    origin: Origin
    category_id: int
    area_before: int
    area_after: int
    # (index of the segment that took the pixels, pixel count), in index order.
    lost_to: list[tuple[int, int]] = field(default_factory=list)
    dropped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            **{key: value for key, value in self.origin.where().items() if value is not None},
            "category_id": self.category_id,
            "area_before": self.area_before,
            "area_after": self.area_after,
            "pixels_moved": self.area_before - self.area_after,
            "lost_to": [{"index": winner, "pixels": pixels} for winner, pixels in self.lost_to],
            "dropped": self.dropped,
        }


@dataclass
class OverlapReport:
    """Per-image account of an overlap resolution; only segments that changed are listed."""

    policy: str
    segments_in: int = 0
    segments_kept: int = 0
    changes: list[SegmentChange] = field(default_factory=list)

    @property
    def pixels_moved(self) -> int:
        return sum(change.area_before - change.area_after for change in self.changes)

    @property
    def dropped(self) -> list[SegmentChange]:
        return [change for change in self.changes if change.dropped]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "segments_in": self.segments_in,
            "segments_kept": self.segments_kept,
            "pixels_moved": self.pixels_moved,
            "changes": [change.to_dict() for change in self.changes],
        }

    def summary(self) -> str:
        return (
            f"overlap policy {self.policy}: {self.segments_kept}/{self.segments_in} segments kept, "
            f"{len(self.dropped)} dropped, {self.pixels_moved} pixels moved"
        )


def resolve(
    segments: Sequence[Segment],
    policy: str,
    *,
    categories: Iterable[Category],
    things_over_stuff: bool = False,
    min_kept_fraction: float = 0.0,
    min_area: int = 0,
    stuff_min_kept_fraction: float | None = None,
    stuff_min_area: int | None = None,
) -> tuple[list[Segment], OverlapReport]:
    """Exclusive segments of one image (in input order) and the report of what changed. The `stuff_`
    thresholds, when given, replace the others for segments whose category is not a thing."""
    if policy not in POLICIES:
        raise ValueError(f"overlap policy must be one of {POLICIES}, got {policy!r}")
    report = OverlapReport(policy=policy, segments_in=len(segments))
    if not segments:
        return [], report
    height, width = segments[0].mask.shape
    for segment in segments:
        if segment.mask.shape != (height, width):
            raise SegassistError(
                f"segment mask is {segment.mask.width}x{segment.mask.height}, other segments of the image "
                f"are {width}x{height}",
                **segment.origin.where(),
            )
    if policy == "error":
        _raise_on_overlap(segments)
    isthing = {category.id: category.isthing for category in categories}
    ranking = sorted(
        range(len(segments)),
        key=lambda i: _priority(segments[i], i, policy, things_over_stuff, isthing),
        reverse=True,
    )
    # owner[y, x] = index of the segment that holds the pixel, -1 while unclaimed.
    owner = np.full((height, width), -1, dtype=np.int32)
    kept: dict[int, Mask] = {}
    stuff_thresholds = (
        min_kept_fraction if stuff_min_kept_fraction is None else stuff_min_kept_fraction,
        min_area if stuff_min_area is None else stuff_min_area,
    )
    for index in ranking:
        mask = segments[index].mask
        is_thing = isthing.get(segments[index].category_id, True)
        kept_fraction, least_area = (min_kept_fraction, min_area) if is_thing else stuff_thresholds
        change = SegmentChange(
            index=index,
            origin=segments[index].origin,
            category_id=segments[index].category_id,
            area_before=mask.area,
            area_after=0,
        )
        if mask.is_empty:
            change.dropped = "empty mask"
            report.changes.append(change)
            continue
        rows, cols = mask.bits.shape
        window = owner[mask.top : mask.top + rows, mask.left : mask.left + cols]
        claim = mask.bits & (window < 0)
        kept_area = int(np.count_nonzero(claim))
        if kept_area < mask.area:
            counts = np.bincount(window[mask.bits & ~claim])
            change.lost_to = [(int(winner), int(counts[winner])) for winner in np.flatnonzero(counts)]
        if kept_area == 0:
            change.dropped = "fully covered by segments above it"
        elif kept_area < kept_fraction * mask.area:
            change.dropped = f"kept {kept_area}/{mask.area} pixels, below min_kept_fraction {kept_fraction}"
        elif kept_area < least_area:
            change.dropped = f"kept {kept_area} pixels, below min_area {least_area}"
        if change.dropped:
            report.changes.append(change)
            continue
        window[claim] = index
        change.area_after = kept_area
        kept[index] = (
            mask if kept_area == mask.area else Mask.from_crop(height, width, mask.top, mask.left, claim)
        )
        if change.lost_to:
            report.changes.append(change)
    report.changes.sort(key=lambda change: change.index)
    report.segments_kept = len(kept)
    return [dataclasses.replace(segments[i], mask=kept[i]) for i in sorted(kept)], report


def _priority(
    segment: Segment, index: int, policy: str, things_over_stuff: bool, isthing: dict[int, bool]
) -> tuple[Any, ...]:
    """Sort key: the larger key paints on top. Ties fall back to the later region, as LS paints."""
    if policy == "score":
        primary: tuple[Any, ...] = (segment.score or 0.0,)
    elif policy == "area":
        primary = (-segment.mask.area,)
    else:
        primary = ()
    layer = (isthing.get(segment.category_id, True),) if things_over_stuff else ()
    return (*layer, *primary, segment.origin.order, index)


def _raise_on_overlap(segments: Sequence[Segment]) -> None:
    """Refuse overlapping segments, naming every overlapping pair with its pixel count and origins."""
    pairs = [
        f"{_describe(segments[a], a)} and {_describe(segments[b], b)}: {pixels} px"
        for a, b, pixels in overlapping_pairs([segment.mask for segment in segments])
    ]
    if pairs:
        first = segments[0].origin
        raise SegassistError(
            f"{len(pairs)} overlapping segment pair(s) (choose --overlap order|score|area to resolve): "
            + "; ".join(pairs),
            file=first.file,
            task_id=first.task_id,
        )


def _describe(segment: Segment, index: int) -> str:
    origin = segment.origin
    parts = [f"#{index}"]
    if origin.annotation_id is not None:
        parts.append(f"annotation {origin.annotation_id}")
    if origin.region_id is not None:
        parts.append(f"region {origin.region_id}")
    return "segment " + " ".join(parts)
