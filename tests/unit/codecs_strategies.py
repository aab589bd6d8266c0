"""Hypothesis strategies for the codec tests: small masks and alpha planes, awkward cases forced in."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from converters.mask import Mask

SPECIAL = ("random", "empty", "full", "checkerboard", "corners", "rows")


@st.composite
def bool_masks(draw: st.DrawFn, max_side: int = 24) -> np.ndarray:
    """2-D bool masks: 1x1, 1xN, odd sizes; random, empty, full, checkerboards, corner pixels, stripes."""
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(SPECIAL))
    if kind == "random":
        return draw(hnp.arrays(np.bool_, (height, width)))
    if kind == "empty":
        return np.zeros((height, width), dtype=bool)
    if kind == "full":
        return np.ones((height, width), dtype=bool)
    rows, cols = np.indices((height, width))
    if kind == "checkerboard":
        return (rows + cols) % 2 == draw(st.integers(0, 1))
    if kind == "rows":
        return rows % draw(st.integers(2, 4)) == 0
    mask = np.zeros((height, width), dtype=bool)
    for row, col in draw(st.sets(st.sampled_from([(0, 0), (0, -1), (-1, 0), (-1, -1)]), min_size=1)):
        mask[row, col] = True
    return mask


@st.composite
def alpha_planes(draw: st.DrawFn, max_side: int = 24) -> np.ndarray:
    """uint8 alpha planes: a mask's shape with anti-aliased values (1..254) as well as 0 and 255."""
    mask = draw(bool_masks(max_side))
    levels = draw(st.lists(st.integers(1, 255), min_size=1, max_size=4))
    picks = draw(hnp.arrays(np.uint8, mask.shape, elements=st.integers(0, len(levels) - 1)))
    return np.where(mask, np.array(levels, dtype=np.uint8)[picks], 0).astype(np.uint8)


@st.composite
def placed_masks(draw: st.DrawFn, max_margin: int = 6) -> Mask:
    """A `bool_masks` crop placed on a larger image, with 0..max_margin empty pixels on each side."""
    crop = draw(bool_masks())
    top, left, bottom, right = (draw(st.integers(0, max_margin)) for _ in range(4))
    height, width = crop.shape[0] + top + bottom, crop.shape[1] + left + right
    return Mask.from_crop(height, width, top, left, crop)
