"""`--fix OUTPUT`: what the repairs of every format share. Each format's repair lives with its checks
(`converters.qa.coco.CocoFixer`, `converters.qa.panoptic.PanopticFixer`) and writes through the format's
writer, as the run checks the items: the input is read once and never modified, and the output is renamed
into place only when the whole run succeeded.

COCO instance: area and bbox recomputed where QA flagged them, empty annotations dropped, and (with an overlap
policy) overlapping masks made exclusive by `converters.overlap.resolve`, the changed masks rendered by the
COCO writer (RLE). COCO panoptic: area and bbox recomputed from the PNG where flagged, segments without pixels
dropped, each PNG copied as it is. Annotation and segment ids are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from converters import overlap
from converters.errors import SegassistError
from converters.qa.core import FixRequest, FixResult


def check_request(request: FixRequest) -> None:
    if request.overlap_policy is not None and request.overlap_policy not in overlap.POLICIES[1:]:
        raise SegassistError(f"overlap policy must be one of {', '.join(overlap.POLICIES[1:])}")


def set_area_and_bbox(
    record: dict[str, Any], area: int, bbox: Sequence[int], change: dict[str, Any], result: FixResult
) -> None:
    """Replace the record's area and bbox with the measured ones, noting the old values in the change."""
    before = {"area": record.get("area"), "bbox": record.get("bbox")}
    record["area"], record["bbox"] = area, list(bbox)
    result.changes.append({**change, "action": "recomputed area and bbox", "before": before})
