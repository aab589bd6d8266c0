"""`evaluate(GT, PRED)`: read both sides, pair their images, feed every pair to the chosen metrics.

The heavy work per image pair (decoding PNGs, painting id maps, counting pixel pairs) runs in `workers`
threads: the id-PNG decoder (converters.id_png) and the counting kernel release the GIL, and only a bounded
number of pairs are in flight, so memory stays flat however many images there are. The metrics then take the
pairs in GT order.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from converters.errors import SegassistError
from converters.eval.ap import APEvaluator
from converters.eval.core import Evaluator, ImagePair, PairCounts
from converters.eval.inputs import (
    COCO_RESULTS,
    FITS,
    Entry,
    Side,
    Unpaired,
    match_categories,
    open_side,
    pair_entries,
)
from converters.eval.pq import PQEvaluator
from converters.eval.semantic import SemanticEvaluator
from converters.formats.common import Options
from converters.overlap import POLICIES
from converters.parallel import thread_map

METRICS = ("pq", "ap", "miou")
WORST_IMAGES = 20


@dataclass
class EvalOptions:
    gt_format: str | None = None  # None: detected
    pred_format: str | None = None
    metrics: tuple[str, ...] | None = None  # None: whichever fit both sides
    category_map: Path | None = None
    overlap: str = "order"  # who owns a pixel two segments of one image claim (see converters.overlap)
    workers: int = 1
    alpha_threshold: int = 128
    label_config: Path | None = None  # Label Studio inputs: the label list
    images: Path | None = None  # Label Studio inputs: image files, for tasks without a size
    worst: int = WORST_IMAGES  # images with the lowest PQ / mIoU kept for the HTML report
    progress: bool | None = None

    def reading(self) -> Options:
        """The readers' options."""
        if self.overlap not in POLICIES:
            raise SegassistError(f"overlap policy must be one of {', '.join(POLICIES)}, got {self.overlap!r}")
        return Options(
            overlap=self.overlap,
            alpha_threshold=self.alpha_threshold,
            label_config=self.label_config,
            images=self.images,
        )


@dataclass
class EvalResult:
    gt: Side
    pred: Side
    metrics: tuple[str, ...]
    images: int = 0
    scores: dict[str, Any] = field(default_factory=dict)
    worst: list[tuple[Any, str, float]] = field(default_factory=list)
    worst_metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gt": {"path": str(self.gt.path), "format": self.gt.format},
            "pred": {"path": str(self.pred.path), "format": self.pred.format},
            "images": self.images,
            **self.scores,
        }


def evaluate(gt: str | Path, pred: str | Path, options: EvalOptions | None = None) -> EvalResult:
    options = options or EvalOptions()
    reading = options.reading()
    gt_side = open_side("GT", Path(gt), options.gt_format, reading)
    pred_side = open_side("PRED", Path(pred), options.pred_format, reading)
    match_categories(gt_side, pred_side, options.category_map)
    metrics = choose_metrics(gt_side, pred_side, options.metrics)
    evaluators = _evaluators(metrics, gt_side, pred_side, options.worst)
    result = EvalResult(gt_side, pred_side, metrics)
    unpaired = Unpaired()
    bar = tqdm(
        desc="evaluating",
        unit="image",
        disable=not sys.stderr.isatty() if options.progress is None else not options.progress,
    )
    try:
        for pair in load_pairs(gt_side, pred_side, metrics, unpaired, options.workers):
            for evaluator in evaluators:
                evaluator.process(pair)
            result.images += 1
            bar.update()
    finally:
        bar.close()
    unpaired.check()
    for evaluator in evaluators:
        result.scores[evaluator.name] = evaluator.evaluate()
    ranked = next((e for e in evaluators if isinstance(e, PQEvaluator | SemanticEvaluator)), None)
    if ranked is not None:
        result.worst, result.worst_metric = ranked.worst.images(), ranked.name
    return result


def choose_metrics(gt: Side, pred: Side, asked: tuple[str, ...] | None) -> tuple[str, ...]:
    fit = [metric for metric in METRICS if metric in FITS[gt.format] and metric in FITS[pred.format]]
    if asked is None:
        if not fit:
            raise SegassistError(f"no metric fits both {gt.format} and {pred.format}")
        return tuple(fit)
    for metric in asked:
        if metric not in METRICS:
            raise SegassistError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        if metric not in fit:
            raise SegassistError(f"{metric} cannot be computed between {gt.format} and {pred.format}")
    return tuple(metric for metric in METRICS if metric in asked)


def _evaluators(metrics: tuple[str, ...], gt: Side, pred: Side, worst: int) -> list[Evaluator]:
    evaluators: list[Evaluator] = []
    if "pq" in metrics:
        evaluators.append(PQEvaluator(gt.categories, worst))
    if "ap" in metrics:
        evaluators.append(APEvaluator(gt.categories, _results_by_image(pred)))
    if "miou" in metrics:
        evaluators.append(SemanticEvaluator(gt.categories, 0 if "pq" in metrics else worst))
    return evaluators


def _results_by_image(pred: Side) -> dict[Any, list[dict[str, Any]]] | None:
    if pred.format != COCO_RESULTS:
        return None
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for position, result in enumerate(pred.results or []):
        if not isinstance(result, dict) or "image_id" not in result:
            raise SegassistError(f"result #{position} is not an object with an image_id", file=str(pred.path))
        grouped[result["image_id"]].append(result)
    return grouped


# -- loading pairs -------------------------------------------------------------------------------------------


def load_pairs(
    gt: Side, pred: Side, metrics: tuple[str, ...], unpaired: Unpaired, workers: int
) -> Iterator[ImagePair]:
    """The loaded image pairs in GT order, `workers` threads loading ahead."""
    pairs = (
        _with_results(gt, pred, unpaired) if pred.format == COCO_RESULTS else pair_entries(gt, pred, unpaired)
    )
    return _loaded(gt, pred, pairs, metrics, workers, keep_maps=False)


def _loaded(
    gt: Side,
    pred: Side,
    pairs: Iterator[tuple[Any, Entry, Entry | None]],
    metrics: tuple[str, ...],
    workers: int,
    *,
    keep_maps: bool,
) -> Iterator[ImagePair]:
    need_ids = "pq" in metrics or "miou" in metrics
    need_records = "ap" in metrics

    def load(pair: tuple[Any, Entry, Entry | None]) -> ImagePair:
        key, gt_entry, pred_entry = pair
        try:
            return _load_pair(gt, pred, key, gt_entry, pred_entry, need_ids, need_records, keep_maps)
        except SegassistError as error:
            raise error.at(image_id=gt_entry.image_id) from None

    yield from thread_map(load, pairs, workers)


def reload_pairs(result: EvalResult, options: EvalOptions, keys: set[Any]) -> Iterator[ImagePair]:
    """The image pairs with these keys, loaded again as for the evaluation (for the HTML report)."""
    wanted = (pair for pair in pair_entries(result.gt, result.pred, Unpaired()) if pair[0] in keys)
    yield from _loaded(result.gt, result.pred, wanted, result.metrics, options.workers, keep_maps=True)


def _with_results(gt: Side, pred: Side, unpaired: Unpaired) -> Iterator[tuple[Any, Entry, None]]:
    """Every GT image (a results list may have nothing for some); result image ids GT lacks are unpaired."""
    seen = set()
    for entry in gt.entries():
        seen.add(entry.image_id)
        yield entry.image_id, entry, None
    unpaired.pred_only.extend(
        sorted({r.get("image_id") for r in pred.results or [] if isinstance(r, dict)} - seen, key=str)
    )


def _load_pair(
    gt: Side,
    pred: Side,
    key: Any,
    gt_entry: Entry,
    pred_entry: Entry | None,
    need_ids: bool,
    need_records: bool,
    keep_maps: bool,
) -> ImagePair:
    """The pair loaded for the metrics. Unless `keep_maps`, the id maps are let go once counted: the metrics
    need only the counts, and big arrays freed at once are reused instead of new memory being faulted in."""
    if pred_entry is not None and None not in (gt_entry.width, pred_entry.width):
        _check_size(gt_entry, (gt_entry.width, gt_entry.height), (pred_entry.width, pred_entry.height))
    pair = ImagePair(key, gt_entry.file_name, gt_entry.width, gt_entry.height)
    if need_records:
        pair.gt_record = gt.record(gt_entry)
        if pred_entry is not None:
            pair.pred_record = pred.record(pred_entry)
            _check_size(gt_entry, _size(pair.gt_record), _size(pair.pred_record))
    if need_ids:
        assert pred_entry is not None
        pair.gt = (
            gt.rasterise(pair.gt_record)
            if pair.gt_record and gt.format != "coco-panoptic"
            else gt.id_image(gt_entry)
        )
        pair.pred = (
            pred.rasterise(pair.pred_record)
            if pair.pred_record and pred.format != "coco-panoptic"
            else pred.id_image(pred_entry)
        )
        gt_shape, pred_shape = pair.gt.id_map.shape, pair.pred.id_map.shape
        _check_size(gt_entry, gt_shape[::-1], pred_shape[::-1])
        pair.counts = PairCounts.of(pair.gt, pair.pred)
        for image, areas in ((pair.gt, pair.counts.gt_areas), (pair.pred, pair.counts.pred_areas)):
            if image.check_present is not None:
                image.check_present(areas)
        pair.height, pair.width = gt_shape
        if not keep_maps:
            pair.gt.id_map = pair.pred.id_map = None
    return pair


def _size(record: Any) -> tuple[int, int]:
    return record.width, record.height


def _check_size(entry: Entry, gt_size: tuple[int, int], pred_size: tuple[int, int]) -> None:
    if tuple(gt_size) != tuple(pred_size):
        raise SegassistError(
            f"the image is {gt_size[0]}x{gt_size[1]} in GT but {pred_size[0]}x{pred_size[1]} in PRED "
            f"({entry.file_name})"
        )
