"""Label Studio BitmaskLabels PNG data URLs: round trips, PNG variants, bad input and fuzzing."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from converters import bitmask
from converters.errors import SegassistError
from converters.mask import Mask
from tests.unit.codecs_strategies import alpha_planes, bool_masks

SETTINGS = settings(deadline=None, max_examples=100)


def _data_url(image: Image.Image, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@SETTINGS
@given(alpha_planes())
def test_alpha_round_trips_as_black_rgba(alpha):
    url = bitmask.encode(alpha)
    assert url.startswith("data:image/png;base64,")
    assert np.array_equal(bitmask.decode(url), alpha)
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.mode == "RGBA"
    assert not np.asarray(image)[..., :3].any()


@SETTINGS
@given(bool_masks())
def test_masks_round_trip(dense):
    mask = Mask.from_dense(dense)
    url = bitmask.encode_mask(mask)
    assert url == bitmask.encode(dense)
    assert bitmask.decode_mask(url, dense.shape[1], dense.shape[0]) == mask


def test_png_without_alpha_is_opaque_and_palette_transparency_is_alpha():
    assert bitmask.decode(_data_url(Image.new("L", (3, 2), 0))).tolist() == [[255] * 3] * 2
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert bitmask.decode(_data_url(palette)).tolist() == [[0, 255]]


def test_threshold_and_size_checks():
    url = bitmask.encode(np.array([[0, 1, 200]], dtype=np.uint8))
    assert bitmask.decode_mask(url, 3, 1).area == 1
    assert bitmask.decode_mask(url, 3, 1, threshold=1).area == 2
    with pytest.raises(SegassistError, match="PNG is 3x1 but the image is 1x3"):
        bitmask.decode_mask(url, 1, 3)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "data URL string"),
        (b"data:image/png;base64,", "data URL string"),
        ("iVBORw0KGgo=", "data:image/png;base64"),
        ("data:text/plain;base64,aGk=", "data:image/png;base64"),
        ("data:image/png;base64,not base64!", "invalid base64"),
        ("data:image/png;base64,aGVsbG8=", "valid PNG"),
    ],
)
def test_bad_input_raises(url, message):
    with pytest.raises(SegassistError, match=message):
        bitmask.decode(url)


def test_truncated_and_non_png_images_raise():
    png = base64.b64decode(bitmask.encode(np.eye(40, dtype=bool)).split(",", 1)[1])
    for cut in (8, 33, len(png) // 2):
        with pytest.raises(SegassistError, match="valid PNG"):
            bitmask.decode("data:image/png;base64," + base64.b64encode(png[:cut]).decode())
    with pytest.raises(SegassistError, match="valid PNG"):
        bitmask.decode(_data_url(Image.new("RGB", (4, 4)), format="JPEG"))


@pytest.mark.parametrize(
    "mask", [np.zeros((2, 2)), np.zeros((2, 2, 4), dtype=np.uint8), np.zeros((0, 3), dtype=bool)]
)
def test_encode_rejects_what_is_not_a_2d_bool_or_uint8_array(mask):
    with pytest.raises(SegassistError, match="bitmask"):
        bitmask.encode(mask)


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=96), st.booleans())
def test_fuzzed_payloads_give_an_alpha_plane_or_segassist_error(payload, with_png_signature):
    data = (b"\x89PNG\r\n\x1a\n" if with_png_signature else b"") + payload
    try:
        alpha = bitmask.decode("data:image/png;base64," + base64.b64encode(data).decode())
    except SegassistError:
        return
    assert alpha.ndim == 2 and alpha.dtype == np.uint8
