"""The fast id-PNG decoder against Pillow's decoding (R + 256·G + 256²·B), over every PNG row filter, RGB and
RGBA, and the PNGs it must leave to the ordinary decoder."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from converters import id_png
from converters.id_png import decode_ids


def _png(array: np.ndarray, mode: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _ids(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_ids_equal_pillows_decoding(mode, level):
    rng = np.random.default_rng(level)
    # blocks (long runs: Sub/Up filters) plus noise (Average/Paeth), so that the encoder uses every filter
    blocks = np.repeat(np.repeat(rng.integers(0, 256, (6, 9, len(mode))), 11, 0), 13, 1).astype(np.uint8)
    noisy = blocks.copy()
    noisy[::3] = rng.integers(0, 256, noisy[::3].shape).astype(np.uint8)
    if mode == "RGBA":
        noisy[..., 3] = np.where(rng.random(noisy.shape[:2]) < 0.2, 9, 255)
    data = _png(noisy, mode, compress_level=level)
    ids, decoded_mode, translucent = decode_ids(data)
    reference = np.asarray(Image.open(io.BytesIO(data)))
    assert decoded_mode == mode
    assert np.array_equal(ids, _ids(reference[..., :3]))
    assert translucent == (int(np.count_nonzero(reference[..., 3] != 255)) if mode == "RGBA" else 0)


def test_every_filter_type_is_undone():
    """OpenCV writes with one filter when asked; each of the five must decode to the same ids."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (31, 47, 3)).astype(np.uint8)
    for strategy in (cv2.IMWRITE_PNG_STRATEGY_DEFAULT, cv2.IMWRITE_PNG_STRATEGY_FILTERED):
        ok, data = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_STRATEGY, strategy])
        assert ok
        assert np.array_equal(decode_ids(data.tobytes())[0], _ids(rgb))
    for filter_type in ("NONE", "SUB", "UP", "AVG", "PAETH"):
        flag = getattr(cv2, f"IMWRITE_PNG_FILTER_{filter_type}")
        ok, data = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_FILTER, flag])
        assert ok
        assert np.array_equal(decode_ids(data.tobytes())[0], _ids(rgb)), filter_type


def test_other_pngs_are_left_to_the_ordinary_decoder():
    grey = np.zeros((4, 5), np.uint8)
    assert decode_ids(_png(grey, "L")) is None
    palette = Image.fromarray(np.zeros((4, 5, 3), np.uint8)).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    assert decode_ids(buffer.getvalue()) is None
    ok, sixteen = cv2.imencode(".png", np.zeros((4, 5, 3), np.uint16))
    assert decode_ids(sixteen.tobytes()) is None
    assert decode_ids(b"not a png") is None
    good = _png(np.zeros((4, 5, 3), np.uint8), "RGB")
    assert decode_ids(good[:-30]) is None  # truncated image data


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("block", [2**16, 2**17])
def test_images_larger_than_one_inflated_block(mode, block, monkeypatch):
    """The image data is inflated and unfiltered a block of rows at a time (id_png._BLOCK bytes, made smaller
    here): rows on either side of each block boundary, under every filter type, must decode as Pillow
    decodes them."""
    monkeypatch.setattr(id_png, "_BLOCK", block)
    rng = np.random.default_rng(7)
    # blocks of an odd number of rows (23 to 63); the width is not a multiple of the 4 pixels read as 3 words
    height, width = 151, 689
    assert height * (width * len(mode) + 1) > 2 * block
    pixels = np.repeat(rng.integers(0, 256, (height, width // 7 + 1, len(mode))), 7, 1)[:, :width]
    pixels[::5] = rng.integers(0, 256, pixels[::5].shape)
    pixels = pixels.astype(np.uint8)
    for filter_type in ("NONE", "SUB", "UP", "AVG", "PAETH"):
        flag = getattr(cv2, f"IMWRITE_PNG_FILTER_{filter_type}")
        order = [2, 1, 0, 3][: len(mode)]  # OpenCV writes BGR(A)
        ok, data = cv2.imencode(".png", pixels[..., order], [cv2.IMWRITE_PNG_FILTER, flag])
        assert ok
        ids, decoded_mode, translucent = decode_ids(data.tobytes())
        reference = np.asarray(Image.open(io.BytesIO(data.tobytes())))
        assert decoded_mode == mode
        assert np.array_equal(ids, _ids(reference[..., :3])), filter_type
        if mode == "RGBA":
            assert translucent == int(np.count_nonzero(reference[..., 3] != 255))
