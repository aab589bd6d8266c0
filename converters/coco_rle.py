"""COCO RLE (`segmentation` of crowd or RLE instances): size [height, width], column-major runs.

`counts` is either the compressed string pycocotools writes or a list of run lengths ("uncompressed",
seen on `iscrowd: 1` annotations). Runs alternate 0, 1, 0, ... starting with zeros (the first may be 0).
Encoding computes the column-major runs from the mask's crop (no full-image array) and lets pycocotools
compress them; decoding goes through pycocotools after checking what its C code does not.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as coco_mask

from converters.errors import SegassistError
from converters.mask import Mask, raster_runs

# Characters of the compressed alphabet: 48 + 6-bit groups; bit 0x20 says "more groups follow".
_FIRST_CHAR, _LAST_CHAR, _MORE = 48, 111, 0x20


def _column_runs(mask: Mask) -> list[int]:
    """Column-major run lengths, starting with a (possibly empty) run of zeros."""
    values, lengths = raster_runs(mask.bits.T, mask.width, mask.height, mask.left, mask.top)
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


def _checked_counts(counts: object, pixels: int) -> object:
    """The counts in the form pycocotools takes, once they are known to be safe for its C decoder."""
    if isinstance(counts, str):
        if not counts.isascii():
            raise SegassistError("COCO RLE counts string holds characters outside the compressed alphabet")
        counts = counts.encode("ascii")
    if isinstance(counts, bytes):
        chars = np.frombuffer(counts, dtype=np.uint8)
        if chars.size and (chars.min() < _FIRST_CHAR or chars.max() > _LAST_CHAR):
            raise SegassistError("COCO RLE counts string holds characters outside the compressed alphabet")
        # A last character that announces more groups would make the C parser read past the string's end.
        if chars.size and (chars[-1] - _FIRST_CHAR) & _MORE:
            raise SegassistError("COCO RLE counts string is truncated")
        return counts
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise SegassistError("COCO RLE counts must be non-negative integers")
        if sum(counts) != pixels:
            raise SegassistError(f"COCO RLE counts cover {sum(counts)} pixels, the size says {pixels}")
        return counts
    raise SegassistError(
        f"COCO RLE counts must be a string or a list of integers, got {type(counts).__name__}"
    )


def decode(rle: object, height: int | None = None, width: int | None = None) -> Mask:
    """The Mask of a COCO RLE dict (string, bytes or list counts); `height`/`width`, if given, must match."""
    if not isinstance(rle, dict):
        raise SegassistError(f"COCO RLE must be a dict with size and counts, got {type(rle).__name__}")
    rle_height, rle_width = _size(rle, height, width)
    counts = _checked_counts(rle.get("counts"), rle_height * rle_width)
    if rle_height * rle_width == 0:
        return Mask.empty(rle_height, rle_width)
    if isinstance(counts, list):
        compressed = coco_mask.frPyObjects(
            {"size": [rle_height, rle_width], "counts": counts}, rle_height, rle_width
        )
    else:
        compressed = {"size": [rle_height, rle_width], "counts": counts}
    try:
        dense = coco_mask.decode(compressed)
    except ValueError as error:  # pycocotools checks that the runs cover exactly height x width pixels
        raise SegassistError(
            f"COCO RLE counts do not match the size [{rle_height}, {rle_width}] ({error})"
        ) from None
    return Mask.from_dense(dense)
