"""Polygons and rectangles to masks (pycocotools rasterisation) and masks to polygons (OpenCV contours)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as coco_mask
from scipy import ndimage

from converters import polygons
from converters.errors import SegassistError
from converters.mask import Mask
from tests.unit.codecs_strategies import bool_masks

SETTINGS = settings(deadline=None, max_examples=150)


def _full_raster(parts: list[list[float]], height: int, width: int) -> np.ndarray:
    """pycocotools on the whole image: the reference for the windowed rasterisation."""
    return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(parts, height, width))).astype(bool)


coordinates = st.floats(-8, 40, allow_nan=False).map(lambda v: round(v, 2))
polygon_parts = st.lists(
    st.lists(coordinates, min_size=6, max_size=16).filter(lambda p: len(p) % 2 == 0), min_size=1, max_size=3
)


@SETTINGS
@given(polygon_parts, st.integers(1, 32), st.integers(1, 32))
def test_coco_polygons_rasterise_like_pycocotools_on_the_full_image(parts, height, width):
    assert np.array_equal(
        polygons.coco_to_mask(parts, height, width).dense(), _full_raster(parts, height, width)
    )


def test_real_coco_polygons(realdata):
    folder = realdata / "hf_transformers_coco"
    with Image.open(folder / "000000039769.png") as image:
        width, height = image.size
    for annotation in json.loads((folder / "coco_annotations.txt").read_text()):
        mask = polygons.coco_to_mask(annotation["segmentation"], height, width)
        assert np.array_equal(mask.dense(), _full_raster(annotation["segmentation"], height, width))
        # The polygon's own area (shoelace) and the pixel count agree to within the boundary pixels.
        assert mask.area == pytest.approx(annotation["area"], rel=0.05)


def test_real_label_studio_polygon(realdata):
    task = json.loads(
        (realdata / "labelstudio/frontend_examples/image_polygons/annotations/0.json").read_text()
    )
    points = task["annotations"][0]["result"][0]["value"]["points"]
    width, height = 750, 337  # any size: the test checks the percent -> pixel scaling
    mask = polygons.ls_to_mask(points, width, height)
    flat = [v for x, y in points for v in (x * width / 100, y * height / 100)]
    assert mask == polygons.coco_to_mask([flat], height, width)
    assert mask.area > 0


def test_label_studio_polygon_in_percent():
    # x 10%..50% of 200 px = 20..100, y 10%..50% of 100 px = 10..50: an 80 x 40 pixel box.
    mask = polygons.ls_to_mask([[10, 10], [50, 10], [50, 50], [10, 50]], 200, 100)
    assert mask.bbox == (20, 10, 80, 40)
    assert mask.area == 3200


@SETTINGS
@given(bool_masks())
def test_hole_free_masks_survive_polygons_exactly_at_tolerance_0(dense):
    mask = Mask.from_dense(dense)
    result = polygons.mask_to_polygons(mask, tolerance=0)
    filled = ndimage.binary_fill_holes(dense)
    rebuilt = polygons.coco_to_mask(result.polygons, *dense.shape)
    assert np.array_equal(rebuilt.dense(), filled)
    # Holes and parts are reported, counted independently: 8-connected parts, 4-connected holes.
    assert result.parts == ndimage.label(dense, structure=np.ones((3, 3)))[1]
    assert result.holes == ndimage.label(filled & ~dense)[1]


def test_ring_with_a_disc_reports_its_hole_and_parts():
    dense = np.zeros((60, 90), dtype=np.uint8)
    cv2.circle(dense, (30, 30), 20, 1, -1)
    cv2.circle(dense, (30, 30), 10, 0, -1)
    cv2.circle(dense, (70, 30), 8, 1, -1)
    result = polygons.mask_to_polygons(Mask.from_dense(dense), tolerance=1.0)
    assert (result.parts, result.holes) == (2, 1)
    rebuilt = polygons.coco_to_mask(result.polygons, 60, 90)
    filled = Mask.from_dense(ndimage.binary_fill_holes(dense))
    assert rebuilt.iou(filled) > 0.95  # simplification by 1 px cuts the staircase corners
    exact = polygons.mask_to_polygons(Mask.from_dense(dense), tolerance=0)
    assert sum(len(p) for p in result.polygons) < sum(len(p) for p in exact.polygons)


def test_polygons_are_in_image_pixels_for_a_crop():
    mask = Mask.from_crop(50, 40, 10, 20, np.ones((3, 2), dtype=bool))
    (polygon,) = polygons.mask_to_polygons(mask, tolerance=0).polygons
    xs, ys = polygon[0::2], polygon[1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == (20, 22, 10, 13)


def test_rectangles_rotate_clockwise_about_the_top_left_corner():
    # 100x100 image; a 30x10 px box at (50, 20) turned 90 degrees clockwise hangs down-left of the corner.
    assert polygons.rectangle_to_mask(50, 20, 30, 10, 0, 100, 100).bbox == (50, 20, 30, 10)
    turned = polygons.rectangle_to_mask(50, 20, 30, 10, 90, 100, 100)
    assert turned.bbox == (40, 20, 10, 30)
    assert turned.area == 300
    # The measured case from the reference notes: envelope [185, 150, 84.28, 65.98] on a 400x300 image.
    x, y, w, h = polygons.rectangle_to_mask(50, 50, 20, 10, 30, 400, 300).bbox
    assert abs(x - 185) <= 1 and abs(y - 150) <= 1 and abs(w - 84.28) <= 1.5 and abs(h - 65.98) <= 1.5
    area = polygons.rectangle_to_mask(50, 50, 20, 10, 30, 400, 300).area
    assert area == pytest.approx(80 * 30, rel=0.03)


def test_rectangles_are_clipped_to_the_image():
    assert polygons.rectangle_to_mask(90, 90, 50, 50, 0, 10, 10).bbox == (9, 9, 1, 1)
    assert polygons.rectangle_to_mask(10, 10, 0, 5, 0, 10, 10).is_empty


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([[1, 2, 3, 4]], "at least 6"),
        ([[1, 2, 3, 4, 5, 6, 7]], "even count"),
        ([[1, 2, 3, math.nan, 5, 6]], "finite"),
        ([[1, 2, 3, math.inf, 5, 6]], "finite"),
        ([["1", 2, 3, 4, 5, 6]], "finite"),
        ([1, 2, 3, 4, 5, 6], "flat list"),
        ({"counts": "x"}, "list of flat"),
    ],
)
def test_bad_coco_polygons_raise(parts, message):
    with pytest.raises(SegassistError, match=message):
        polygons.coco_to_mask(parts, 10, 10)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([[1, 2], [3, 4]], "at least 3 points"),
        ([[1, 2], [3, math.nan], [5, 6]], "finite"),
        ([1, 2, 3], "pairs"),
    ],
)
def test_bad_label_studio_polygons_raise(points, message):
    with pytest.raises(SegassistError, match=message):
        polygons.ls_to_mask(points, 10, 10)


def test_bad_rectangles_and_tolerance_raise():
    with pytest.raises(SegassistError, match="finite"):
        polygons.rectangle_to_mask(1, 2, math.nan, 4, 0, 10, 10)
    with pytest.raises(SegassistError, match=">= 0"):
        polygons.rectangle_to_mask(1, 2, -3, 4, 0, 10, 10)
    with pytest.raises(SegassistError, match="tolerance"):
        polygons.mask_to_polygons(Mask.empty(3, 3), tolerance=-1)
