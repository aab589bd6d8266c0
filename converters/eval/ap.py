"""Mask AP (AP, AP50, AP75, APs, APm, APl) through a maintained COCOeval, iouType "segm" (not written again).

The COCOeval is hotcoco's (Rust): it gives pycocotools' numbers (the tests and the benchmark check all six
against pycocotools run directly, to 1e-9) about ten times faster than pycocotools here.

The evaluator gathers each image's GT and predicted masks as COCO RLE (compact: a few hundred bytes a mask)
and hands them to COCOeval at the end, as a COCO GT and a results list. A detector's results list (PRED as
`[{image_id, category_id, segmentation, score}]`) goes to `loadRes` as it is, image ids mapped to the GT's.
A predicted segment without a score counts as score 1. The GT area that COCOeval uses for the small / medium /
large ranges is the `area` a COCO file declares for the object, as when COCOeval reads that file itself (in
COCO's own files a polygon's area, not its pixel count); other formats declare none: the mask's pixel count.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from hotcoco import COCO, COCOeval

from converters import coco_rle
from converters.errors import SegassistError
from converters.eval.core import ImagePair
from converters.formats.coco import DECLARED_AREAS
from converters.model import Category

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


class APEvaluator:
    name = "ap"

    def __init__(
        self, categories: list[Category], results: dict[Any, list[dict[str, Any]]] | None = None
    ) -> None:
        """`results`: a detector's results list grouped by GT image id (None: PRED's segments are used)."""
        self.categories = categories
        self.results = results
        self.reset()

    def reset(self) -> None:
        self.images: list[dict[str, Any]] = []
        self.gt: list[dict[str, Any]] = []
        self.predictions: list[dict[str, Any]] = []

    def process(self, pair: ImagePair) -> None:
        assert pair.gt_record is not None
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "width": pair.width, "height": pair.height})
        declared = pair.gt_record.extra.get(DECLARED_AREAS, {})
        for segment in pair.gt_record.segments:
            self.gt.append(
                {
                    "id": len(self.gt) + 1,  # COCOeval takes id 0 for "unmatched"
                    "image_id": image_id,
                    "category_id": segment.category_id,
                    "segmentation": coco_rle.encode(segment.mask),
                    "area": declared.get(segment.origin.order, segment.mask.area),
                    "bbox": list(segment.mask.bbox),
                    "iscrowd": int(segment.iscrowd),
                }
            )
        if self.results is not None:
            for result in self.results.get(pair.key, []):
                self.predictions.append({**result, "image_id": image_id})
            return
        assert pair.pred_record is not None
        for segment in pair.pred_record.segments:
            self.predictions.append(
                {
                    "image_id": image_id,
                    "category_id": segment.category_id,
                    "segmentation": coco_rle.encode(segment.mask),
                    "score": 1.0 if segment.score is None else float(segment.score),
                }
            )

    def coco_eval(self) -> COCOeval:
        """COCOeval run on everything gathered (evaluate, accumulate, summarize), its printing kept quiet."""
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(
                {
                    "images": self.images,
                    "annotations": self.gt,
                    "categories": [
                        {"id": category.id, "name": category.name} for category in self.categories
                    ],
                }
            )
            try:
                predictions = gt.loadRes(self.predictions)
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
                raise SegassistError(f"COCOeval cannot load the predictions: {error}") from None
            evaluation = COCOeval(gt, predictions, iouType="segm")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        return evaluation

    def evaluate(self) -> dict[str, Any]:
        """The six summary numbers as fractions; null where COCOeval has nothing to average (its -1)."""
        if not self.predictions:
            return dict.fromkeys(STAT_NAMES, 0.0 if self.gt else None)
        stats = self.coco_eval().stats
        return {
            name: (float(value) if value >= 0 else None)
            for name, value in zip(STAT_NAMES, stats, strict=False)
        }
