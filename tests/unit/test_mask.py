"""The Mask type against plain numpy on dense arrays, and raster_runs against a direct run scan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from converters.mask import Mask, raster_runs
from tests.unit.codecs_strategies import alpha_planes, bool_masks

SETTINGS = settings(deadline=None, max_examples=150)


@st.composite
def mask_pairs(draw):
    first = draw(bool_masks(12))
    return first, draw(hnp.arrays(np.bool_, first.shape))


@SETTINGS
@given(bool_masks())
def test_from_dense_is_tight_and_round_trips(dense):
    mask = Mask.from_dense(dense)
    assert np.array_equal(mask.dense(), dense)
    assert mask.area == dense.sum()
    assert mask.is_empty == (not dense.any())
    if dense.any():
        rows, cols = np.nonzero(dense)
        x, y = cols.min(), rows.min()
        assert mask.bbox == (x, y, cols.max() - x + 1, rows.max() - y + 1)
        assert mask.bits.shape == (mask.bbox[3], mask.bbox[2])
    else:
        assert mask.bbox == (0, 0, 0, 0)


@SETTINGS
@given(mask_pairs())
def test_set_operations_match_numpy(pair):
    a, b = pair
    ma, mb = Mask.from_dense(a), Mask.from_dense(b)
    assert ma.union(mb) == Mask.from_dense(a | b)
    assert ma.intersection(mb) == Mask.from_dense(a & b)
    assert ma.difference(mb) == Mask.from_dense(a & ~b)
    assert ma.intersection_area(mb) == (a & b).sum()
    union = (a | b).sum()
    assert ma.iou(mb) == pytest.approx((a & b).sum() / union if union else 1.0)


@SETTINGS
@given(bool_masks(10), st.integers(0, 5), st.integers(0, 5))
def test_from_crop_places_and_tightens(crop, top, left):
    height, width = crop.shape[0] + top + 3, crop.shape[1] + left + 2
    dense = np.zeros((height, width), dtype=bool)
    dense[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    assert Mask.from_crop(height, width, top, left, crop.astype(np.uint8) * 7) == Mask.from_dense(dense)


def test_paste_into_writes_the_value_only_inside():
    mask = Mask.from_dense(np.array([[0, 1, 0], [0, 1, 1]], dtype=bool))
    labels = np.full((2, 3), 9, dtype=np.int32)
    mask.paste_into(labels, 4)
    assert labels.tolist() == [[9, 4, 9], [9, 4, 4]]


def test_masks_do_not_alias_their_source():
    dense = np.ones((3, 3), dtype=bool)
    mask = Mask.from_dense(dense)
    dense[:] = False
    assert mask.area == 9


def test_different_image_sizes_and_misplaced_crops_are_errors():
    with pytest.raises(ValueError, match="different image sizes"):
        Mask.from_dense(np.ones((2, 2), dtype=bool)).union(Mask.from_dense(np.ones((2, 3), dtype=bool)))
    with pytest.raises(ValueError, match="does not fit"):
        Mask.from_crop(4, 4, 3, 0, np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="2-D"):
        Mask.from_dense(np.ones((2, 2, 2), dtype=bool))


def test_empty_masks_compare_by_image_size():
    assert Mask.empty(3, 4) == Mask.from_dense(np.zeros((3, 4), dtype=bool))
    assert Mask.empty(3, 4) != Mask.empty(4, 3)
    assert Mask.empty(3, 4).dense().shape == (3, 4)


def _runs_of(flat: np.ndarray) -> tuple[list[int], list[int]]:
    values, lengths = [], []
    for value in flat.tolist():
        if values and values[-1] == value:
            lengths[-1] += 1
        else:
            values.append(value)
            lengths.append(1)
    return values, lengths


@SETTINGS
@given(alpha_planes(10), st.integers(0, 4), st.integers(0, 4), st.integers(0, 4), st.integers(0, 4))
def test_raster_runs_of_a_placed_crop_equal_the_runs_of_the_dense_image(crop, top, left, bottom, right):
    height, width = crop.shape[0] + top + bottom, crop.shape[1] + left + right
    dense = np.zeros((height, width), dtype=np.uint8)
    dense[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    values, lengths = raster_runs(crop, height, width, top, left)
    assert (values.tolist(), lengths.tolist()) == _runs_of(dense.ravel())
    # Bool crops come out as 0/255; column-major runs are the runs of the transposed crop.
    values, lengths = raster_runs((crop > 0).T, width, height, left, top)
    assert (values.tolist(), lengths.tolist()) == _runs_of((dense.T.ravel() > 0) * 255)
