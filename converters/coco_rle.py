"""COCO RLE (`segmentation` of crowd or RLE instances): size [height, width], column-major runs.

`counts` is either the compressed string pycocotools writes or a list of run lengths ("uncompressed",
seen on `iscrowd: 1` annotations). Runs alternate 0, 1, 0, ... starting with zeros (the first may be 0).
Encoding computes the column-major runs from the mask's crop (no full-image array) and lets pycocotools
compress them. Decoding parses the counts exactly as pycocotools' C code does (checked against it in the
tests), in small numba kernels, and fills only the columns the foreground spans: no full-image array.
"""

from __future__ import annotations

import cv2
import numba
import numpy as np
from pycocotools import mask as coco_mask

from converters.errors import SegassistError
from converters.mask import Mask, raster_runs

# Characters of the compressed alphabet: 48 + 6-bit groups; bit 0x20 says "more groups follow".
_FIRST_CHAR, _LAST_CHAR, _MORE = 48, 111, 0x20
# Run lengths are 32-bit in pycocotools: 7 groups of 5 bits hold any of them.
_MAX_GROUPS = 7
_OK, _TRUNCATED, _BAD_CHAR, _TOO_LARGE = 0, 1, 2, 3
_PARSE_MESSAGES = {
    _TRUNCATED: "COCO RLE counts string is truncated",
    _BAD_CHAR: "COCO RLE counts string holds characters outside the compressed alphabet",
    _TOO_LARGE: "COCO RLE counts string holds a number too large for a run length",
}


def _column_runs(mask: Mask) -> list[int]:
    """Column-major run lengths, starting with a (possibly empty) run of zeros."""
    if mask.is_empty:
        return [mask.height * mask.width]
    # Column-major runs are the row-major runs of the transposed crop; cv2 transposes several times
    # faster than a numpy copy of `.T`.
    transposed = cv2.transpose(np.ascontiguousarray(mask.bits).view(np.uint8))
    values, lengths = raster_runs(transposed, mask.width, mask.height, mask.left, mask.top)
    counts = lengths.tolist()
    return counts if values[0] == 0 else [0, *counts]


def encode_uncompressed(mask: Mask) -> dict:
    """`{"size": [h, w], "counts": [int, ...]}`, the list form COCO uses for crowd regions."""
    return {"size": [mask.height, mask.width], "counts": _column_runs(mask)}


def encode(mask: Mask) -> dict:
    """`{"size": [h, w], "counts": str}`, the compressed form, byte-identical to pycocotools' encode."""
    compressed = coco_mask.frPyObjects(encode_uncompressed(mask), mask.height, mask.width)
    return {"size": [mask.height, mask.width], "counts": compressed["counts"].decode("ascii")}


def _size(rle: dict, height: int | None, width: int | None) -> tuple[int, int]:
    size = rle.get("size")
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        raise SegassistError(f"COCO RLE size must be [height, width] (two integers >= 0), got {size!r}")
    rle_height, rle_width = size
    if (height is not None and rle_height != height) or (width is not None and rle_width != width):
        raise SegassistError(
            f"COCO RLE size [{rle_height}, {rle_width}] disagrees with the image's [height, width] "
            f"[{height}, {width}]"
        )
    return rle_height, rle_width


@numba.njit(cache=True, nogil=True)
def _parse_counts(chars: np.ndarray, runs: np.ndarray) -> tuple[int, int]:
    """Parse a compressed counts string into `runs` exactly as pycocotools' rleFrString; (status, count).

    Each number is 5-bit groups (low first) in chars 48 + group, bit 0x20 of a char meaning "more groups";
    the last group's bit 0x10 is the sign. From the fourth number on, each is a delta to the one two back.
    """
    position, count = 0, 0
    while position < chars.size:
        number, groups, more = 0, 0, True
        while more:
            if position == chars.size:
                return _TRUNCATED, count
            char = np.int64(chars[position]) - _FIRST_CHAR
            if char < 0 or char > _LAST_CHAR - _FIRST_CHAR:
                return _BAD_CHAR, count
            if groups == _MAX_GROUPS:
                return _TOO_LARGE, count
            number |= (char & 0x1F) << (5 * groups)
            more = (char & _MORE) != 0
            position += 1
            groups += 1
            if not more and char & 0x10:
                number -= np.int64(1) << (5 * groups)
        if count > 2:
            number += runs[count - 2]
        runs[count] = number
        count += 1
    return _OK, count


def _string_counts(counts: bytes) -> np.ndarray:
    runs = np.empty(len(counts), dtype=np.int64)
    status, count = _parse_counts(np.frombuffer(counts, dtype=np.uint8), runs)
    if status != _OK:
        raise SegassistError(_PARSE_MESSAGES[status])
    return runs[:count]


def _list_counts(counts: list) -> np.ndarray:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
        raise SegassistError("COCO RLE counts must be non-negative integers")
    return np.array(counts, dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _fill_foreground(runs: np.ndarray, offset: int, strip: np.ndarray) -> None:
    """Set the pixels of the foreground (odd) runs in `strip`, which starts at pixel `offset`."""
    position = -offset
    for index in range(runs.size):
        if index % 2 == 1:
            strip[position : position + runs[index]] = 1
        position += runs[index]


def _mask_from_runs(runs: np.ndarray, height: int, width: int) -> Mask:
    """The Mask of column-major runs (0, 1, 0, ...), built in the columns the foreground spans only."""
    if runs.size and runs.min() < 0:
        raise SegassistError("COCO RLE counts must be non-negative integers")
    if runs.sum() != height * width:
        raise SegassistError(
            f"COCO RLE counts cover {runs.sum()} pixels, the size [{height}, {width}] says {height * width}"
        )
    ends = np.cumsum(runs)
    foreground = np.flatnonzero((np.arange(runs.size) % 2 == 1) & (runs > 0))
    if foreground.size == 0:
        return Mask.empty(height, width)
    first, last = foreground[0], foreground[-1]
    start, stop = ends[first] - runs[first], ends[last]
    left, right = start // height, (stop - 1) // height + 1
    strip = np.zeros((right - left) * height, dtype=np.uint8)
    _fill_foreground(runs, left * height, strip)
    return Mask.from_crop(height, width, 0, left, cv2.transpose(strip.reshape(right - left, height)))


def decode(rle: object, height: int | None = None, width: int | None = None) -> Mask:
    """The Mask of a COCO RLE dict (string, bytes or list counts); `height`/`width`, if given, must match."""
    if not isinstance(rle, dict):
        raise SegassistError(f"COCO RLE must be a dict with size and counts, got {type(rle).__name__}")
    rle_height, rle_width = _size(rle, height, width)
    counts = rle.get("counts")
    if isinstance(counts, str):
        if not counts.isascii():
            raise SegassistError("COCO RLE counts string holds characters outside the compressed alphabet")
        counts = counts.encode("ascii")
    if isinstance(counts, bytes):
        runs = _string_counts(counts)
    elif isinstance(counts, list):
        runs = _list_counts(counts)
    else:
        raise SegassistError(
            f"COCO RLE counts must be a string or a list of integers, got {type(counts).__name__}"
        )
    return _mask_from_runs(runs, rle_height, rle_width)
