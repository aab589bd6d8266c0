"""Semantic segmentation scores from the pair counts: per-class IoU, mIoU and pixel accuracy.

Each segment stands for its category, so the pair counts sum into a class confusion matrix (row: GT class,
column: predicted class; index 0 = void or nothing predicted, the last = background) without another pass
over the pixels. GT void is the ignore label: pixels there count for nothing (a semantic dataset's void value
is its ignore label). A class predicted on GT background is a false positive of that class; a GT pixel the
prediction leaves unlabelled counts against the GT class. IoU_c = TP / (TP + FP + FN); mIoU averages the
classes that occur on either side; pixel accuracy = correctly labelled / GT pixels labelled with a class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.eval.core import BACKGROUND, ImagePair, WorstImages
from converters.model import Category


class SemanticEvaluator:
    name = "semantic"

    def __init__(self, categories: list[Category], worst: int = 0) -> None:
        self.categories = categories
        self.index = {category.id: position for position, category in enumerate(categories, start=1)}
        self.background = len(categories) + 1
        self.worst = WorstImages(worst)
        self.reset()

    def reset(self) -> None:
        size = len(self.categories) + 2
        self.confusion = np.zeros((size, size), dtype=np.int64)
        self.worst = WorstImages(self.worst.limit)

    def image_confusion(self, pair: ImagePair) -> np.ndarray:
        assert pair.gt is not None and pair.pred is not None and pair.counts is not None
        rows = self._classes(pair.counts.gt_ids, pair.gt.segments)
        cols = self._classes(pair.counts.pred_ids, pair.pred.segments)
        size = len(self.categories) + 2
        return (
            np.bincount(rows * size + cols, weights=pair.counts.counts, minlength=size * size)
            .reshape(size, size)
            .astype(np.int64)
        )

    def process(self, pair: ImagePair) -> None:
        confusion = self.image_confusion(pair)
        self.confusion += confusion
        ious = _ious(confusion)
        present = ~np.isnan(ious)
        if present.any():
            self.worst.add(float(ious[present].mean()), pair)

    def _classes(self, ids: np.ndarray, segments: dict[int, tuple[int, bool]]) -> np.ndarray:
        """Confusion-matrix index per id: its class, the background index, or 0 (void, no segment)."""
        return np.array(
            [
                self.index[segments[i][0]] if i in segments else self.background if i == BACKGROUND else 0
                for i in ids.tolist()
            ],
            dtype=np.int64,
        )

    def evaluate(self) -> dict[str, Any]:
        ious = _ious(self.confusion)
        labelled = self.confusion[1:-1].sum()
        present = ~np.isnan(ious)
        return {
            "miou": float(ious[present].mean()) if present.any() else None,
            "pixel_accuracy": float(np.trace(self.confusion[1:-1, 1:-1]) / labelled) if labelled else None,
            "per_class": {
                category.name: float(iou)
                for category, iou in zip(self.categories, ious, strict=True)
                if not np.isnan(iou)
            },
        }


def _ious(confusion: np.ndarray) -> np.ndarray:
    """IoU per class (NaN where the class occurs on neither side); GT void ignored, GT background counted."""
    classes = confusion.shape[0] - 2
    scored = confusion[1:]  # GT void rows count for nothing
    tp = np.diag(scored[:classes, 1 : classes + 1]).astype(np.float64)
    union = scored[:classes].sum(axis=1) + scored[:, 1 : classes + 1].sum(axis=0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)
