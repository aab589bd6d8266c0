"""The batch driver: source -> skip rule and journal -> executor (local or Ray) -> sink, with progress,
per-image failures, a one-line summary and an optional JSON report.

    summary = prelabel(run)  # run: a Run (source, sink, service, label config, journal, executor)

An item whose key the journal holds is not predicted again (its recorded outcome is used); an item the sink's
skip rule covers (it holds a prediction of this model_version, and no `redo`) is recorded as skipped;
everything else streams through the executor. The final files are written from the journal at the end, and
the journal is removed once they are in place.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from converters.errors import SegassistError
from converters.io import write_text
from ml_backend.labeling import LabelConfigInfo
from ml_backend.prelabel.journal import Journal
from ml_backend.prelabel.pipeline import FAILED, PREDICTED, SKIPPED, Outcome, run_local
from ml_backend.prelabel.sources import ImageLoader, Item
from ml_backend.service import PredictionService


@dataclass
class Summary:
    description: str
    destination: str
    model_version: str
    images: int = 0
    predicted: int = 0
    segments: int = 0
    skipped: int = 0
    resumed: int = 0  # outcomes taken from an interrupted run's journal
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, item: Item, outcome: Outcome) -> None:
        self.images += 1
        if outcome.status == PREDICTED:
            self.predicted += 1
            self.segments += outcome.segments
        elif outcome.status == SKIPPED:
            self.skipped += 1
        else:
            self.failed.append(
                {"key": item.key, **outcome.where, "error": outcome.error, "retry": outcome.retry}
            )

    def line(self) -> str:
        rate = self.predicted / self.seconds if self.seconds else 0.0
        resumed = f" ({self.resumed} from the journal)" if self.resumed else ""
        return (
            f"{self.images} images{resumed}: {self.predicted} predicted ({self.segments} segments), "
            f"{self.skipped} skipped, {len(self.failed)} failed in {self.seconds:.1f} s "
            f"({rate:.2f} images/s) -> {self.destination}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.description,
            "output": self.destination,
            "model_version": self.model_version,
            "images": self.images,
            "predicted": self.predicted,
            "segments": self.segments,
            "skipped": self.skipped,
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
            "failed": self.failed,
        }


@dataclass
class Run:
    """Everything one prelabel run needs; built by the command (or a test) after the arguments are checked."""

    source: Any  # FolderSource | TasksFileSource | ProjectSource
    sink: Any  # LabelStudioFileSink | ConverterSink | PushSink
    service: PredictionService
    info: LabelConfigInfo | None  # the parsed label config (None: dataset output without one)
    loader: ImageLoader
    journal_path: Path
    fingerprint: dict[str, Any]
    destination: str
    redo: bool = False
    on_error: str = "continue"  # or "fail": stop at the first failed image
    executor: str = "local"
    ray_address: str | None = None
    actors: int | None = None
    engine_factory: Any = None  # picklable () -> Engine: how each Ray actor loads the model
    progress: bool | None = None  # None: a bar when stderr is a terminal
    total: int | None = None


def prelabel(run: Run) -> Summary:
    """Predict every item of the source into the sink; SIGTERM stops it like Ctrl-C (KeyboardInterrupt),
    leaving the journal to resume from."""
    started = time.perf_counter()
    summary = Summary(run.source.description, run.destination, run.service.model_version)
    journal = Journal(run.journal_path, run.fingerprint)
    items: list[Item] = []
    bar = tqdm(
        total=run.total,
        unit="image",
        desc="prelabel",
        disable=not sys.stderr.isatty() if run.progress is None else not run.progress,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
    try:
        for item, outcome in _outcomes(run, journal, items, summary):
            if item.key not in journal.offsets and not outcome.retry:
                journal.done(item.key, outcome)
            run.sink.deliver(journal, item, outcome)
            summary.count(item, outcome)
            bar.update()
            if outcome.status == FAILED and run.on_error == "fail":
                raise SegassistError(f"stopped at the first failure (--on-error fail): {outcome.error}")
        run.sink.finish(journal, items)
        journal.remove()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        bar.close()
        journal.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _outcomes(
    run: Run, journal: Journal, items: list[Item], summary: Summary
) -> Iterator[tuple[Item, Outcome]]:
    """Every item's outcome: from the journal, by the skip rule, or predicted by the executor."""
    model_version = run.service.model_version
    # Decided while the executor reads its input; None: the journal's outcome, read when handed out (one at
    # a time: a long resumed run never holds its recorded outcomes in memory).
    recorded: deque[tuple[Item, Outcome | None]] = deque()

    def to_predict() -> Iterator[Item]:
        for item in run.source.items(run.info.image.value_key if run.info else "image", model_version):
            items.append(item)
            # The skip rule first: Label Studio's state wins over the journal (a push whose journal mark
            # a kill prevented shows there).
            if run.sink.skip_rule and not run.redo and model_version in item.predicted_versions:
                recorded.append((item, Outcome(SKIPPED)))
            elif item.key in journal.offsets:
                summary.resumed += 1
                recorded.append((item, None))
            else:
                yield item

    if run.executor == "ray":
        from ml_backend.prelabel.ray_executor import run_ray

        predicted = run_ray(run, to_predict())
    else:
        predicted = run_local(to_predict(), run.loader, run.service, run.info, run.sink.render)
    for pair in predicted:
        yield from _drain(recorded, journal)
        yield pair
    yield from _drain(recorded, journal)


def _drain(recorded: deque[tuple[Item, Outcome | None]], journal: Journal) -> Iterator[tuple[Item, Outcome]]:
    while recorded:
        item, outcome = recorded.popleft()
        yield item, outcome if outcome is not None else next(journal.outcomes([item.key]))[1]


def write_report(path: Path, summary: Summary) -> None:
    write_text(path, json.dumps(summary.to_dict(), indent=1) + "\n")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
