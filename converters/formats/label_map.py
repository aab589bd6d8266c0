"""Label maps (one integer per pixel) ⇄ cropped masks, in one sorting pass instead of one full mask per label.

Shared by the COCO panoptic (segment-id PNG) and semantic (class-value PNG) formats, with how their PNGs are
named and compressed, and by anything else that holds a label map: an image with 300 labels costs one
argsort, not 300 full-image comparisons.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from converters.mask import Mask

# zlib's run-length strategy: label maps are long runs, and it writes a 2048x2048 id map several times faster
# than the default strategy at any level, at a similar size.
PNG_PARAMS = [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def png_name(file_name: str) -> str:
    """The PNG's name for an image: its file name with the extension replaced (dots inside the name kept)."""
    return Path(file_name).with_suffix(".png").name


def masks_from_label_map(label_map: np.ndarray, *, void: int | None = 0) -> dict[int, Mask]:
    """A Mask for every label present in a 2-D integer array, except `void` (None keeps every label)."""
    height, width = label_map.shape
    flat = label_map.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_labels = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    ends = np.r_[starts[1:], flat.size]
    rows_all, cols_all = np.divmod(order, width)
    masks: dict[int, Mask] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        label = int(sorted_labels[start])
        if label == void:
            continue
        rows, cols = rows_all[start:end], cols_all[start:end]
        top, left = int(rows.min()), int(cols.min())
        crop = np.zeros((int(rows.max()) - top + 1, int(cols.max()) - left + 1), dtype=bool)
        crop[rows - top, cols - left] = True
        masks[label] = Mask(height, width, top, left, crop)
    return masks


def paint_label_map(
    masks: Sequence[Mask], values: Sequence[int], height: int, width: int, dtype: np.dtype | type
) -> np.ndarray:
    """A label map with `values[i]` wherever `masks[i]` is set (later masks on top), 0 elsewhere."""
    canvas = np.zeros((height, width), dtype=dtype)
    for mask, value in zip(masks, values, strict=True):
        if not mask.is_empty:
            mask.paste_into(canvas, value)
    return canvas


def ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """COCO panoptic colours: id = R + 256·G + 256²·B, as an (H, W, 3) uint8 array."""
    ids = ids.astype(np.uint32, copy=False)
    return np.dstack([(ids & 0xFF), (ids >> 8) & 0xFF, (ids >> 16) & 0xFF]).astype(np.uint8)


def rgb_to_ids(rgb: np.ndarray) -> np.ndarray:
    """The inverse of `ids_to_rgb` for an (H, W, 3) array."""
    rgb = rgb.astype(np.uint32, copy=False)
    return rgb[..., 0] | (rgb[..., 1] << 8) | (rgb[..., 2] << 16)
