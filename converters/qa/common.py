"""Helpers every format's checks share: recording findings with their location, image sizes, geometry."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ijson
import numpy as np

from converters.errors import SegassistError
from converters.formats.common import image_file_size
from converters.mask import Mask
from converters.polygons import is_finite_number
from converters.qa.findings import Finding

# Targets that allow one segment per pixel only.
EXCLUSIVE_TARGETS = ("panoptic", "semantic")


class Recorder:
    """Collects findings; `at(...)` gives a recorder for a narrower place that writes into the same list."""

    def __init__(self, findings: list[Finding] | None = None, **where: Any) -> None:
        self.findings = [] if findings is None else findings
        self.where = where

    def at(self, **where: Any) -> Recorder:
        return Recorder(self.findings, **{**self.where, **where})

    def add(self, code: str, message: str, **numbers: Any) -> None:
        self.findings.append(Finding(code, message, **self.where, numbers=numbers))


@contextmanager
def reading_json(path: Path) -> Iterator[None]:
    """Turn a read or JSON parse error inside the block into a SegassistError naming `path` (CLI exit 2)."""
    try:
        yield
    except OSError as error:
        raise SegassistError(f"cannot read: {error.strerror or error}", file=str(path)) from error
    except (json.JSONDecodeError, UnicodeDecodeError, ijson.JSONError) as error:
        raise SegassistError(f"not valid JSON: {error}", file=str(path)) from error


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def duplicates(values: Iterable[Any]) -> list[Any]:
    """Values that occur more than once, in order of first appearance."""
    counts = Counter(values)
    return [value for value, count in counts.items() if count > 1]


def shape_findings(rec: Recorder, problems: dict[str, str]) -> None:
    """A JSON_STRUCTURE finding for each problem with the shape of a file, as its reader found them."""
    for problem in problems.values():
        rec.add("JSON_STRUCTURE", problem)


def find_image(images_dir: Path | None, file_name: str | None) -> Path | None:
    """The image file named by an annotation: `images_dir/file_name`, else its base name in `images_dir`."""
    if images_dir is None or not file_name:
        return None
    for path in (images_dir / file_name, images_dir / Path(file_name).name):
        if path.is_file():
            return path
    return None


def check_image_file(rec: Recorder, images_dir: Path | None, file_name: str, width: Any, height: Any) -> None:
    """Compare the annotated size with the image file's displayed size (when an images folder is given)."""
    if images_dir is None or not file_name:
        return
    path = find_image(images_dir, file_name)
    if path is None:
        rec.add("IMAGE_FILE_MISSING", f"image file {file_name!r} not found in {images_dir}")
        return
    try:
        file_width, file_height = image_file_size(path)
    except SegassistError as error:
        rec.add("IMAGE_UNREADABLE", f"cannot open image {path.name}: {error.reason}")
        return
    if (width, height) != (file_width, file_height):
        hint = (
            " (width and height swapped: the annotation ignores the EXIF orientation, or applies it twice)"
            if (width, height) == (file_height, file_width)
            else ""
        )
        rec.add(
            "IMAGE_SIZE_MISMATCH",
            f"annotated size {width}x{height} but {path.name} shows as {file_width}x{file_height}{hint}",
            annotated_width=width,
            annotated_height=height,
            file_width=file_width,
            file_height=file_height,
        )


def check_area_and_bbox(
    rec: Recorder,
    declared_area: Any,
    declared_bbox: Any,
    *,
    area: int,
    bbox: tuple[float, float, float, float],
    area_tolerance: float,
    bbox_tolerance: float,
) -> None:
    """Flag a declared area/bbox that is malformed or differs from the measured one beyond the tolerances.

    `area_tolerance` is an absolute pixel count; `bbox_tolerance` is the largest allowed difference of any
    of x, y, w, h in pixels.
    """
    if declared_area is not None:
        if not is_finite_number(declared_area):
            rec.add(
                "AREA_MISMATCH", f"area {declared_area!r} is not a number; the mask has {area} px", area=area
            )
        elif abs(declared_area - area) > area_tolerance:
            rec.add(
                "AREA_MISMATCH",
                f"area {declared_area:g} but the mask has {area} px",
                declared_area=declared_area,
                area=area,
            )
    if declared_bbox is None:
        return
    if not check_bbox_valid(rec, declared_bbox):
        return
    if max(abs(a - b) for a, b in zip(declared_bbox, bbox, strict=True)) > bbox_tolerance:
        rec.add(
            "BBOX_MISMATCH",
            f"bbox {format_box(declared_bbox)} but the mask spans {format_box(bbox)}",
            declared_bbox=list(declared_bbox),
            bbox=list(bbox),
        )


def check_bbox_valid(rec: Recorder, bbox: Any) -> bool:
    """BBOX_INVALID unless `bbox` is [x, y, w, h] of finite numbers with w, h > 0."""
    valid = (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(is_finite_number(value) for value in bbox)
        and bbox[2] > 0
        and bbox[3] > 0
    )
    if not valid:
        rec.add("BBOX_INVALID", f"bbox {bbox!r} is not [x, y, w, h] with w, h > 0")
    return valid


def format_box(box: Iterable[float]) -> str:
    return "[" + ", ".join(f"{value:g}" for value in box) + "]"


def check_size_of_segment(rec: Recorder, mask: Mask, min_area: int) -> bool:
    """SEGMENT_EMPTY / SEGMENT_TINY; returns whether the segment has pixels."""
    if mask.area == 0:
        rec.add("SEGMENT_EMPTY", "the segment covers no pixel", area=0)
        return False
    if mask.area < min_area:
        rec.add("SEGMENT_TINY", f"the segment covers only {mask.area} px (< {min_area})", area=mask.area)
    return True


def check_polygon_part(rec: Recorder, xy: np.ndarray, width: int, height: int, part: int) -> None:
    """Point count, self-intersection and out-of-image checks for one polygon ring, (n, 2) pixels."""
    label = f"polygon part {part}"
    if len(xy) < 3:
        rec.add(
            "POLYGON_TOO_FEW_POINTS", f"{label} has {len(xy)} point(s); a polygon needs 3", points=len(xy)
        )
        return
    outside = int(
        np.count_nonzero((xy[:, 0] < 0) | (xy[:, 0] > width) | (xy[:, 1] < 0) | (xy[:, 1] > height))
    )
    if outside:
        rec.add(
            "POLYGON_OUT_OF_IMAGE",
            f"{label}: {outside} of {len(xy)} points lie outside the image",
            points_outside=outside,
        )
    crossing = first_self_intersection(xy)
    if crossing is not None:
        rec.add(
            "POLYGON_SELF_INTERSECTION",
            f"{label}: edges {crossing[0]} and {crossing[1]} cross",
            edge_a=crossing[0],
            edge_b=crossing[1],
        )


def first_self_intersection(xy: np.ndarray) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges of a closed ring that properly cross, or None.

    All edge pairs are tested at once with orientation signs (O(n^2) memory, fine for annotation polygons).
    """
    points = np.asarray(xy, dtype=np.float64)
    # Drop repeated consecutive points: a zero-length edge is not a crossing.
    keep = np.any(points != np.roll(points, 1, axis=0), axis=1)
    points = points[keep] if keep.any() else points[:1]
    n = len(points)
    if n < 4:
        return None
    start, end = points, np.roll(points, -1, axis=0)

    def orientation(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.sign(
            (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])
            - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
        )

    p, q = start[:, None, :], end[:, None, :]
    r, s = start[None, :, :], end[None, :, :]
    crosses = (orientation(p, q, r) * orientation(p, q, s) < 0) & (
        orientation(r, s, p) * orientation(r, s, q) < 0
    )
    i, j = np.triu_indices(n, k=2)
    # Edge 0 and edge n-1 share a vertex in a closed ring.
    adjacent = (i == 0) & (j == n - 1)
    hits = np.flatnonzero(crosses[i, j] & ~adjacent)
    return (int(i[hits[0]]), int(j[hits[0]])) if hits.size else None
