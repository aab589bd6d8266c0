"""What the HTML report shows of a flagged image: its segments filled in colour over the photo, the segments
the findings name outlined in red, as a PNG thumbnail and a full-size JPEG.

The pictures are drawn where the image is checked (a worker), from the masks the check already holds, so the
report never reads the input again. Cropped masks are drawn at the picture's scale from their crops: no
full-image array per segment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from converters.mask import Mask

THUMBNAIL_SIDE = 360
# A click on a thumbnail opens the overlay at the image's own size, up to this side (keeps the file small).
FULL_SIDE = 2048
FULL_JPEG_QUALITY = 85
FILL_OPACITY = 0.45
OUTLINE_BGR = (0, 0, 255)
BACKGROUND_GREY = 40


@dataclass
class Overlay:
    """An image's segments: a label map (0 = nothing, k = segment k) when the format holds one, else the
    masks (segment k + 1 is masks[k]); `outlined` are the masks the findings name."""

    height: int
    width: int
    labels: np.ndarray | None = None
    masks: list[Mask] = field(default_factory=list)
    outlined: list[Mask] = field(default_factory=list)
    background: Path | None = None


@dataclass(frozen=True)
class Pictures:
    thumbnail_png: bytes
    full_jpeg: bytes


def pictures(overlay: Overlay) -> Pictures:
    """The overlay as a PNG thumbnail and as a full-size JPEG (side capped at FULL_SIDE); the photo
    background is read once for both."""
    photo = None
    if overlay.background is not None:
        try:
            with Image.open(overlay.background) as image:
                photo = cv2.cvtColor(
                    np.asarray(ImageOps.exif_transpose(image).convert("RGB")), cv2.COLOR_RGB2BGR
                )
        except OSError:
            photo = None
    longest = max(overlay.height, overlay.width)
    thumbnail = _draw(overlay, photo, min(1.0, THUMBNAIL_SIDE / longest))
    full = _draw(overlay, photo, min(1.0, FULL_SIDE / longest))
    ok_thumbnail, thumbnail_png = cv2.imencode(".png", thumbnail)
    ok_full, full_jpeg = cv2.imencode(".jpg", full, [cv2.IMWRITE_JPEG_QUALITY, FULL_JPEG_QUALITY])
    if not (ok_thumbnail and ok_full):
        raise RuntimeError("encoding an overlay failed")
    return Pictures(thumbnail_png.tobytes(), full_jpeg.tobytes())


def _palette(count: int) -> np.ndarray:
    """Distinct, deterministic BGR colours; entry 0 (no segment) is unused."""
    hues = (np.arange(count) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(count, 200, np.uint8), np.full(count, 255, np.uint8)], axis=1)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]


def _draw(overlay: Overlay, photo: np.ndarray | None, scale: float) -> np.ndarray:
    """The overlay drawn at `scale` over the photo (or a dark canvas), named segments outlined."""
    size = (max(1, round(overlay.width * scale)), max(1, round(overlay.height * scale)))
    if photo is not None:
        canvas = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    else:
        canvas = np.full((size[1], size[0], 3), BACKGROUND_GREY, np.uint8)
    if overlay.labels is not None:
        labels = cv2.resize(overlay.labels.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
    else:
        labels = np.zeros((size[1], size[0]), np.int32)
        for value, mask in enumerate(overlay.masks, start=1):
            placed = _scaled(mask, scale, size)
            if placed is not None:
                top, left, crop = placed
                window = labels[top : top + crop.shape[0], left : left + crop.shape[1]]
                window[crop > 0] = value
    colours = _palette(int(labels.max()) + 1)
    covered = labels > 0
    canvas[covered] = (canvas[covered] * (1 - FILL_OPACITY) + colours[labels[covered]] * FILL_OPACITY).astype(
        np.uint8
    )
    for mask in overlay.outlined:
        placed = _scaled(mask, scale, size)
        if placed is None:
            continue
        top, left, crop = placed
        # A one-pixel frame, so that a contour along the crop's edge is found whole.
        contours, _ = cv2.findContours(
            np.pad(crop, 1), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(left - 1, top - 1)
        )
        cv2.drawContours(canvas, contours, -1, OUTLINE_BGR, 2)
    return canvas


def _scaled(mask: Mask, scale: float, size: tuple[int, int]) -> tuple[int, int, np.ndarray] | None:
    """(top, left, crop) of the mask at `scale`, from its crop (never a full-size array); None when empty."""
    if mask.is_empty:
        return None
    rows, cols = mask.bits.shape
    top, left = min(round(mask.top * scale), size[1] - 1), min(round(mask.left * scale), size[0] - 1)
    height = max(1, min(round(rows * scale), size[1] - top))
    width = max(1, min(round(cols * scale), size[0] - left))
    crop = cv2.resize(mask.bits.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return top, left, crop
