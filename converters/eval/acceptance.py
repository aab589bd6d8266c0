"""Inside one Label Studio export: how much annotators changed the pre-labels, and how far annotators agree.

`predictions_vs_annotations`: each task's predictions (one model_version at a time) against its final
annotation, the same PQ matching as `segassist eval` (IoU > 0.5, same label). A predicted region is
- accepted: matched with IoU >= 0.95 (kept almost unchanged);
- edited: matched with IoU < 0.95 (and > 0.5, the match threshold);
- deleted: not matched (removed, relabelled, or redrawn beyond recognition);
and an annotated region no prediction matched was added by the annotator. Reported per label and per
model_version, with PQ/SQ/RQ and the mean IoU of the matched regions.

`annotator_agreement`: PQ between the annotations of the same task by different annotators, per pair of
annotators and per label (all pairs together).

Both keep the pairs with the lowest PQ for the HTML report, by key only: the report reads those tasks again.

Both read the export with the Label Studio reader (annotations, or one prediction at a time); each side's
regions are painted into an id map, overlaps resolved by the overlap policy (default: later region on top,
as the editor paints them).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import SegassistError
from converters.eval.core import IdImage, ImagePair, PairCounts
from converters.eval.inputs import Side
from converters.eval.pq import PQEvaluator, match_image
from converters.formats.common import Options
from converters.formats.labelstudio import LabelStudioSource
from converters.formats.ls_regions import is_region
from converters.model import Category, ImageRecord
from converters.parallel import thread_map

ACCEPTED_IOU = 0.95


@dataclass
class Counts:
    accepted: int = 0
    edited: int = 0
    deleted: int = 0
    added: int = 0
    matched_iou: float = 0.0

    def add(self, other: Counts) -> None:
        self.accepted += other.accepted
        self.edited += other.edited
        self.deleted += other.deleted
        self.added += other.added
        self.matched_iou += other.matched_iou

    def to_dict(self) -> dict[str, Any]:
        predicted = self.accepted + self.edited + self.deleted
        matched = self.accepted + self.edited
        return {
            "predicted": predicted,
            "accepted": self.accepted,
            "edited": self.edited,
            "deleted": self.deleted,
            "added": self.added,
            "accepted_share": self.accepted / predicted if predicted else None,
            "edited_share": self.edited / predicted if predicted else None,
            "deleted_share": self.deleted / predicted if predicted else None,
            "mean_iou": self.matched_iou / matched if matched else None,
        }


@dataclass
class Acceptance:
    """Acceptance counts overall and per label, and PQ, of one model_version (or of all)."""

    categories: list[Category]
    worst: int = 0  # pairs with the lowest PQ kept (by key) for the HTML report
    total: Counts = field(default_factory=Counts)
    per_label: dict[int, Counts] = field(default_factory=dict)
    pq: PQEvaluator | None = None
    pairs: int = 0

    def __post_init__(self) -> None:
        self.pq = PQEvaluator(self.categories, self.worst)

    def process(self, pair: ImagePair) -> None:
        assert (
            pair.gt is not None and pair.pred is not None and pair.counts is not None and self.pq is not None
        )
        self.pairs += 1
        self.pq.process(pair)
        match = match_image(pair.gt, pair.pred, pair.counts)
        matched_gt = set()
        matched_pred = set()
        for gt_id, pred_id, iou in match.matches:
            counts = self._label(pair.pred.segments[pred_id][0])
            if iou >= ACCEPTED_IOU:
                counts.accepted += 1
            else:
                counts.edited += 1
            counts.matched_iou += iou
            matched_gt.add(gt_id)
            matched_pred.add(pred_id)
        for pred_id, (category_id, _) in pair.pred.segments.items():
            if pred_id not in matched_pred:
                self._label(category_id).deleted += 1
        for gt_id, (category_id, _) in pair.gt.segments.items():
            if gt_id not in matched_gt:
                self._label(category_id).added += 1

    def _label(self, category_id: int) -> Counts:
        return self.per_label.setdefault(category_id, Counts())

    def to_dict(self) -> dict[str, Any]:
        total = Counts()
        for counts in self.per_label.values():
            total.add(counts)
        return {
            "pairs": self.pairs,
            **total.to_dict(),
            "per_label": {
                category.name: self.per_label[category.id].to_dict()
                for category in self.categories
                if category.id in self.per_label
            },
            "pq": self.pq.evaluate(),
        }


@dataclass
class ExportResult:
    """An export mode's scores (the JSON layout) and, for the HTML report, its pairs with the lowest PQ."""

    scores: dict[str, Any]
    categories: list[Category]  # the labels of both sides, joined by name (the pairs' category ids)
    worst: list[tuple[Any, str, float]]  # (pair key, image file name, PQ), lowest first
    # The pairs with these keys, read again from the export (pairs come out as the tasks are listed).
    reload: Callable[[set[Any]], Iterator[ImagePair]]


# -- reading one export as annotations and predictions -------------------------------------------------------


@dataclass
class _Export:
    """An export read by several readers over one stream of tasks, their categories joined by name (a label
    may be only predicted, or only annotated). Each reader is handed a copy of the task holding the one
    annotation or prediction wanted, so "all" reads just that one."""

    path: Path
    sides: dict[str, Side]  # "final": the latest annotation; "annotation", "prediction": the one in the copy
    categories: list[Category]

    @classmethod
    def open(cls, path: Path, reading: Options, roles: tuple[str, ...]) -> _Export:
        path = Path(path)
        if not path.is_file():
            raise SegassistError("the Label Studio export does not exist", file=str(path))
        options = {
            "final": replace(reading, annotations="latest"),
            "annotation": replace(reading, annotations="all"),
            "prediction": replace(reading, annotations="all", predictions=True),
        }
        sources = {role: LabelStudioSource(path, options[role]) for role in roles}
        names: dict[str, None] = {}
        for source in sources.values():
            for category in source.categories:
                names.setdefault(category.name)
        joined = [Category(id=position, name=name) for position, name in enumerate(names, start=1)]
        by_name = {category.name: category.id for category in joined}
        sides = {}
        for role, source in sources.items():
            side = Side(role, "labelstudio", path, source, list(source.categories), overlap=reading.overlap)
            side.to_gt = {category.id: by_name[category.name] for category in source.categories}
            side.gt_categories = joined
            sides[role] = side
        return cls(path, sides, joined)

    def tasks(self) -> Iterator[tuple[int, dict[str, Any]]]:
        return next(iter(self.sides.values())).source.items()

    def load(self, role: str, item: tuple[int, dict[str, Any]]) -> tuple[ImageRecord, IdImage]:
        """The task's regions (joined category ids) as read and painted into an id map."""
        side = self.sides[role]
        try:
            record = side.source.load(item)
        except SegassistError as error:
            raise error.at(**side.source.where(item)) from None
        record = side.translate(record)
        return record, side.rasterise(record)


def _has_regions(entry: Any) -> bool:
    return isinstance(entry, dict) and any(is_region(result) for result in entry.get("result") or [])


def _empty_like(loaded: tuple[ImageRecord, IdImage]) -> tuple[ImageRecord, IdImage]:
    """No regions, on the image of `loaded` (an annotation or prediction without regions has no size)."""
    record, ids = loaded
    return replace(record, segments=[]), IdImage(np.zeros_like(ids.id_map), {})


def _pair(key: Any, gt: Any, pred: Any) -> ImagePair:
    (gt_record, gt_ids), (pred_record, pred_ids) = gt, pred
    if gt_ids.id_map.shape != pred_ids.id_map.shape:
        raise SegassistError(
            f"the task's regions are {gt_record.width}x{gt_record.height} in one and "
            f"{pred_record.width}x{pred_record.height} in the other",
            task_id=key[0],
        )
    pair = ImagePair(key, gt_record.file_name, gt_record.width, gt_record.height, gt_ids, pred_ids)
    pair.counts = PairCounts.of(gt_ids, pred_ids)
    return pair


def _task_id(item: tuple[int, dict[str, Any]]) -> Any:
    position, task = item
    return task.get("id", f"#{position + 1}")


def predictions_vs_annotations(
    path: Path,
    *,
    model_version: str | None = None,
    reading: Options | None = None,
    workers: int = 1,
    worst: int = 0,
) -> ExportResult:
    """`reading`: the reader's options (overlap policy, alpha threshold, label config, image folder); `worst`:
    how many (task, prediction) pairs with the lowest PQ to keep for the HTML report."""
    export = _Export.open(path, reading or Options(overlap="order"), ("final", "prediction"))
    overall = Acceptance(export.categories, worst)
    versions: dict[str, Acceptance] = {}
    skipped = {"no_annotation": 0, "no_prediction": 0, "no_regions": 0}
    compare = _prediction_pairs(export, model_version)
    for reason, pairs in thread_map(compare, export.tasks(), workers):
        if reason is not None:
            skipped[reason] += 1
        for version, pair in pairs:
            overall.process(pair)
            versions.setdefault(version, Acceptance(export.categories)).process(pair)
    if model_version is not None and not versions:
        raise SegassistError(f"no task has a prediction with model_version {model_version!r}", file=str(path))
    acceptance = overall.to_dict()
    scores = {
        "export": str(path),
        "pairs": acceptance.pop("pairs"),
        "tasks_skipped": skipped,
        "pq": acceptance.pop("pq"),
        "acceptance": {
            **acceptance,
            "per_model_version": {version: versions[version].to_dict() for version in sorted(versions)},
        },
    }
    assert overall.pq is not None

    def reload(keys: set[Any]) -> Iterator[ImagePair]:
        for _, pairs in thread_map(compare, _tasks_of(export, keys), workers):
            yield from (pair for _, pair in pairs if pair.key in keys)

    return ExportResult(scores, export.categories, overall.pq.worst.images(), reload)


def _prediction_pairs(
    export: _Export, model_version: str | None
) -> Callable[[tuple[int, dict[str, Any]]], tuple[str | None, list[tuple[str, ImagePair]]]]:
    """The comparison of one task: (why the task was skipped or None, [(model_version, pair)]), each pair
    keyed (task id, model_version), the final annotation as GT."""

    def compare(item: tuple[int, dict[str, Any]]) -> tuple[str | None, list[tuple[str, ImagePair]]]:
        position, task = item
        listed = task.get("predictions") or []
        if not all(isinstance(p, dict) for p in listed):
            raise SegassistError(
                "the task lists prediction ids, not predictions: export the project with its predictions "
                "(an export snapshot with predictions not as ids only)",
                file=str(export.path),
                task_id=_task_id(item),
            )
        predictions = [p for p in listed if model_version is None or p.get("model_version") == model_version]
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not annotations:
            return "no_annotation", []
        if not predictions:
            return "no_prediction", []
        annotated = export.load("final", item) if any(map(_has_regions, annotations)) else None
        drawn = {
            index: export.load("prediction", (position, {**task, "predictions": [prediction]}))
            for index, prediction in enumerate(predictions)
            if _has_regions(prediction)
        }
        sized = annotated or next(iter(drawn.values()), None)
        if sized is None:
            return "no_regions", []
        pairs = []
        for index, prediction in enumerate(predictions):
            version = str(prediction.get("model_version") or "")
            pair = _pair(
                (_task_id(item), version),
                annotated or _empty_like(sized),
                drawn.get(index) or _empty_like(sized),
            )
            pairs.append((version, pair))
        return None, pairs

    return compare


def _tasks_of(export: _Export, keys: set[Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The export's tasks that the pair keys name (a key starts with the task id)."""
    wanted = {key[0] for key in keys}
    return (item for item in export.tasks() if _task_id(item) in wanted)


def annotator_agreement(
    path: Path,
    *,
    reading: Options | None = None,
    workers: int = 1,
    worst: int = 0,
) -> ExportResult:
    """PQ between every two annotators of a task (the first as GT: PQ is symmetric but for void), per pair of
    annotators over the tasks both annotated, and per label over all pairs; `worst`: how many (task,
    annotator, annotator) pairs with the lowest PQ to keep for the HTML report."""
    export = _Export.open(path, reading or Options(overlap="order"), ("annotation",))
    overall = PQEvaluator(export.categories, worst)
    pairs: dict[tuple[str, str], PQEvaluator] = {}
    tasks: dict[tuple[str, str], int] = {}
    compare = _annotator_pairs(export)
    for compared in thread_map(compare, export.tasks(), workers):
        for annotators, pair in compared:
            overall.process(pair)
            pairs.setdefault(annotators, PQEvaluator(export.categories)).process(pair)
            tasks[annotators] = tasks.get(annotators, 0) + 1
    scores = {
        "export": str(path),
        "pq": overall.evaluate(),
        "pairs": [
            {"annotators": list(annotators), "tasks": tasks[annotators], "pq": pairs[annotators].evaluate()}
            for annotators in sorted(pairs)
        ],
    }

    def reload(keys: set[Any]) -> Iterator[ImagePair]:
        for compared in thread_map(compare, _tasks_of(export, keys), workers):
            yield from (pair for _, pair in compared if pair.key in keys)

    return ExportResult(scores, export.categories, overall.worst.images(), reload)


def _annotator_pairs(
    export: _Export,
) -> Callable[[tuple[int, dict[str, Any]]], list[tuple[tuple[str, str], ImagePair]]]:
    """The comparison of one task: [((annotator, annotator), pair)] for every two of its annotators, each
    pair keyed (task id, annotator, annotator), the first annotator as GT."""

    def compare(item: tuple[int, dict[str, Any]]) -> list[tuple[tuple[str, str], ImagePair]]:
        position, task = item
        by_annotator: dict[str, Any] = {}
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            if _has_regions(annotation):  # an annotator's last listed annotation counts
                one = (position, {**task, "annotations": [annotation]})
                by_annotator[_annotator(annotation)] = export.load("annotation", one)
        out = []
        for first, second in itertools.combinations(sorted(by_annotator), 2):
            pair = _pair((_task_id(item), first, second), by_annotator[first], by_annotator[second])
            out.append(((first, second), pair))
        return out

    return compare


def _annotator(annotation: dict[str, Any]) -> str:
    """Who made the annotation: Label Studio exports `completed_by` as a user id, or a user object."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return str(who) if who is not None else f"annotation {annotation.get('id')}"
