"""Label Studio BitmaskLabels (`value.imageDataURL`): a full-image PNG as a base64 data URL.

The editor draws the region black on a transparent canvas; the mask is the PNG's alpha channel (a pixel is
shown when alpha > 0). `decode` returns that alpha plane; `brush.to_mask` turns it into a Mask with the same
threshold rule as brush RLE. A PNG without an alpha channel is opaque everywhere, as in the browser.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from converters.brush import DEFAULT_THRESHOLD, to_mask
from converters.errors import SegassistError
from converters.mask import Mask

PREFIX = "data:image/png;base64,"


def encode(mask: np.ndarray) -> str:
    """A PNG data URL of a 2-D bool or uint8 array: black pixels whose alpha is the mask (True -> 255)."""
    if (
        not isinstance(mask, np.ndarray)
        or mask.ndim != 2
        or mask.dtype not in (np.dtype(bool), np.dtype(np.uint8))
    ):
        raise SegassistError(
            f"a bitmask must be a 2-D bool or uint8 array, got {getattr(mask, 'dtype', type(mask).__name__)} "
            f"with shape {getattr(mask, 'shape', None)}"
        )
    if 0 in mask.shape:
        raise SegassistError(f"a bitmask needs at least one pixel, got shape {mask.shape}")
    alpha = mask.view(np.uint8) * np.uint8(255) if mask.dtype == bool else mask
    rgba = np.zeros((*mask.shape, 4), dtype=np.uint8)
    rgba[:, :, 3] = alpha
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    return PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def encode_mask(mask: Mask) -> str:
    """The data URL of a Mask (alpha 255 inside)."""
    return encode(mask.dense())


def decode(data_url: object) -> np.ndarray:
    """The alpha plane (height, width) uint8 of a PNG data URL."""
    if not isinstance(data_url, str):
        raise SegassistError(f"a bitmask must be a PNG data URL string, got {type(data_url).__name__}")
    head, comma, payload = data_url.partition(",")
    if not comma or not head.startswith("data:image/") or not head.endswith(";base64"):
        raise SegassistError(f"a bitmask must be a 'data:image/png;base64,...' URL, got {data_url[:40]!r}")
    try:
        png = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SegassistError(f"bitmask data URL holds invalid base64 ({error})") from None
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            image.load()
            rgba = image if image.mode in ("RGBA", "LA") else image.convert("RGBA")
            return np.asarray(rgba.getchannel("A"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise SegassistError("bitmask data URL does not hold a valid PNG image") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise SegassistError(f"bitmask data URL does not hold a valid PNG image ({error})") from None


def decode_mask(data_url: object, width: int, height: int, threshold: int = DEFAULT_THRESHOLD) -> Mask:
    """The Mask of a bitmask data URL (alpha >= threshold), checking the PNG is `width` x `height`."""
    alpha = decode(data_url)
    if alpha.shape != (height, width):
        raise SegassistError(
            f"bitmask PNG is {alpha.shape[1]}x{alpha.shape[0]} but the image is {width}x{height}"
        )
    return to_mask(alpha, threshold)
