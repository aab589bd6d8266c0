"""Label Studio brush RLE (`value.rle`): encode and decode, exact and fast.

The editor encodes the whole RGBA canvas of the image (`num = width * height * 4` bytes, row-major) with the
@thi.ng/rle-pack bit layout (docs/reference/label-studio-formats-and-rle.md §1):

    header: num (32 bits) | wordSize - 1 (5) | rleSizes[0..3] - 1 (4 each)
    groups: flag (1) | size class t (2) | count - 1 (rleSizes[t] bits)
            | flag 1: one word, repeated count times | flag 0: count literal words

bits MSB-first, zero-padded to a byte. Only the alpha channel (every 4th word) matters: current editors
write R = G = B = A, very old ones the label colour in R, G, B. So the encoder works on pixel runs of the
alpha plane (each run of L pixels is a run of 4L words) and the decoder yields runs of the alpha plane,
never the 4x buffer: `decode` paints them into the alpha plane, `decode_mask` thresholds them (each run has
one alpha value, so that is exact) and paints the mask's crop only, never a full-image array.
The sequential bitstream work runs in numba kernels (compiled once, cached on disk).

Alpha is anti-aliased (1..254 at stroke edges); `decode` keeps it and `to_mask` binarises it, by default at
alpha >= 128 (`threshold=1` gives the editor's own rule, alpha > 0).
"""

from __future__ import annotations

import numba
import numpy as np

from converters.errors import SegassistError
from converters.mask import Mask, raster_runs

DEFAULT_THRESHOLD = 128
HEADER_BITS = 53
# What every Label Studio encoder writes (8-bit words, these run-length classes; `_pack` hard-codes them);
# the decoder accepts any word size and classes a header declares.
RLE_SIZES = (3, 4, 8, 16)
MAX_RUN_WORDS = 1 << RLE_SIZES[-1]

# Kernel status codes.
_OK, _TRUNCATED, _OVERRUN, _WIDE_WORD = 0, 1, 2, 3
_STATUS_MESSAGES = {
    _TRUNCATED: "brush RLE stream is truncated (it ends before the declared {num} words)",
    _OVERRUN: "brush RLE stream is corrupt: a run goes past the declared {num} words",
    _WIDE_WORD: "brush RLE stream holds a word above 255, which is not an 8-bit alpha value",
}


# -- decoding --


@numba.njit(cache=True, nogil=True)
def _read_bits(data: np.ndarray, pos: int, count: int) -> int:
    """`count` (<= 32) bits starting at bit `pos`, MSB first; the caller has checked they exist."""
    first = pos >> 3
    last = (pos + count - 1) >> 3
    value = 0
    for index in range(first, last + 1):
        value = (value << 8) | data[index]
    return (value >> ((last + 1) * 8 - pos - count)) & ((1 << count) - 1)


@numba.njit(cache=True, nogil=True)
def _decode_runs(
    data: np.ndarray, num: int, word_size: int, sizes: np.ndarray, starts: np.ndarray, values: np.ndarray
) -> tuple[int, int]:
    """Parse the groups after the header into alpha runs; returns (status code, number of runs).

    Run i holds alpha `values[i]` from pixel `starts[i]` up to the next run's start (the last to the end);
    neighbouring runs differ. The arrays need room for one run per alpha word of the stream.
    """
    total_bits = data.size * 8
    pos = HEADER_BITS
    word = 0
    count = 0
    while word < num:
        if pos + 3 > total_bits:
            return _TRUNCATED, count
        head = _read_bits(data, pos, 3)
        size = sizes[head & 3]
        pos += 3
        if pos + size > total_bits:
            return _TRUNCATED, count
        end = word + _read_bits(data, pos, size) + 1
        pos += size
        if end > num:
            return _OVERRUN, count
        if head & 4:
            if pos + word_size > total_bits:
                return _TRUNCATED, count
            value = _read_bits(data, pos, word_size)
            pos += word_size
            if value > 255:
                return _WIDE_WORD, count
            # Words [word, end) hold the alpha of pixels word // 4 .. end // 4 - 1 (none when end // 4 is
            # word // 4: the group ends before the pixel's alpha word).
            if end >> 2 > word >> 2 and (count == 0 or values[count - 1] != value):
                starts[count] = word >> 2
                values[count] = value
                count += 1
        else:
            if pos + (end - word) * word_size > total_bits:
                return _TRUNCATED, count
            for index in range(word, end):
                value = _read_bits(data, pos, word_size)
                pos += word_size
                if value > 255:
                    return _WIDE_WORD, count
                if index & 3 == 3 and (count == 0 or values[count - 1] != value):
                    starts[count] = index >> 2
                    values[count] = value
                    count += 1
        word = end
    return _OK, count


@numba.njit(cache=True, nogil=True)
def _paint_runs(starts: np.ndarray, values: np.ndarray, alpha: np.ndarray) -> None:
    """Write the runs into the flat alpha plane."""
    for index in range(starts.size):
        end = starts[index + 1] if index + 1 < starts.size else alpha.size
        alpha[starts[index] : end] = values[index]


@numba.njit(cache=True, nogil=True)
def _runs_box(
    starts: np.ndarray, inside: np.ndarray, width: int, pixels: int
) -> tuple[int, int, int, int, int]:
    """(top, bottom, left, right, area) of the runs flagged `inside`, bounds inclusive; area 0 when none."""
    top, bottom, left, right, area = -1, -1, width, -1, 0
    for index in range(starts.size):
        if inside[index]:
            start = starts[index]
            stop = starts[index + 1] if index + 1 < starts.size else pixels
            area += stop - start
            first, last = start // width, (stop - 1) // width
            if top < 0:
                top = first
            bottom = last
            if first != last:  # the run wraps: it reaches both the last and the first column
                left, right = 0, width - 1
            else:
                left = min(left, start - first * width)
                right = max(right, stop - 1 - first * width)
    return top, bottom, left, right, area


@numba.njit(cache=True, nogil=True)
def _paint_crop(
    starts: np.ndarray, inside: np.ndarray, width: int, pixels: int, top: int, left: int, crop: np.ndarray
) -> None:
    """Write every pixel of `crop` (placed at `top`, `left`) in one sequential pass: True in the runs
    flagged `inside`, False elsewhere."""
    columns = crop.shape[1]
    flat = crop.reshape(crop.size)
    written = 0
    for index in range(starts.size):
        if inside[index]:
            start = starts[index]
            stop = starts[index + 1] if index + 1 < starts.size else pixels
            for row in range(start // width, (stop - 1) // width + 1):
                begin = (row - top) * columns + max(start - row * width, 0) - left
                end = (row - top) * columns + min(stop - row * width, width) - left
                flat[written:begin] = False
                flat[begin:end] = True
                written = end
    flat[written:] = False


def _as_bytes(rle: object) -> np.ndarray:
    """The RLE as a uint8 array; JSON gives a list of ints 0..255."""
    if isinstance(rle, bytes | bytearray | memoryview):
        return np.frombuffer(rle, dtype=np.uint8)
    if isinstance(rle, np.ndarray):
        if rle.ndim != 1 or not (np.issubdtype(rle.dtype, np.integer) or rle.dtype == bool):
            raise SegassistError(
                f"brush RLE must be a 1-D integer array, got {rle.dtype} with shape {rle.shape}"
            )
        if rle.size and (rle.min() < 0 or rle.max() > 255):
            raise SegassistError("brush RLE holds values outside 0..255")
        return rle.astype(np.uint8, copy=False)
    if isinstance(rle, list | tuple):
        try:
            return np.frombuffer(bytes(rle), dtype=np.uint8)
        except (TypeError, ValueError) as error:
            raise SegassistError(f"brush RLE must be a list of integers 0..255 ({error})") from None
    raise SegassistError(f"brush RLE must be a list of integers 0..255, got {type(rle).__name__}")


def _check_size(width: object, height: object) -> tuple[int, int]:
    if not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in (width, height)
    ):
        raise SegassistError(
            f"image size must be two positive integers, got width={width!r} height={height!r}"
        )
    return int(width), int(height)


def _alpha_runs(rle: object, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The alpha runs (starts, values) of a brush RLE, as `_decode_runs` gives them, checked."""
    width, height = _check_size(width, height)
    data = _as_bytes(rle)
    if data.size * 8 < HEADER_BITS:
        raise SegassistError(f"brush RLE is truncated: {data.size} bytes cannot hold the 53-bit header")
    header = int.from_bytes(data[:7].tobytes(), "big") >> (56 - HEADER_BITS)
    num = header >> 21
    word_size = ((header >> 16) & 31) + 1
    sizes = np.array([((header >> shift) & 15) + 1 for shift in (12, 8, 4, 0)], dtype=np.int64)
    if num != width * height * 4:
        raise SegassistError(
            f"brush RLE declares {num} values but a {width}x{height} image has {width * height * 4} "
            "(original_width x original_height x 4): the size or the stream is wrong"
        )
    # Every run takes at least one word of the stream, and a pixel holds at most one run.
    room = min((data.size * 8 - HEADER_BITS) // word_size, width * height) + 1
    starts = np.empty(room, dtype=np.int64)
    values = np.empty(room, dtype=np.uint8)
    status, count = _decode_runs(data, num, word_size, sizes, starts, values)
    if status != _OK:
        raise SegassistError(_STATUS_MESSAGES[status].format(num=num))
    return starts[:count], values[:count]


def decode(rle: object, width: int, height: int) -> np.ndarray:
    """The alpha plane (height, width) uint8 of a brush RLE, anti-aliased values kept.

    Raises SegassistError when the stream is not a valid RLE of a `width` x `height` RGBA image.
    """
    starts, values = _alpha_runs(rle, width, height)
    alpha = np.empty(int(width) * int(height), dtype=np.uint8)
    _paint_runs(starts, values, alpha)
    return alpha.reshape(int(height), int(width))


def alpha_histogram(rle: object, width: int, height: int) -> np.ndarray:
    """How many pixels have each alpha value 0..255 (int64, 256 counts), from the runs alone: QA measures
    soft edges with it without an image-size array."""
    starts, values = _alpha_runs(rle, width, height)
    lengths = np.diff(np.append(starts, int(width) * int(height)))
    return np.bincount(values, weights=lengths, minlength=256).astype(np.int64)


def check_threshold(threshold: int) -> None:
    """An alpha threshold must be 1..255 (0 would count every pixel of the image)."""
    if not 1 <= threshold <= 255:
        raise SegassistError(f"alpha threshold must be within 1..255, got {threshold}")


def to_mask(alpha: np.ndarray, threshold: int = DEFAULT_THRESHOLD) -> Mask:
    """The binary mask alpha >= `threshold` (1..255; 1 means any visible pixel, the editor's rule)."""
    check_threshold(threshold)
    return Mask.from_dense(alpha >= threshold)


def decode_mask(rle: object, width: int, height: int, threshold: int = DEFAULT_THRESHOLD) -> Mask:
    """`to_mask(decode(rle, width, height), threshold)`, built from the decoded runs and the crop only.

    Each run has one alpha value, so thresholding runs is exact; no full-image array is made.
    """
    starts, values = _alpha_runs(rle, width, height)
    check_threshold(threshold)
    width, height = int(width), int(height)
    inside = values >= threshold
    top, bottom, left, right, area = _runs_box(starts, inside, width, width * height)
    if area == 0:
        return Mask.empty(height, width)
    # Allocated by numpy, which asks for huge pages on big arrays: several times fewer page faults.
    crop = np.empty((bottom - top + 1, right - left + 1), dtype=bool)
    _paint_crop(starts, inside, width, width * height, top, left, crop)
    mask = Mask(height, width, top, left, crop)
    mask.area = area  # known from the runs: saves a pass over the crop (`area` is a cached property)
    return mask


# -- encoding --


@numba.njit(cache=True, nogil=True)
def _pack(values: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> int:
    """Write header and repeat groups for pixel runs into `out`; returns the number of bytes used."""
    num = 0
    for length in lengths:
        num += length * 4
    acc = num  # 32-bit count, then wordSize - 1 = 7, then the class sizes - 1: 2, 3, 7, 15.
    acc = (acc << 21) | (7 << 16) | (2 << 12) | (3 << 8) | (7 << 4) | 15
    bits = HEADER_BITS
    used = 0
    # Emit the header: the accumulator never holds more than 8 + 27 pending bits after this.
    while bits >= 8:
        out[used] = (acc >> (bits - 8)) & 255
        used += 1
        bits -= 8
    acc &= (1 << bits) - 1
    for run in range(values.size):
        words = lengths[run] * 4
        value = values[run]
        # A run longer than the largest class is split into 65536-word pieces, all in the largest class
        # (the remainder too), exactly as label-studio-sdk writes it.
        split = words > MAX_RUN_WORDS
        while words > 0:
            count = min(words, MAX_RUN_WORDS)
            words -= count
            if split:
                token, size = (0b111 << 16) | (count - 1), 19
            elif count <= 8:
                token, size = (0b100 << 3) | (count - 1), 6
            elif count <= 16:
                token, size = (0b101 << 4) | (count - 1), 7
            elif count <= 256:
                token, size = (0b110 << 8) | (count - 1), 11
            else:
                token, size = (0b111 << 16) | (count - 1), 19
            acc = (acc << (size + 8)) | (token << 8) | value
            bits += size + 8
            while bits >= 8:
                out[used] = (acc >> (bits - 8)) & 255
                used += 1
                bits -= 8
            acc &= (1 << bits) - 1
    if bits:
        out[used] = (acc << (8 - bits)) & 255
        used += 1
    return used


def _encode_runs(values: np.ndarray, lengths: np.ndarray, pixels: int) -> list[int]:
    if pixels * 4 >= 1 << 32:
        raise SegassistError(f"a {pixels}-pixel image is too large for brush RLE (its 32-bit count)")
    # Each run takes ceil(4L / 65536) groups of at most 27 bits.
    groups = values.size + pixels * 4 // MAX_RUN_WORDS + 1
    out = np.empty((HEADER_BITS + 27 * groups) // 8 + 1, dtype=np.uint8)
    used = _pack(values, lengths.astype(np.int64), out)
    return out[:used].tolist()


def encode(mask: np.ndarray) -> list[int]:
    """The brush RLE (list of ints 0..255) of a 2-D bool or uint8 array.

    True becomes alpha 255; uint8 values are kept as alpha (anti-aliased edges survive).
    """
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise SegassistError(
            f"a brush mask must be a 2-D array, got {getattr(mask, 'shape', type(mask).__name__)}"
        )
    if mask.dtype != bool and mask.dtype != np.uint8:
        raise SegassistError(f"a brush mask must be bool or uint8, got {mask.dtype}")
    height, width = mask.shape
    if not height or not width:
        raise SegassistError(f"a brush mask needs at least one pixel, got shape {mask.shape}")
    values, lengths = raster_runs(np.ascontiguousarray(mask), height, width, 0, 0)
    return _encode_runs(values, lengths, height * width)


def encode_mask(mask: Mask) -> list[int]:
    """The brush RLE of a `Mask` (alpha 255 inside), built from its crop without a full-image array."""
    if mask.height <= 0 or mask.width <= 0:
        raise SegassistError(f"a brush mask needs at least one pixel, got {mask.width}x{mask.height}")
    bits = np.ascontiguousarray(mask.bits)
    values, lengths = raster_runs(bits, mask.height, mask.width, mask.top, mask.left)
    return _encode_runs(values, lengths, mask.height * mask.width)
