"""Label Studio BitmaskLabels PNG data URLs: round trips, PNG variants, bad input and fuzzing.
label-studio-sdk has no bitmask decoder; OpenCV's PNG decoder (libpng, as in browsers) is the oracle."""

from __future__ import annotations

import base64
import io

import cv2
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


def _opencv_alpha(png: bytes) -> np.ndarray | None:
    """The alpha plane as libpng gives it (16-bit samples reduced to their high byte, as browsers draw
    them); no alpha channel is opaque. None where OpenCV refuses the PNG."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        return image[..., 3]
    return np.full(image.shape[:2], 255, dtype=np.uint8)


def _assert_agrees_with_opencv(png: bytes) -> bool:
    """Decode with ours; where OpenCV accepts the PNG too, the alpha planes are equal. Returns whether both
    accepted it."""
    try:
        alpha = bitmask.decode("data:image/png;base64," + base64.b64encode(png).decode())
    except SegassistError:
        return False
    assert alpha.ndim == 2 and alpha.dtype == np.uint8
    expected = _opencv_alpha(png)
    if expected is None:
        return False
    assert np.array_equal(alpha, expected)
    return True


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=96), st.booleans())
def test_fuzzed_payloads_give_an_alpha_plane_or_segassist_error(payload, with_png_signature):
    _assert_agrees_with_opencv((b"\x89PNG\r\n\x1a\n" if with_png_signature else b"") + payload)


@st.composite
def _pngs(draw) -> bytes:
    """PNGs of every kind an editor or a script may write: grey, RGB and RGBA in 8 and 16 bits (OpenCV's
    encoder), grey + alpha and palettes with transparency (Pillow's), some with a byte changed."""
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["cv1", "cv3", "cv4", "LA", "P"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind.startswith("cv"):
        channels = int(kind[2])
        dtype = draw(st.sampled_from([np.uint8, np.uint16]))
        shape = (height, width) if channels == 1 else (height, width, channels)
        pixels = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
        png = cv2.imencode(".png", pixels)[1].tobytes()
    else:
        buffer = io.BytesIO()
        if kind == "LA":
            Image.fromarray(rng.integers(0, 256, (height, width, 2), dtype=np.uint8), "LA").save(
                buffer, "PNG"
            )
        else:
            palette = Image.fromarray(rng.integers(0, 4, (height, width), dtype=np.uint8), "P")
            palette.putpalette(rng.integers(0, 256, 12).tolist())
            palette.save(buffer, "PNG", transparency=bytes(rng.integers(0, 256, 4).tolist()))
        png = buffer.getvalue()
    if draw(st.booleans()):
        position = draw(st.integers(0, len(png) - 1))
        png = png[:position] + bytes([png[position] ^ draw(st.integers(1, 255))]) + png[position + 1 :]
    return png


@settings(deadline=None, max_examples=300)
@given(_pngs())
def test_pngs_of_every_kind_decode_like_opencv(png):
    _assert_agrees_with_opencv(png)


def test_the_opencv_comparison_sees_pngs_both_sides_accept():
    png = cv2.imencode(".png", np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10)[1].tobytes()
    assert _assert_agrees_with_opencv(png)
