"""Where predictions go: a Label Studio tasks file, a converters' format (COCO, COCO panoptic, semantic),
or a Label Studio project through the API.

Every sink has a picklable `render(item, result, size) -> Outcome` (it runs where the prediction is made: in
this process, or in a Ray task) and, in the driver, `deliver` (called as items finish) and `finish` (called
once, with the journal, to write the final files atomically in source order). `skip_rule`: whether a task
that holds a prediction of this model_version is skipped (Label Studio output only).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from converters.formats.common import Options
from converters.io import Outputs
from converters.model import Category, ImageRecord
from converters.registry import FORMATS
from ml_backend.prelabel.journal import Journal
from ml_backend.prelabel.pipeline import PREDICTED, Outcome
from ml_backend.prelabel.sources import Item
from ml_backend.service import ImageResult

if TYPE_CHECKING:  # the SDK client: only the driver talks to Label Studio, not Ray workers
    from ml_backend.prelabel.project import LabelStudioProject

PUSH_CHUNK = 50  # predictions per import request


class LabelStudioFileSink:
    """Tasks with their predictions, importable into Label Studio as they are. A task skipped (it holds a
    prediction of this model_version) or failed is written as it was, so the file lists every task."""

    skip_rule = True

    def __init__(self, output: Path, model_version: str) -> None:
        self.output = output
        self.model_version = model_version

    def render(self, item: Item, result: ImageResult, size: tuple[int, int]) -> Outcome:
        entry = result.prediction
        # --redo replaces this version's prediction; others' stay.
        kept = [p for p in item.task.get("predictions") or [] if p.get("model_version") != self.model_version]
        task = {**item.task, "predictions": [*kept, entry]}
        return Outcome(PREDICTED, orjson.dumps(task, option=orjson.OPT_SERIALIZE_NUMPY), len(entry["result"]))

    def deliver(self, journal: Journal, item: Item, outcome: Outcome) -> None:
        pass

    def finish(self, journal: Journal, items: list[Item]) -> None:
        with Outputs() as outputs:
            with outputs.file(self.output).open("wb") as handle:
                handle.write(b"[")
                separator = b"\n"
                for item, (_, outcome) in zip(
                    items, journal.outcomes(item.key for item in items), strict=True
                ):
                    handle.write(separator)
                    predicted = outcome is not None and outcome.status == PREDICTED
                    handle.write(outcome.payload if predicted else orjson.dumps(item.task))
                    separator = b",\n"
                handle.write(b"\n]\n")
            outputs.commit()


class ConverterSink:
    """COCO instance, COCO panoptic or semantic label maps through the converters' writers; panoptic and
    semantic output is made exclusive by the converters' overlap policy (`overlap`, default score)."""

    skip_rule = False

    def __init__(self, target: str, output: Path, categories: list[Category], options: Options) -> None:
        self.target = target
        self.output = output
        self.categories = categories
        self.options = options
        # The writer's renderer does the per-image work where the prediction is made; the writer itself is
        # opened in `finish`, so an interrupted run leaves no temporary output behind.
        with Outputs() as unused:
            self.renderer = FORMATS[target].writer(output, categories, options, unused).renderer

    def render(self, item: Item, result: ImageResult, size: tuple[int, int]) -> Outcome:
        height, width = size
        image = ImageRecord(
            id=item.index + 1,
            file_name=item.key,
            width=width,
            height=height,
            segments=[labeled.segment for labeled in result.segments],
        )
        rendered = self.renderer.render(image)
        return Outcome(PREDICTED, rendered, rendered.segments)

    def deliver(self, journal: Journal, item: Item, outcome: Outcome) -> None:
        pass

    def finish(self, journal: Journal, items: list[Item]) -> None:
        with Outputs() as outputs:
            writer = FORMATS[self.target].writer(self.output, self.categories, self.options, outputs)
            for _, outcome in journal.outcomes(item.key for item in items):
                if outcome is not None and outcome.status == PREDICTED:
                    writer.write(outcome.payload)
            writer.finish()
            outputs.commit()


class PushSink:
    """Predictions created in the project through the API, PUSH_CHUNK per request, each with model_version
    and score. A task that already holds this version's prediction (`--redo`, or a push whose journal mark
    a kill prevented) has it deleted first: one prediction per task and version, never two."""

    skip_rule = True

    def __init__(self, project: LabelStudioProject, model_version: str) -> None:
        self.project = project
        self.model_version = model_version
        self._pending: list[tuple[Item, dict[str, Any]]] = []

    def __getstate__(self) -> dict[str, Any]:
        # Ray ships `render` to its tasks; the API client and the pending pushes stay here.
        return {"model_version": self.model_version}

    def render(self, item: Item, result: ImageResult, size: tuple[int, int]) -> Outcome:
        return Outcome(PREDICTED, result.prediction, len(result.prediction["result"]))

    def deliver(self, journal: Journal, item: Item, outcome: Outcome) -> None:
        if outcome.status != PREDICTED or item.key in journal.pushed:
            return
        self._pending.append((item, outcome.payload))
        if len(self._pending) >= PUSH_CHUNK:
            self._push(journal)

    def _push(self, journal: Journal) -> None:
        for item, _ in self._pending:
            if self.model_version in item.predicted_versions:
                self.project.delete_predictions(item.task["id"], self.model_version)
        self.project.import_predictions([{"task": item.task["id"], **entry} for item, entry in self._pending])
        journal.mark_pushed(item.key for item, _ in self._pending)
        self._pending.clear()

    def finish(self, journal: Journal, items: Iterable[Item]) -> None:
        if self._pending:
            self._push(journal)
