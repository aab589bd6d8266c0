"""The engine interface: load once per process, predict images, return segments.

Engines speak the converters' model: each predicted segment is a `converters.Segment` whose `category_id`
indexes `engine.categories` (class names with isthing), with a `score`. Label mapping to the Label Studio
config happens outside the engine.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from converters import Category, Mask, Segment


@dataclass(frozen=True)
class PanopticRule:
    """How the service's one exclusivity step (converters.overlap.resolve: the higher score wins, things above
    stuff) makes an engine's panoptic candidates exclusive: a thing left with less than `min_kept_fraction` of
    its pixels is dropped, and so is a stuff segment left with fewer than `stuff_min_area` pixels."""

    min_kept_fraction: float = 0.0
    stuff_min_area: int = 0


@dataclass(frozen=True)
class Prompt:
    """An interactive prompt in image pixels: clicks (x, y), each 1 (positive) or 0 (negative), or a box."""

    points: tuple[tuple[float, float], ...] = ()
    point_labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1


class Engine(abc.ABC):
    """A model that turns RGB images (H, W, 3 uint8) into segments."""

    #: Stable for a given model and settings; equals every prediction's model_version.
    model_version: str
    #: The classes the model predicts; a segment's category_id is a `Category.id` from this list.
    categories: list[Category]
    #: The modes this engine can produce, a subset of `ml_backend.engines.MODES`.
    modes: tuple[str, ...]
    #: Panoptic output is a list of candidates that may overlap (things, and stuff under them); the service
    #: makes them exclusive with this rule and reports what it changed per segment.
    panoptic_rule: PanopticRule = PanopticRule()

    @abc.abstractmethod
    def predict(self, images: Sequence[np.ndarray], mode: str) -> list[list[Segment]]:
        """Segments for each image, in order."""

    def predict_each(
        self, images: Iterable[np.ndarray], mode: str, batch_size: int
    ) -> Iterator[list[Segment]]:
        """Segments for each image, in order, each as soon as it is ready: how /predict runs a request.
        `images` is read only as the model needs them (so decoding runs ahead, not all at once); this default
        predicts consecutive batches of `batch_size`, each in a thread of its own while the caller handles
        the segments of the batch before (so shaping and encoding them overlaps the next forward): `images`
        is read one batch ahead of the segments handed out."""
        remaining = iter(images)
        with ThreadPoolExecutor(1, thread_name_prefix="forward") as forward:
            batch = list(itertools.islice(remaining, batch_size))
            running = forward.submit(self.predict, batch, mode) if batch else None
            while running is not None:
                batch = list(itertools.islice(remaining, batch_size))  # while the forward runs
                segments = running.result()
                running = forward.submit(self.predict, batch, mode) if batch else None
                yield from segments


class InteractiveEngine(Engine):
    """An engine that also answers clicks and boxes (SAM family)."""

    @abc.abstractmethod
    def segment_prompt(self, image: np.ndarray, image_key: str, prompt: Prompt) -> tuple[Mask, float]:
        """The mask for one prompt and its predicted quality; `image_key` keys the embedding cache."""
