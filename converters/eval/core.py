"""What every metric works on: one image of both sides as id maps, their pixel-pair counts, and the evaluator
interface (detectron2's DatasetEvaluator: reset / process one image pair / evaluate).

An `IdImage` is one image as panopticapi sees it: a uint32 id map (0 = void, `BACKGROUND` = labelled as
nothing) and, per segment id, its category (the GT's category id, whatever side it is on) and crowd flag. The
pair counts of two id maps (`pairs.py`) give every intersection and area, so each metric reads them instead of
touching pixels again.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from converters.eval.pairs import ID_MASK, pair_counts
from converters.model import ImageRecord

VOID = 0
# Unlabelled pixels of formats where that means "nothing there", not "unknown" (Label Studio, COCO instance):
# an id no segment has and that is not void, so predictions there count in the union and as false positives.
BACKGROUND = ID_MASK


@dataclass
class IdImage:
    id_map: np.ndarray | None  # (height, width) uint32, 0 = void; None once counted (see run._load_pair)
    # segment id -> (GT category id, iscrowd), in the order the source lists them (panopticapi's order)
    segments: dict[int, tuple[int, bool]]
    # For an id map read from a file: raises unless the ids found in it are exactly the listed ones.
    check_present: Callable[[Iterable[int]], None] | None = None


@dataclass
class PairCounts:
    """Every (gt id, pred id) that meets on some pixel, with the pixel count; sorted by (gt, pred)."""

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, gt: IdImage, pred: IdImage) -> PairCounts:
        return cls(*pair_counts(gt.id_map, pred.id_map))

    @cached_property
    def gt_areas(self) -> dict[int, int]:
        return _sums(self.gt_ids, self.counts)

    @cached_property
    def pred_areas(self) -> dict[int, int]:
        return _sums(self.pred_ids, self.counts)

    def items(self) -> list[tuple[int, int, int]]:
        return list(zip(self.gt_ids.tolist(), self.pred_ids.tolist(), self.counts.tolist(), strict=True))


def _sums(ids: np.ndarray, counts: np.ndarray) -> dict[int, int]:
    unique, inverse = np.unique(ids, return_inverse=True)
    return dict(
        zip(unique.tolist(), np.bincount(inverse, weights=counts).astype(np.int64).tolist(), strict=True)
    )


@dataclass
class ImagePair:
    """One image of both sides, as far as the metrics asked for it to be loaded."""

    key: Any  # the image id (COCO on both sides) or file name the sides were paired by
    file_name: str
    width: int
    height: int
    gt: IdImage | None = None
    pred: IdImage | None = None
    counts: PairCounts | None = None
    # The segments as read (category ids already the GT's), for metrics on overlapping instances (AP).
    gt_record: ImageRecord | None = None
    pred_record: ImageRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Evaluator(Protocol):
    """One metric, fed image pair by image pair (light work in the main process: the heavy per-image work,
    decoding and pair counting, is done before `process` and in parallel)."""

    name: str

    def reset(self) -> None: ...

    def process(self, pair: ImagePair) -> None: ...

    def evaluate(self) -> dict[str, Any]: ...


class WorstImages:
    """The `limit` image pairs with the lowest score, in bounded memory (ties: the earlier image first)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._heap: list[tuple[float, int, tuple[Any, str, float]]] = []
        self._seen = 0

    def add(self, score: float, pair: ImagePair) -> None:
        if not self.limit:
            return
        self._seen += 1
        # A min-heap on -score keeps the highest of the kept scores on top, ready to be replaced.
        item = (-score, -self._seen, (pair.key, pair.file_name, score))
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    def images(self) -> list[tuple[Any, str, float]]:
        """(key, file name, score), lowest score first."""
        return [entry for _, _, entry in sorted(self._heap, reverse=True)]
