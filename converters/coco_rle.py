"""COCO RLE (`segmentation` of crowd or RLE instances): size [height, width], column-major runs.

`counts` is either the compressed string pycocotools writes or a list of run lengths ("uncompressed",
seen on `iscrowd: 1` annotations). Runs alternate 0, 1, 0, ... starting with zeros (the first may be 0).
Encoding computes the column-major runs from the mask's crop (no full-image array) and compresses them,
decoding parses the counts, both exactly as pycocotools' C code does (checked against it in the tests), in
small numba kernels; decoding fills only the columns the foreground spans: no full-image array.
"""

from __future__ import annotations

import cv2
import numba
import numpy as np

from converters.errors import SegassistError
from converters.mask import Mask

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


# Columns compared at once when looking for where a column changes value going down a crop: a block, then
# the parts of a block that differs.
_BLOCK, _PART = 256, 32


@numba.njit(cache=True, nogil=True)
def _differ(above: np.ndarray, here: np.ndarray, start: int, stop: int) -> bool:
    """Whether the rows differ in columns [start, stop). Unsigned columns (no negative-index check) and a
    bool accumulator let LLVM vectorise the loop."""
    differ = False
    for col in range(np.uint64(start), np.uint64(stop)):
        differ |= above[col] != here[col]
    return differ


@numba.njit(cache=True, nogil=True)
def _row_changes(above: np.ndarray, here: np.ndarray, row: int, changes: np.ndarray, found: int) -> int:
    """Append (column, row) to `changes` for each column where `here` and `above` differ; returns the new
    count, or -1 when `changes` is full (the caller grows it and asks again: growing it here would keep
    LLVM from vectorising the comparisons)."""
    cols = here.size
    for block in range(0, cols, _BLOCK):
        if not _differ(above, here, block, min(block + _BLOCK, cols)):
            continue
        for part in range(block, min(block + _BLOCK, cols), _PART):
            stop = min(part + _PART, cols)
            if not _differ(above, here, part, stop):
                continue
            for col in range(part, stop):
                if above[col] != here[col]:
                    if found == changes.shape[0]:
                        return -1
                    changes[found, 0] = col
                    changes[found, 1] = row
                    found += 1
    return found


@numba.njit(cache=True, nogil=True)
def _column_runs_of(bits: np.ndarray, height: int, width: int, top: int, left: int) -> np.ndarray:
    """Column-major run lengths (0, 1, 0, ... from a zeros run) of a 0/1 uint8 crop placed at (top, left).

    A run starts or ends wherever a column of the crop changes value going down (rows above and below the
    crop are zero). Rows are compared `_BLOCK` columns at a time, so the equal stretches of neighbouring
    rows cost one vectorised pass; the changes, found row by row, are then sorted by column.
    """
    rows, cols = bits.shape
    zeros = np.zeros(cols, dtype=np.uint8)
    changes = np.empty((4 * (rows + cols), 2), dtype=np.int64)
    found, row = 0, 0
    while row <= rows:
        # Row 0 against the zeros above the crop, row `rows` is the zeros below it.
        if row == 0:
            counted = _row_changes(zeros, bits[0], 0, changes, found)
        elif row == rows:
            counted = _row_changes(bits[rows - 1], zeros, rows, changes, found)
        else:
            counted = _row_changes(bits[row - 1], bits[row], row, changes, found)
        if counted < 0:
            changes = np.concatenate((changes, np.empty_like(changes)))
            continue
        found = counted
        row += 1
    per_column = np.zeros(cols + 1, dtype=np.int64)
    for index in range(found):
        per_column[changes[index, 0] + 1] += 1
    # Counting sort by column (rows stay ascending within a column): image positions in column-major order.
    offsets = np.cumsum(per_column)
    positions = np.empty(found, dtype=np.int64)
    for index in range(found):
        col = changes[index, 0]
        positions[offsets[col]] = (left + col) * height + top + changes[index, 1]
        offsets[col] += 1
    # When the crop spans the image's height, a run that ends a column and one that starts the next meet at
    # the same position: they are one run, so both changes go.
    runs = np.empty(found + 1, dtype=np.int64)
    count, previous, index = 0, 0, 0
    while index < found:
        if index + 1 < found and positions[index + 1] == positions[index]:
            index += 2
            continue
        runs[count] = positions[index] - previous
        previous = positions[index]
        count += 1
        index += 1
    if previous < height * width:  # the zeros after the last run, when the mask ends before the image
        runs[count] = height * width - previous
        count += 1
    return runs[:count]


def _column_runs(mask: Mask) -> np.ndarray:
    """Column-major run lengths, starting with a (possibly empty) run of zeros."""
    if mask.is_empty:
        return np.array([mask.height * mask.width], dtype=np.int64)
    bits = np.ascontiguousarray(mask.bits).view(np.uint8)
    return _column_runs_of(bits, mask.height, mask.width, mask.top, mask.left)


@numba.njit(cache=True, nogil=True)
def _compress(runs: np.ndarray, chars: np.ndarray) -> int:
    """Write the counts string of `runs` into `chars` as pycocotools' rleToString; returns its length.

    From the fourth run on, each is written as the difference to the one two back; a number is 5-bit groups,
    low first, in chars 48 + group, with 0x20 on every group but the last (whose bit 0x10 is the sign).
    """
    used = 0
    for index in range(runs.size):
        number = runs[index] - runs[index - 2] if index > 2 else runs[index]
        more = True
        while more:
            group = number & 0x1F
            number >>= 5  # arithmetic: a negative number ends in -1
            more = number != -1 if group & 0x10 else number != 0
            chars[used] = group + _FIRST_CHAR + (_MORE if more else 0)
            used += 1
    return used


def encode_uncompressed(mask: Mask) -> dict:
    """`{"size": [h, w], "counts": [int, ...]}`, the list form COCO uses for crowd regions."""
    return {"size": [mask.height, mask.width], "counts": _column_runs(mask).tolist()}


def encode(mask: Mask) -> dict:
    """`{"size": [h, w], "counts": str}`, the compressed form, byte-identical to pycocotools' encode."""
    runs = _column_runs(mask)
    chars = np.empty(runs.size * _MAX_GROUPS, dtype=np.uint8)
    used = _compress(runs, chars)
    return {"size": [mask.height, mask.width], "counts": chars[:used].tobytes().decode("ascii")}


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
def _fill_foreground(runs: np.ndarray, offset: int, strip: np.ndarray, height: int) -> tuple[int, int]:
    """Set the pixels of the foreground (odd) runs in `strip`, which starts at pixel `offset`; returns the
    first and one past the last row they cover."""
    position = -offset
    top, bottom = height, 0
    for index in range(runs.size):
        if index % 2 == 1 and runs[index] > 0:
            strip[position : position + runs[index]] = True
            first, last = (position + offset) % height, (position + offset + runs[index] - 1) % height
            if runs[index] >= height or last < first:  # the run wraps into the next column
                top, bottom = 0, height
            else:
                top, bottom = min(top, first), max(bottom, last + 1)
        position += runs[index]
    return top, bottom


def _mask_from_runs(runs: np.ndarray, height: int, width: int) -> Mask:
    """The Mask of column-major runs (0, 1, 0, ...), built in the columns the foreground spans only; the
    runs give the tight box, so the crop is never scanned for it."""
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
    strip = np.zeros((right - left) * height, dtype=bool)
    top, bottom = _fill_foreground(runs, left * height, strip, height)
    rows = cv2.transpose(strip.view(np.uint8).reshape(right - left, height))
    return Mask(height, width, top, left, rows[top:bottom].view(bool).copy())


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
