"""A compact binary mask: a bitmap cropped to the segment's tight bounding box, plus the image size.

A 12-megapixel image with 300 small segments costs 300 small crops, not 300 full-size arrays. Every
operation works on the crops; `dense()` builds a full-size array only when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np


class Mask:
    """A binary mask on an image of `height` x `width`, stored as a tight crop at (`top`, `left`)."""

    __slots__ = ("height", "width", "top", "left", "bits", "__dict__")

    def __init__(self, height: int, width: int, top: int, left: int, bits: np.ndarray) -> None:
        """Wrap an already-tight crop; use the `from_*` constructors for anything else."""
        self.height = int(height)
        self.width = int(width)
        self.top = int(top)
        self.left = int(left)
        self.bits = bits

    # -- construction --

    @classmethod
    def empty(cls, height: int, width: int) -> Mask:
        return cls(height, width, 0, 0, np.zeros((0, 0), dtype=bool))

    @classmethod
    def from_dense(cls, array: np.ndarray) -> Mask:
        """A mask from a full-size 2-D array; every non-zero value is foreground."""
        if array.ndim != 2:
            raise ValueError(f"a mask must be 2-D, got shape {array.shape}")
        height, width = array.shape
        return cls.from_crop(height, width, 0, 0, array)

    @classmethod
    def from_crop(cls, height: int, width: int, top: int, left: int, crop: np.ndarray) -> Mask:
        """A mask from any crop placed at (top, left); the crop is tightened to its foreground."""
        if (
            crop.ndim != 2
            or top < 0
            or left < 0
            or top + crop.shape[0] > height
            or left + crop.shape[1] > width
        ):
            raise ValueError(f"a {crop.shape} crop at ({top}, {left}) does not fit a {width}x{height} image")
        bits = crop if crop.dtype == bool else crop != 0
        rows = np.flatnonzero(bits.any(axis=1))
        if rows.size == 0:
            return cls.empty(height, width)
        cols = np.flatnonzero(bits.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        # Copy so the mask never aliases the caller's array.
        return cls(height, width, top + r0, left + c0, bits[r0:r1, c0:c1].copy())

    # -- facts --

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the image the mask lives on."""
        return self.height, self.width

    @cached_property
    def area(self) -> int:
        return int(np.count_nonzero(self.bits))

    @property
    def is_empty(self) -> bool:
        return self.bits.size == 0

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Tight pixel box [x, y, w, h] as COCO writes it; (0, 0, 0, 0) for an empty mask."""
        rows, cols = self.bits.shape
        return (self.left, self.top, cols, rows) if rows else (0, 0, 0, 0)

    def dense(self) -> np.ndarray:
        """The full-size bool array (height, width)."""
        out = np.zeros((self.height, self.width), dtype=bool)
        self.paste_into(out, True)
        return out

    def paste_into(self, array: np.ndarray, value: object) -> None:
        """Write `value` into `array` (image-sized, any dtype) wherever the mask is set."""
        rows, cols = self.bits.shape
        array[self.top : self.top + rows, self.left : self.left + cols][self.bits] = value

    # -- set operations --

    def _require_same_image(self, other: Mask) -> None:
        if self.shape != other.shape:
            raise ValueError(f"masks are on different image sizes: {self.shape} and {other.shape}")

    def _window(self, top: int, left: int, bottom: int, right: int) -> np.ndarray:
        """This mask's pixels inside an image window, as a bool array of the window's size."""
        out = np.zeros((bottom - top, right - left), dtype=bool)
        rows, cols = self.bits.shape
        t0, l0 = max(top, self.top), max(left, self.left)
        t1, l1 = min(bottom, self.top + rows), min(right, self.left + cols)
        if t0 < t1 and l0 < l1:
            out[t0 - top : t1 - top, l0 - left : l1 - left] = self.bits[
                t0 - self.top : t1 - self.top, l0 - self.left : l1 - self.left
            ]
        return out

    def _overlap_window(self, other: Mask) -> tuple[int, int, int, int] | None:
        self._require_same_image(other)
        if self.is_empty or other.is_empty:
            return None
        top, left = max(self.top, other.top), max(self.left, other.left)
        bottom = min(self.top + self.bits.shape[0], other.top + other.bits.shape[0])
        right = min(self.left + self.bits.shape[1], other.left + other.bits.shape[1])
        return (top, left, bottom, right) if top < bottom and left < right else None

    def intersection_area(self, other: Mask) -> int:
        window = self._overlap_window(other)
        if window is None:
            return 0
        return int(np.count_nonzero(self._window(*window) & other._window(*window)))

    def intersection(self, other: Mask) -> Mask:
        window = self._overlap_window(other)
        if window is None:
            return Mask.empty(self.height, self.width)
        top, left = window[0], window[1]
        return Mask.from_crop(
            self.height, self.width, top, left, self._window(*window) & other._window(*window)
        )

    def union(self, other: Mask) -> Mask:
        self._require_same_image(other)
        if other.is_empty:
            return self
        if self.is_empty:
            return other
        top, left = min(self.top, other.top), min(self.left, other.left)
        bottom = max(self.top + self.bits.shape[0], other.top + other.bits.shape[0])
        right = max(self.left + self.bits.shape[1], other.left + other.bits.shape[1])
        window = (top, left, bottom, right)
        return Mask(self.height, self.width, top, left, self._window(*window) | other._window(*window))

    def difference(self, other: Mask) -> Mask:
        """The pixels of this mask that are not in `other`."""
        window = self._overlap_window(other)
        if window is None:
            return self
        rows, cols = self.bits.shape
        own = (self.top, self.left, self.top + rows, self.left + cols)
        return Mask.from_crop(self.height, self.width, self.top, self.left, self.bits & ~other._window(*own))

    def iou(self, other: Mask) -> float:
        inter = self.intersection_area(other)
        union = self.area + other.area - inter
        return inter / union if union else 1.0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask):
            return NotImplemented
        return (
            self.shape == other.shape
            and (self.top, self.left) == (other.top, other.left)
            and np.array_equal(self.bits, other.bits)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Mask(image={self.width}x{self.height}, bbox={self.bbox}, area={self.area})"


def raster_runs(
    crop: np.ndarray, height: int, width: int, top: int, left: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row-major pixel runs (values, lengths) of an image that is zero outside `crop` placed at (top, left).

    `crop` is bool (values come out as 0/255) or uint8 (values kept). Column-major runs are the runs of the
    transposed crop on the transposed image. Neighbouring runs always differ in value.

    Works on the crop only: when the crop is narrower than the image, one extra zero column stands for the
    (width - crop width) zero pixels between the end of one crop row and the start of the next.
    """
    if crop.size == 0:
        return np.zeros(1, dtype=np.uint8), np.array([height * width], dtype=np.int64)
    rows, cols = crop.shape
    gap = width - cols
    if gap:
        padded = np.zeros((rows, cols + 1), dtype=np.uint8)
        padded[:, :cols] = crop.view(np.uint8)
        flat = padded.ravel()[:-1]
    else:
        flat = crop.view(np.uint8).reshape(-1)
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    values = flat[starts]
    if crop.dtype == bool:
        values = values * np.uint8(255)
    # Flat index -> image index: each marker column passed stands for `gap` pixels instead of 1.
    bounds = np.append(starts, flat.size)
    if gap:
        bounds += (bounds // (cols + 1)) * (gap - 1)
    bounds += top * width + left
    lengths = np.diff(bounds)
    # The zero pixels before and after the crop join the crop's edge runs when those are zero too.
    lead, tail = int(bounds[0]), height * width - int(bounds[-1])
    if lead:
        if values[0] == 0:
            lengths[0] += lead
        else:
            values, lengths = (
                np.concatenate(([0], values)).astype(np.uint8),
                np.concatenate(([lead], lengths)),
            )
    if tail:
        if values[-1] == 0:
            lengths[-1] += tail
        else:
            values, lengths = np.append(values, np.uint8(0)), np.append(lengths, tail)
    return values, lengths


def overlapping_pairs(masks: Sequence[Mask]) -> list[tuple[int, int, int]]:
    """(index a, index b, shared pixels) for every pair a < b of masks that share pixels, in index order.
    Boxes are compared first, all pairs at once; only pairs whose boxes meet have their pixels compared."""
    if len(masks) < 2:
        return []
    top, left, bottom, right = np.array(
        [(m.top, m.left, m.top + m.bits.shape[0], m.left + m.bits.shape[1]) for m in masks], dtype=np.int64
    ).T
    meet = (
        (top[:, None] < bottom[None, :])
        & (top[None, :] < bottom[:, None])
        & (left[:, None] < right[None, :])
        & (left[None, :] < right[:, None])
    )
    pairs = []
    for a, b in zip(*np.nonzero(np.triu(meet, k=1)), strict=True):
        shared = masks[a].intersection_area(masks[b])
        if shared:
            pairs.append((int(a), int(b), shared))
    return pairs
