"""A fast decoder for the PNGs that hold segment ids (COCO panoptic: id = R + 256·G + 256²·B).

Such PNGs are 8-bit RGB or RGBA, not interlaced: the decoder inflates the image data with ISA-L (igzip, about
4x zlib's speed here) and undoes the row filters and forms the ids in one compiled pass, straight into a
uint32 map, without an RGB image in between. Both steps release the GIL, so images decode in parallel threads.
Any other PNG (palette, grey, 16-bit, interlaced) or a damaged one gives None, and the caller decodes it the
ordinary way (which also names what is wrong).
"""

from __future__ import annotations

import struct
import zlib

import numba
import numpy as np
from isal import isal_zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # PNG colour type -> bytes per pixel at bit depth 8 (RGB, RGBA)


@numba.njit(cache=True, nogil=True)
def _unfilter_row(
    kind: int, row: np.ndarray, previous: np.ndarray, current: np.ndarray, channels: int
) -> bool:
    """PNG row filter `kind` undone: `current` from the filtered `row` and the previous unfiltered row."""
    stride = row.size
    if kind == 0:
        current[:] = row
    elif kind == 1:
        current[:channels] = row[:channels]
        for i in range(channels, stride):
            current[i] = row[i] + current[i - channels]
    elif kind == 2:
        for i in range(stride):
            current[i] = row[i] + previous[i]
    elif kind == 3:
        for i in range(channels):
            current[i] = row[i] + (previous[i] >> 1)
        for i in range(channels, stride):
            current[i] = row[i] + ((np.int32(current[i - channels]) + np.int32(previous[i])) >> 1)
    elif kind == 4:
        for i in range(channels):
            current[i] = row[i] + previous[i]  # Paeth with no left neighbour picks the pixel above
        for i in range(channels, stride):
            left, up, corner = (
                np.int32(current[i - channels]),
                np.int32(previous[i]),
                np.int32(previous[i - channels]),
            )
            estimate = left + up - corner
            to_left, to_up, to_corner = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
            if to_left <= to_up and to_left <= to_corner:
                current[i] = row[i] + left
            elif to_up <= to_corner:
                current[i] = row[i] + up
            else:
                current[i] = row[i] + corner
    else:
        return False
    return True


@numba.njit(cache=True, nogil=True)
def _unfilter_ids(raw: np.ndarray, height: int, width: int, channels: int, ids: np.ndarray) -> int:
    """Undo the row filters of `raw` (filter byte + row bytes, per row) into `ids`; returns the number of
    pixels whose alpha is not 255 (RGBA), or -1 when a filter byte is invalid or the data is short."""
    stride = width * channels
    if raw.size < height * (stride + 1):
        return -1
    previous = np.zeros(stride, np.uint8)
    current = np.zeros(stride, np.uint8)
    translucent = 0
    for y in range(height):
        start = y * (stride + 1)
        if not _unfilter_row(raw[start], raw[start + 1 : start + 1 + stride], previous, current, channels):
            return -1
        for x in range(width):
            base = x * channels
            ids[y, x] = (
                np.uint32(current[base])
                | (np.uint32(current[base + 1]) << 8)
                | (np.uint32(current[base + 2]) << 16)
            )
            if channels == 4 and current[base + 3] != 255:
                translucent += 1
        previous, current = current, previous
    return translucent


def decode_ids(data: bytes) -> tuple[np.ndarray, str, int] | None:
    """(uint32 id map, "RGB" or "RGBA", pixels whose alpha is not 255) of an 8-bit RGB/RGBA PNG; None for any
    other PNG."""
    if not data.startswith(_SIGNATURE):
        return None
    position, header, parts = len(_SIGNATURE), None, []
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            parts.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None or not parts:
        return None
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in _CHANNELS or interlace != 0 or not width or not height:
        return None
    try:
        raw = isal_zlib.decompress(b"".join(parts))
    except (isal_zlib.error, zlib.error):
        return None
    ids = np.empty((height, width), np.uint32)
    translucent = _unfilter_ids(np.frombuffer(raw, np.uint8), height, width, _CHANNELS[colour], ids)
    return None if translucent < 0 else (ids, "RGBA" if colour == 6 else "RGB", translucent)
