"""One item's way through prelabel: load -> the prediction service -> render for the sink -> an `Outcome`.

The prediction service (`ml_backend.service`) does the work the backend does for /predict: images decoded
ahead in threads, the engine in batches, shaping (labels, threshold, mode, exclusivity) and Label Studio
encoding. This module adds what a batch needs around it: an image loader that records each image's size, and
the `Outcome` an item ends as, which the journal records and the sinks consume.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.errors import SegassistError
from ml_backend.labeling import LabelConfigInfo
from ml_backend.prelabel.sources import ImageLoader, Item
from ml_backend.service import ImageResult, PredictionService

#: How an item ended.
PREDICTED, SKIPPED, FAILED = "predicted", "skipped", "failed"


@dataclass
class Outcome:
    status: str
    payload: Any = None  # what the sink writes or pushes for it
    segments: int = 0
    error: str | None = None
    #: A temporary failure (timeout, 5xx, engine fault): not journaled, so the next run asks again.
    retry: bool = False
    where: dict[str, Any] = field(default_factory=dict)


#: sink.render: an item's service result and image (height, width) -> its outcome.
Render = Callable[[Item, ImageResult, tuple[int, int]], Outcome]


class SizedLoader:
    """The image loader the service calls in its decoding threads; remembers each image's (height, width),
    which the dataset writers need even when nothing was found in the image."""

    def __init__(self, loader: ImageLoader) -> None:
        self._loader = loader
        self._sizes: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, item: Item) -> np.ndarray:
        image = self._loader(item)
        with self._lock:
            self._sizes[item.key] = image.shape[:2]
        return image

    def pop_size(self, item: Item) -> tuple[int, int]:
        with self._lock:
            return self._sizes.pop(item.key, (0, 0))


def outcome(item: Item, result: ImageResult, size: tuple[int, int], render: Render) -> Outcome:
    if result.error is not None:
        return failed(item, result.error, retry=result.retry)
    try:
        return render(item, result, size)
    except SegassistError as error:
        return failed(item, error)


def failed(item: Item, error: SegassistError, retry: bool = False) -> Outcome:
    return Outcome(FAILED, error=str(error.at(**item.where)), retry=retry, where=dict(item.where))


def run_local(
    items: Iterable[Item],
    loader: ImageLoader,
    service: PredictionService,
    info: LabelConfigInfo | None,
    render: Render,
) -> Iterator[tuple[Item, Outcome]]:
    """(item, outcome) in input order, one stream through the service."""
    sized = SizedLoader(loader)
    for result in service.predict(items, sized, info):
        yield result.item, outcome(result.item, result, sized.pop_size(result.item), render)
