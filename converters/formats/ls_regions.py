"""One Label Studio result dict ⇄ one Segment: the only place that knows how LS stores a region's geometry.

Reading accepts BrushLabels RLE (`value.rle`), BitmaskLabels (`value.imageDataURL`), PolygonLabels
(`value.points` in percent), RectangleLabels (a box in percent, rotated clockwise about its top-left
corner) and the `Brush`/`Polygon`/`Rectangle` + `Labels` variants whose label list is `value.labels`.
Writing produces BrushLabels RLE, PolygonLabels, BitmaskLabels or RectangleLabels results that Label Studio
imports.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from converters import bitmask, brush, polygons
from converters.errors import SegassistError
from converters.lsconfig import WRITABLE_TYPES, LabelConfig, Mismatch, region_geometry
from converters.mask import Mask
from converters.model import Origin, Segment

# Percent coordinates are written with this many decimals: 1e-6 % of a 100k-pixel side is 0.001 px.
PERCENT_DECIMALS = 6


def is_region(result: dict[str, Any]) -> bool:
    """Whether a result is a region with geometry (relations, choices, text areas ... are not)."""
    return region_geometry(result.get("type")) is not None


def result_label(result: dict[str, Any]) -> str:
    """The region's label: the first entry of value[<type>], or of value.labels for Brush + Labels configs."""
    value = result.get("value") or {}
    labels = value.get(result.get("type")) or value.get("labels")
    if not labels or not isinstance(labels, list) or not isinstance(labels[0], str):
        raise SegassistError("region has no label", region_id=result.get("id"))
    return labels[0]


def result_image_size(result: dict[str, Any], image_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(width, height) from the result's original_width/height, else `image_size` (from the image file)."""
    width, height = result.get("original_width"), result.get("original_height")
    if width and height:
        return int(width), int(height)
    if image_size is not None:
        return int(image_size[0]), int(image_size[1])
    raise SegassistError(
        "region has no original_width/original_height and the image size is unknown "
        "(pass the image folder so the size can be read from the file)",
        region_id=result.get("id"),
    )


def result_to_segment(
    result: dict[str, Any],
    *,
    category_id: int,
    alpha_threshold: int = 128,
    image_size: tuple[int, int] | None = None,
    origin: Origin | None = None,
) -> Segment:
    """Decode one LS result into a Segment.

    `image_size` is (width, height), used only when the result lacks original_width/height. `alpha_threshold`
    binarises anti-aliased brush and bitmask alpha (alpha >= threshold is foreground; 1 means any alpha > 0,
    which is what the LS editor shows). `origin` gives the file/task/annotation; the region id and score are
    taken from the result.
    """
    region_id = result.get("id")
    where = dataclasses.replace(origin or Origin(), region_id=region_id)
    try:
        mask = _decode_geometry(result, alpha_threshold, image_size)
    except SegassistError as error:
        raise error.at(**where.where()) from None
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise SegassistError(f"malformed {result.get('type')} region: {error!r}", **where.where()) from None
    score = result.get("score")
    return Segment(
        mask=mask,
        category_id=category_id,
        score=float(score) if score is not None else None,
        origin=where,
    )


def is_labelled_region(result: dict[str, Any]) -> bool:
    """Whether a result is a region or a labelled result without geometry (key points ...): what QA judges."""
    kind = result.get("type")
    return isinstance(kind, str) and (region_geometry(kind) is not None or kind.endswith("labels"))


@dataclasses.dataclass(frozen=True)
class RegionFacts:
    """What a region result declares, kept as written beside the segment read from it, so that QA judges it
    without parsing the result again. Facts past the first one that stops the read stay at their default."""

    id: Any
    type: str
    # False when `value` is not an object (nothing else is read).
    has_value: bool = True
    # The label list as written (value[<type>] or value.labels) and its first label ("" when there is none).
    labels: Any = None
    label: str = ""
    # How the result does not fit the labeling config (unknown labels and controls); empty without a config.
    mismatches: tuple[Mismatch, ...] = ()
    rotation: Any = 0
    geometry: str | None = None
    # PolygonLabels points in percent, (n, 2).
    polygon_points: np.ndarray | None = None
    # original_width / original_height as written.
    width: Any = None
    height: Any = None
    # The value count the brush RLE header declares (None when the header is not readable).
    rle_values: int | None = None
    # The (height, width) of the bitmask PNG.
    bitmask_shape: tuple[int, ...] | None = None
    # Pixels per alpha value 0..255 of a brush or bitmask region, from its runs or its PNG.
    alpha_histogram: np.ndarray | None = None


@dataclasses.dataclass
class RegionRead:
    """One region result read tolerantly (nothing is refused): its facts, and its segment (cropped mask) when
    it decodes at its declared size; `decode_error` says why a decodable region did not."""

    facts: RegionFacts
    segment: Segment | None = None
    decode_error: str | None = None


def read_region_tolerantly(
    result: dict[str, Any], alpha_threshold: int, config: LabelConfig | None, origin: Origin
) -> RegionRead:
    """A labelled region result as QA judges it; the segment's category is not resolved (category_id 0):
    the label is in the facts."""
    kind = result["type"]
    value = result.get("value")
    if not isinstance(value, dict):
        return RegionRead(RegionFacts(result.get("id"), kind, has_value=False))
    labels = value.get(kind) or value.get("labels")
    label = labels[0] if isinstance(labels, list) and labels and isinstance(labels[0], str) else ""
    mismatches = config.mismatches(result, labels if isinstance(labels, list) else []) if config else []
    facts = RegionFacts(
        result.get("id"),
        kind,
        labels=labels,
        label=label,
        mismatches=tuple(mismatches),
        rotation=result.get("image_rotation") or 0,
        geometry=region_geometry(kind),
    )
    if facts.geometry is None:
        return RegionRead(facts)  # key points and other labelled results carry no area
    if facts.geometry == "polygon":
        points = np.asarray(value.get("points") or [], dtype=np.float64).reshape(-1, 2)
        facts = dataclasses.replace(facts, polygon_points=points)
        if len(points) < 3:
            return RegionRead(facts)
    facts = dataclasses.replace(
        facts, width=result.get("original_width"), height=result.get("original_height")
    )
    if not facts.width or not facts.height:
        return RegionRead(facts)
    width, height = int(facts.width), int(facts.height)
    try:
        if facts.geometry == "brush":
            rle = value.get("rle")
            if isinstance(rle, list | bytes) and len(rle) >= 4 and all(isinstance(b, int) for b in rle[:4]):
                facts = dataclasses.replace(
                    facts, rle_values=int.from_bytes(bytes(b & 0xFF for b in rle[:4]), "big")
                )
                if facts.rle_values != width * height * 4:
                    return RegionRead(facts)
            # The alpha counts come from the RLE's runs and the mask from its crop: no image-size plane.
            facts = dataclasses.replace(facts, alpha_histogram=brush.alpha_histogram(rle, width, height))
            mask = brush.decode_mask(rle, width, height, alpha_threshold)
        elif facts.geometry == "bitmask":
            alpha = bitmask.decode(value.get("imageDataURL"))
            facts = dataclasses.replace(facts, bitmask_shape=alpha.shape)
            if alpha.shape != (height, width):
                return RegionRead(facts)
            histogram = np.bincount(alpha.ravel(), minlength=256)
            facts = dataclasses.replace(facts, alpha_histogram=histogram)
            mask = brush.to_mask(alpha, alpha_threshold)
        else:
            mask = result_to_segment(result, category_id=0).mask
    except SegassistError as error:
        return RegionRead(facts, decode_error=error.reason)
    where = dataclasses.replace(origin, region_id=result.get("id"))
    score = result.get("score")
    score = float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
    segment = Segment(mask=mask, category_id=0, score=score, origin=where)
    return RegionRead(facts, segment)


def _decode_geometry(
    result: dict[str, Any], alpha_threshold: int, image_size: tuple[int, int] | None
) -> Mask:
    kind = result.get("type")
    geometry = region_geometry(kind)
    value = result["value"]
    width, height = result_image_size(result, image_size)
    if geometry == "brush":
        if value.get("format", "rle") != "rle" or "rle" not in value:
            raise SegassistError(
                "brush region has no RLE (only submitted brush regions with format 'rle' are read)"
            )
        return brush.decode_mask(value["rle"], width, height, threshold=alpha_threshold)
    if geometry == "bitmask":
        return bitmask.decode_mask(value["imageDataURL"], width, height, threshold=alpha_threshold)
    if geometry == "polygon":
        return polygons.ls_to_mask(value["points"], width, height)
    if geometry == "rectangle":
        return polygons.rectangle_to_mask(
            float(value["x"]),
            float(value["y"]),
            float(value["width"]),
            float(value["height"]),
            float(value.get("rotation") or 0),
            width,
            height,
        )
    raise SegassistError(f"unsupported region type {kind!r}")


def segment_to_result(
    segment: Segment,
    *,
    from_name: str,
    to_name: str,
    control_type: str,
    label: str,
    region_id: str | None = None,
    polygon_tolerance: float = 1.0,
) -> dict[str, Any]:
    """One LS result for a segment, importable as an annotation or a prediction.

    The region id is `region_id`, else the segment's source region id, else a hash of its content (stable
    between runs). PolygonLabels holds one ring per region: a segment with several parts is written as its
    largest part and holes are filled (write brushes when that loss matters).
    """
    if control_type not in WRITABLE_TYPES:
        raise ValueError(f"control_type must be one of {WRITABLE_TYPES}, got {control_type!r}")
    mask = segment.mask
    if control_type == "brushlabels":
        value: dict[str, Any] = {"format": "rle", "rle": brush.encode_mask(mask)}
    elif control_type == "bitmasklabels":
        value = {"imageDataURL": bitmask.encode_mask(mask)}
    elif control_type == "polygonlabels":
        value = {"points": _largest_ring_percent(mask, polygon_tolerance), "closed": True}
    else:
        x, y, w, h = mask.bbox
        value = {
            "x": _percent(x, mask.width),
            "y": _percent(y, mask.height),
            "width": _percent(w, mask.width),
            "height": _percent(h, mask.height),
            "rotation": 0,
        }
    value[control_type] = [label]
    result: dict[str, Any] = {
        "id": region_id or _region_id(segment),
        "type": control_type,
        "from_name": from_name,
        "to_name": to_name,
        "original_width": mask.width,
        "original_height": mask.height,
        "image_rotation": 0,
        "value": value,
    }
    if segment.score is not None:
        result["score"] = float(segment.score)
    return result


def _percent(pixels: float, size: int) -> float:
    return round(pixels * 100.0 / size, PERCENT_DECIMALS)


def _largest_ring_percent(mask: Mask, tolerance: float) -> list[list[float]]:
    rings = polygons.mask_to_polygons(mask, tolerance=tolerance).polygons
    if not rings:
        raise SegassistError("segment is too small to be written as a polygon")
    ring = max(rings, key=_shoelace_area)
    return [
        [_percent(ring[i], mask.width), _percent(ring[i + 1], mask.height)] for i in range(0, len(ring), 2)
    ]


def _shoelace_area(ring: list[float]) -> float:
    xs, ys = ring[0::2], ring[1::2]
    return abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2


def _region_id(segment: Segment) -> str:
    """The source's region id when there is one, else a content hash (LS ids are short strings)."""
    if segment.origin.region_id is not None:
        return str(segment.origin.region_id)
    mask = segment.mask
    digest = hashlib.sha1(
        repr((segment.category_id, mask.shape, mask.top, mask.left, mask.bits.shape)).encode()
        + mask.bits.tobytes()
    )
    return digest.hexdigest()[:10]
