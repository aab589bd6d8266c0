"""Engine segments -> one Label Studio prediction per task, in two stages the app times separately.

`shape` applies the score threshold and the mode (semantic: one region per label; instance: one per object;
panoptic: the engine's candidates made exclusive by the converters' overlap module, the one exclusivity step,
under the engine's `PanopticRule`), maps categories to the config's labels (unmapped ones are dropped) and
keeps the best `max_regions`. `encode` writes each region through the
converters' Label Studio region writer, in the control type the config has.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from converters import Category, Segment
from converters.errors import SegassistError
from converters.formats.ls_regions import segment_to_result
from converters.overlap import OverlapReport, resolve
from ml_backend.engines.base import PanopticRule
from ml_backend.labeling import LabelConfigInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabeledSegment:
    segment: Segment
    label: str


def shape(
    segments: Sequence[Segment],
    info: LabelConfigInfo | None,
    *,
    mode: str,
    categories: Sequence[Category],
    score_threshold: float,
    max_regions: int,
    panoptic_rule: PanopticRule | None = None,
) -> tuple[list[LabeledSegment], OverlapReport | None]:
    """The regions to write for one image, best score first, and in panoptic mode the exclusivity report.
    Without a label config every category is kept, labelled with its name. `panoptic_rule`: the engine's
    (default: exclusivity alone, nothing dropped for what it keeps)."""
    if info is None:
        label_for_category = {category.id: category.name for category in categories}
    else:
        label_for_category = info.label_for_category
    candidates = [
        segment
        for segment in segments
        if not segment.mask.is_empty and (segment.score is None or segment.score >= score_threshold)
    ]
    report = None
    if mode == "panoptic":
        rule = panoptic_rule or PanopticRule()
        # Every class takes part, labelled or not: what the model sees as a person stays void, not the stuff
        # under it, when the config has no person label.
        candidates, report = resolve(
            candidates,
            "score",
            categories=categories,
            things_over_stuff=True,
            min_kept_fraction=rule.min_kept_fraction,
            stuff_min_kept_fraction=0.0,
            stuff_min_area=rule.stuff_min_area,
        )
        if report.changes:
            log.debug("panoptic output: %s", report.summary())
    labeled = [
        LabeledSegment(segment, label_for_category[segment.category_id])
        for segment in candidates
        if segment.category_id in label_for_category
    ]
    if mode == "semantic":
        labeled = _one_per_label(labeled)
    labeled.sort(key=lambda item: -(item.segment.score or 0.0))
    return labeled[:max_regions], report


def _one_per_label(labeled: list[LabeledSegment]) -> list[LabeledSegment]:
    """Union the masks of each label; the score is the area-weighted mean of the parts' scores."""
    merged: dict[str, list[Segment]] = {}
    for item in labeled:
        merged.setdefault(item.label, []).append(item.segment)
    return [LabeledSegment(Segment.union(parts), label) for label, parts in merged.items()]


def encode(labeled: Sequence[LabeledSegment], info: LabelConfigInfo, model_version: str) -> dict:
    """One Label Studio prediction: the regions, their mean score, the model version."""
    output = info.output
    results = []
    for index, item in enumerate(labeled):
        try:
            results.append(
                segment_to_result(
                    item.segment,
                    from_name=output.name,
                    to_name=output.to_name,
                    control_type=output.type,
                    label=item.label,
                    region_id=f"seg{index}",
                )
            )
        except SegassistError as error:
            # A region too small for a polygon is not worth failing the task for.
            log.debug("region %d (%s) not written: %s", index, item.label, error)
    scores = [result["score"] for result in results if "score" in result]
    return {
        "result": results,
        "score": sum(scores) / len(scores) if scores else 0.0,
        "model_version": model_version,
    }


def empty_prediction(model_version: str) -> dict:
    """What a task gets when it cannot be predicted (the reason is logged, not sent)."""
    return {"result": [], "score": 0.0, "model_version": model_version}


def prediction_json(prediction: dict) -> bytes:
    """The prediction as JSON. orjson writes the brush RLE int lists several times faster than the json
    module, so the GIL is held far shorter for many full-size masks, which would otherwise stall /health
    and the model's Python between ops (the `json` stage in BENCHMARKS.md, backend section). numpy
    scalars are written as numbers, as json wrote numpy's float64."""
    return orjson.dumps(prediction, option=orjson.OPT_SERIALIZE_NUMPY)
