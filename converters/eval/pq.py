"""Panoptic quality exactly as panopticapi's `pq_compute` defines it, from the pair counts of each image.

Per image (panopticapi's `pq_compute_single_core`):
- a GT and a predicted segment of the same category match when IoU > 0.5, where the union leaves out the
  predicted pixels that lie on GT void; crowd GT segments never match (the 0.5 threshold and non-overlap make
  every match unique);
- an unmatched non-crowd GT segment is a false negative;
- an unmatched predicted segment is a false positive unless more than half of it lies on GT void or on the GT
  crowd region of its category (like panopticapi, one crowd region per category and image is remembered: the
  last one listed).
Per class PQ = (sum of matched IoUs) / (TP + FP/2 + FN/2) = SQ × RQ; All/Things/Stuff average the classes
that occur (TP + FP + FN > 0). Areas are pixel counts, never the declared `area`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from converters.eval.core import VOID, IdImage, ImagePair, PairCounts, WorstImages
from converters.model import Category

MATCH_IOU = 0.5


@dataclass
class ImageMatch:
    """The matching of one image: (gt id, pred id, IoU) per match, unmatched segments counted as FN / FP."""

    matches: list[tuple[int, int, float]] = field(default_factory=list)
    false_negatives: list[int] = field(default_factory=list)
    false_positives: list[int] = field(default_factory=list)


def match_image(gt: IdImage, pred: IdImage, counts: PairCounts) -> ImageMatch:
    gt_areas, pred_areas = counts.gt_areas, counts.pred_areas
    on_void: dict[int, int] = {}
    overlaps: dict[tuple[int, int], int] = {}
    for gt_id, pred_id, count in counts.items():
        if gt_id == VOID:
            on_void[pred_id] = count
        overlaps[gt_id, pred_id] = count
    result = ImageMatch()
    gt_matched, pred_matched = set(), set()
    for (gt_id, pred_id), intersection in overlaps.items():
        if gt_id not in gt.segments or pred_id not in pred.segments:
            continue
        gt_category, crowd = gt.segments[gt_id]
        if crowd or gt_category != pred.segments[pred_id][0]:
            continue
        union = pred_areas[pred_id] + gt_areas[gt_id] - intersection - on_void.get(pred_id, 0)
        iou = intersection / union
        if iou > MATCH_IOU:
            result.matches.append((gt_id, pred_id, iou))
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)
    crowd_of_category: dict[int, int] = {}
    for gt_id, (category_id, crowd) in gt.segments.items():
        if gt_id in gt_matched:
            continue
        if crowd:
            crowd_of_category[category_id] = gt_id
        else:
            result.false_negatives.append(gt_id)
    for pred_id, (category_id, _) in pred.segments.items():
        if pred_id in pred_matched:
            continue
        ignored = on_void.get(pred_id, 0)
        if category_id in crowd_of_category:
            ignored += overlaps.get((crowd_of_category[category_id], pred_id), 0)
        if ignored / pred_areas[pred_id] > MATCH_IOU:
            continue
        result.false_positives.append(pred_id)
    return result


@dataclass
class ClassStats:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou: float = 0.0

    @property
    def occurs(self) -> bool:
        return self.tp + self.fp + self.fn > 0

    def scores(self) -> dict[str, float]:
        denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
        return {
            "pq": self.iou / denominator,
            "sq": self.iou / self.tp if self.tp else 0.0,
            "rq": self.tp / denominator,
        }


def class_stats(gt: IdImage, pred: IdImage, match: ImageMatch) -> dict[int, ClassStats]:
    stats: dict[int, ClassStats] = {}
    for gt_id, _, iou in match.matches:
        entry = stats.setdefault(gt.segments[gt_id][0], ClassStats())
        entry.tp += 1
        entry.iou += iou
    for gt_id in match.false_negatives:
        stats.setdefault(gt.segments[gt_id][0], ClassStats()).fn += 1
    for pred_id in match.false_positives:
        stats.setdefault(pred.segments[pred_id][0], ClassStats()).fp += 1
    return stats


def summarize(stats: dict[int, ClassStats], categories: list[Category]) -> dict[str, Any]:
    """The JSON layout: all / things / stuff (pq, sq, rq, n) and per_class by name (pq, sq, rq, tp, fp, fn).
    A group with no class that occurs has n = 0 and null scores."""
    per_class = {}
    groups: dict[str, list[dict[str, float]]] = {"all": [], "things": [], "stuff": []}
    for category in categories:
        entry = stats.get(category.id)
        if entry is None or not entry.occurs:
            continue
        scores = entry.scores()
        per_class[category.name] = {**scores, "tp": entry.tp, "fp": entry.fp, "fn": entry.fn}
        groups["all"].append(scores)
        groups["things" if category.isthing else "stuff"].append(scores)
    result: dict[str, Any] = {}
    for name, members in groups.items():
        n = len(members)
        result[name] = {
            key: (sum(scores[key] for scores in members) / n if n else None) for key in ("pq", "sq", "rq")
        } | {"n": n}
    result["per_class"] = per_class
    return result


class PQEvaluator:
    """Accumulates TP, FP, FN and matched IoU per class; keeps the `worst` images by their own PQ."""

    name = "pq"

    def __init__(self, categories: list[Category], worst: int = 0) -> None:
        self.categories = categories
        self.worst = WorstImages(worst)
        self.reset()

    def reset(self) -> None:
        self.stats: dict[int, ClassStats] = {}
        self.worst = WorstImages(self.worst.limit)

    def process(self, pair: ImagePair) -> None:
        assert pair.gt is not None and pair.pred is not None and pair.counts is not None
        image_stats = class_stats(pair.gt, pair.pred, match_image(pair.gt, pair.pred, pair.counts))
        for category_id, entry in image_stats.items():
            total = self.stats.setdefault(category_id, ClassStats())
            total.tp += entry.tp
            total.fp += entry.fp
            total.fn += entry.fn
            total.iou += entry.iou
        occurring = [entry.scores()["pq"] for entry in image_stats.values() if entry.occurs]
        if occurring:
            self.worst.add(sum(occurring) / len(occurring), pair)

    def evaluate(self) -> dict[str, Any]:
        return summarize(self.stats, self.categories)
