"""Polygons and rectangles to masks, and masks to polygons.

- COCO polygons: pixels, a list of flat [x1, y1, x2, y2, ...] parts (>= 3 points each), rasterised by
  pycocotools exactly as COCO evaluation does, into RLE and then a crop (never a full-image array).
- Label Studio polygons: [[x%, y%], ...] in percent of the image's original width/height.
- Label Studio rectangles: x, y, width, height in percent; `rotation` in degrees, clockwise about the
  top-left corner.
- mask -> polygons: outer contours with vertices on pixel corners, so that rasterising them gives back the
  mask exactly when it has no holes and `tolerance` is 0. Polygon formats cannot hold holes, so the result
  says how many holes were dropped and how many separate parts the mask has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from converters import coco_rle
from converters.errors import SegassistError
from converters.mask import Mask


@dataclass(frozen=True)
class PolygonResult:
    polygons: list[list[float]]  # COCO flat xy lists, in pixels, one per outer contour
    holes: int  # holes inside the mask, which polygons cannot represent
    parts: int  # separate outer contours (1 for a single connected region)


def is_finite_number(value: object) -> bool:
    """An int or float that is finite; bool is not a number here (JSON true must not pass as 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_polygon(polygon: object, index: int) -> list[float]:
    if not isinstance(polygon, list | tuple) or not all(is_finite_number(v) for v in polygon):
        raise SegassistError(f"polygon {index} must be a flat list of finite numbers [x1, y1, x2, y2, ...]")
    if len(polygon) % 2 or len(polygon) < 6:
        raise SegassistError(
            f"polygon {index} has {len(polygon)} numbers; it needs an even count of at least 6 (3 points)"
        )
    return [float(v) for v in polygon]


def coco_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> Mask:
    """The mask of COCO polygon parts (pixel coordinates) on a `height` x `width` image."""
    if not isinstance(polygons, list | tuple):
        raise SegassistError(
            f"COCO polygons must be a list of flat coordinate lists, got {type(polygons).__name__}"
        )
    parts = [_check_polygon(polygon, index) for index, polygon in enumerate(polygons)]
    if not parts:
        return Mask.empty(height, width)
    # pycocotools rasterises to RLE (its own rules, which COCO evaluation uses); our decoder turns the RLE
    # into a crop. Its pixels depend on the exact float coordinates, so the polygons are never shifted.
    merged = coco_mask.merge(coco_mask.frPyObjects(parts, height, width))
    return coco_rle.decode(merged, height, width)


def ls_to_mask(points_percent: Sequence[Sequence[float]], width: int, height: int) -> Mask:
    """The mask of a Label Studio polygon, points [[x%, y%], ...] of the image's width and height."""
    if not isinstance(points_percent, list | tuple) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and all(is_finite_number(v) for v in p)
        for p in points_percent
    ):
        raise SegassistError("Label Studio polygon points must be a list of [x, y] pairs of finite numbers")
    if len(points_percent) < 3:
        raise SegassistError(f"a polygon needs at least 3 points, got {len(points_percent)}")
    flat = [v for x, y in points_percent for v in (x * width / 100, y * height / 100)]
    return coco_to_mask([flat], height, width)


def rectangle_to_mask(
    x: float, y: float, w: float, h: float, rotation_deg: float, width: int, height: int
) -> Mask:
    """The mask of a Label Studio rectangle (percent units, rotated clockwise about its top-left corner)."""
    if not all(is_finite_number(v) for v in (x, y, w, h, rotation_deg)):
        raise SegassistError(f"rectangle values must be finite numbers, got {(x, y, w, h, rotation_deg)!r}")
    if w < 0 or h < 0:
        raise SegassistError(f"rectangle width and height must be >= 0, got {w}, {h}")
    if w == 0 or h == 0:
        return Mask.empty(height, width)
    corner = np.array([x * width / 100, y * height / 100])
    extent = np.array(
        [[0, 0], [w * width / 100, 0], [w * width / 100, h * height / 100], [0, h * height / 100]]
    )
    angle = math.radians(rotation_deg)
    # Image y points down, so this matrix turns clockwise on screen for a positive angle.
    rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = extent @ rotate.T + corner
    return coco_to_mask([points.ravel().tolist()], height, width)


def mask_to_polygons(mask: Mask, tolerance: float = 1.0) -> PolygonResult:
    """Outer contours of `mask` as COCO polygons, simplified by `tolerance` pixels (0 keeps every corner)."""
    if not is_finite_number(tolerance) or tolerance < 0:
        raise SegassistError(f"polygon tolerance must be a number >= 0, got {tolerance!r}")
    if mask.is_empty:
        return PolygonResult([], holes=0, parts=0)
    # Doubling each pixel puts contour points on both sides of every pixel edge; (p + 1) // 2 maps them
    # back onto pixel corners. One pixel of padding keeps contours along the crop's border closed.
    rows, cols = mask.bits.shape
    doubled = cv2.resize(mask.bits.view(np.uint8), (2 * cols, 2 * rows), interpolation=cv2.INTER_NEAREST)
    doubled = cv2.copyMakeBorder(doubled, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    contours, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    is_outer = hierarchy[0][:, 3] < 0
    offset = np.array([mask.left, mask.top])
    polygons = []
    for contour in (c for c, outer in zip(contours, is_outer, strict=True) if outer):
        corners = (contour.reshape(-1, 2) // 2 + offset).astype(np.float32)  # (p - pad + 1) // 2 = p // 2
        if tolerance > 0:
            simplified = cv2.approxPolyDP(corners, tolerance, closed=True).reshape(-1, 2)
            corners = simplified if len(simplified) >= 3 else corners
        polygons.append(corners.ravel().astype(float).tolist())
    return PolygonResult(polygons, holes=int(np.count_nonzero(~is_outer)), parts=len(polygons))
