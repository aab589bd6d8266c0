"""The prediction service: images in, segments and Label Studio predictions out. It knows nothing of HTTP; the
Flask app (`protocol.py`) and the batch command drive it.

    service = PredictionService.from_settings(settings)        # loads the engine once per process
    info = service.label_config(xml)                           # optional: only for Label Studio output
    load = service.media.task_loader(info.image.value_key)     # or any item -> (H, W, 3) uint8 function
    for result in service.predict(tasks, load, info):          # one ImageResult per item, in input order
        result.segments, result.prediction, result.prediction_json, result.error, result.retry

A call is one stream: images are decoded two batches ahead in a thread pool, the engine reads them as it needs
them, and each image is shaped (labels, score threshold, mode, the one exclusivity step), encoded and
serialized as soon as its segments are ready, while the engine works on the next. Stopping early (closing the
iterator, or breaking out of the loop) cancels the decoding not yet started and stops the engine. One call
runs the engine at a time; interactive prompts do not wait for it.

A failure stays with its item: an image that does not load or decode, or an engine fault on one image (the
images in flight with it are predicted again one by one to find it), is a result with `error` set and the
other items are predicted. `retry` says the failure is temporary (a timeout, a 5xx, an engine fault): the
item should be asked again later, not marked done.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from os import PathLike
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from converters.allocator import keep_freed_memory
from converters.errors import SegassistError
from converters.overlap import OverlapReport
from converters.parallel import pool_map
from ml_backend import postprocess
from ml_backend.engines.base import Engine
from ml_backend.interactive import handle
from ml_backend.labeling import LabelConfigInfo, load_label_map, parse_label_config
from ml_backend.media import MediaFetcher, TemporaryMediaError
from ml_backend.postprocess import LabeledSegment
from ml_backend.settings import Settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The stages of an automatic prediction, in pipeline order; `predict` adds each one's seconds to `timings`.
STAGES = ("media", "model", "postprocess", "encoding", "json")
#: The stages of an interactive prompt: "model" covers the prompt, the mask and its region.
INTERACTIVE_STAGES = ("media", "model", "json")
CONFIG_CACHE_SIZE = 32


def new_timings(stages: tuple[str, ...] = STAGES) -> dict[str, float]:
    """Seconds per stage, all 0: what `predict` and `predict_interactive` add to."""
    return dict.fromkeys(stages, 0.0)


@dataclass
class ImageResult(Generic[T]):
    """The outcome for one item given to `PredictionService.predict`."""

    index: int  # the item's position in the input
    item: T
    #: What the model predicted after the mode, thresholds, label mapping and exclusivity: best score first.
    segments: list[LabeledSegment] = field(default_factory=list)
    #: Panoptic mode: what the exclusivity step changed, per segment (None in other modes).
    overlap: OverlapReport | None = None
    #: The Label Studio prediction {"result", "score", "model_version"} and its JSON, when a label config
    #: was given and the item did not fail.
    prediction: dict[str, Any] | None = None
    prediction_json: bytes | None = None
    error: SegassistError | None = None
    #: The error is temporary (timeout, 5xx, engine fault): ask again later rather than record a result.
    retry: bool = False


@dataclass
class _InFlight:
    """An item whose image was loaded (or failed to) and whose result has not been handed out yet."""

    index: int
    item: Any
    image: np.ndarray | None
    error: SegassistError | None = None
    retry: bool = False


class PredictionService:
    def __init__(self, settings: Settings, engine: Engine, media: MediaFetcher | None = None) -> None:
        """`engine` is built by the caller (`from_settings` loads it from the settings; tests pass one built
        through the same loaders). `media` resolves Label Studio task images (default: from the settings)."""
        self.settings = settings
        self.engine = engine
        self.mode = _choose_mode(settings.mode, engine)
        # Stable for the process; includes the mode so changing it makes Label Studio predict again.
        self.model_version = f"{engine.model_version}-{self.mode}" if self.mode else engine.model_version
        self.media = media or MediaFetcher(settings)
        self.batch_size = settings.batch_size or (8 if _device(settings).type == "cuda" else 2)
        self._label_map = load_label_map(settings.label_map_file)
        self._configs: OrderedDict[str, LabelConfigInfo] = OrderedDict()
        self._configs_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(2, self.batch_size), thread_name_prefix="media")
        empty = postprocess.empty_prediction(self.model_version)
        self._empty = (empty, postprocess.prediction_json(empty))

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionService:
        """Load the engine the settings name (once per process) and build the service around it. The process
        also keeps freed tensor memory for reuse (`keep_freed_memory`)."""
        from ml_backend.engines.registry import load_engine

        keep_freed_memory()  # before the engine's threads exist: each keeps the heap it first gets
        started = time.perf_counter()
        engine = load_engine(
            settings.engine, settings.model, _device(settings), sam_cache_mb=settings.sam_cache_mb
        )
        log.info("loaded %s in %.1f s", engine.model_version, time.perf_counter() - started)
        return cls(settings, engine)

    @property
    def empty_prediction_json(self) -> bytes:
        """The prediction of an item that failed for good (Label Studio records it and does not ask again)."""
        return self._empty[1]

    def label_config(self, xml: str) -> LabelConfigInfo:
        """The parsed label config, parsed once per distinct config (unmapped classes are logged then)."""
        with self._configs_lock:
            info = self._configs.get(xml)
            if info is not None:
                self._configs.move_to_end(xml)
                return info
        info = parse_label_config(xml, self.engine.categories, self._label_map)
        with self._configs_lock:
            self._configs[xml] = info
            while len(self._configs) > CONFIG_CACHE_SIZE:
                self._configs.popitem(last=False)
        return info

    # -- automatic predictions -------------------------------------------------------------------------------

    def predict(
        self,
        items: Iterable[T],
        load_image: Callable[[T], np.ndarray],
        info: LabelConfigInfo | None = None,
        *,
        timings: dict[str, float] | None = None,
    ) -> Iterator[ImageResult[T]]:
        """One result per item, in order, each as soon as it is ready. `load_image(item)` gives the image as
        (H, W, 3) uint8 RGB (it runs in the decoding threads; a `SegassistError` fails that item only).
        With `info`, segments are mapped to its output control's labels and each result carries the Label
        Studio prediction; without it, every category is kept, labelled with its name. `timings` (see
        `new_timings`) receives each stage's seconds."""
        timings = new_timings() if timings is None else timings
        if self.mode is None and info is None:
            raise SegassistError(f"the model {self.engine.model_version} has no automatic mode")
        unusable = self._unusable(info)
        if unusable:
            log.warning("empty predictions: %s", unusable)
            prediction, text = self._empty
            return (
                ImageResult(index, item, prediction=dict(prediction), prediction_json=text)
                for index, item in enumerate(items)
            )
        return self._stream(items, load_image, info, timings)

    def _unusable(self, info: LabelConfigInfo | None) -> str | None:
        """Why a label config can receive no automatic prediction from this engine, or None."""
        if info is None:
            return None
        if self.mode is None:
            return f"the model {self.engine.model_version} has no automatic mode"
        if info.output is None:
            return "the label config has no mask or box control"
        if not info.label_for_category:
            return f"no model class maps to a label of control {info.output.name!r}"
        return None

    def _stream(
        self,
        items: Iterable[T],
        load_image: Callable[[T], np.ndarray],
        info: LabelConfigInfo | None,
        timings: dict[str, float],
    ) -> Iterator[ImageResult[T]]:
        in_flight: deque[_InFlight] = deque()  # loaded (or failed) in input order, not handed out yet

        def load(item: T) -> tuple[T, np.ndarray | None, SegassistError | None, bool]:
            """(item, image, error, whether the error is temporary), in a decoding thread."""
            try:
                return item, load_image(item), None, False
            except SegassistError as error:
                return item, None, error, isinstance(error, TemporaryMediaError)
            except Exception as error:  # noqa: BLE001 - a fault on one item must not end the others
                log.exception("loading an image failed unexpectedly")
                return item, None, _fault("the image did not load", error, item), True

        def images() -> Iterator[np.ndarray]:
            # Decoding runs two batches ahead, so a huge input is never held in memory at once.
            with contextlib.closing(pool_map(self._pool, load, items, 2 * self.batch_size)) as loads:
                for index in itertools.count():
                    started = time.perf_counter()
                    loaded = next(loads, None)
                    timings["media"] += time.perf_counter() - started  # waiting for an image not yet decoded
                    if loaded is None:
                        return
                    item, image, error, retry = loaded
                    in_flight.append(_InFlight(index, item, image, error, retry))
                    if image is not None:
                        yield image

        stream = images()
        with self._model_lock, contextlib.closing(stream):
            while True:
                predicted = self.engine.predict_each(stream, self.mode, self.batch_size)
                with contextlib.closing(predicted):
                    try:
                        while True:
                            waited_from, media_before = time.perf_counter(), timings["media"]
                            segments = next(predicted, None)
                            # Waiting for images happens inside the engine's reads: media time, not model.
                            timings["model"] += (
                                time.perf_counter() - waited_from - (timings["media"] - media_before)
                            )
                            if segments is None:
                                break
                            yield from self._failed_ahead(in_flight)
                            yield self._finish(in_flight.popleft(), segments, info, timings)
                        yield from self._failed_ahead(in_flight)
                        return
                    except Exception as error:  # noqa: BLE001 - one image's fault must not end the others
                        if not any(entry.image is not None for entry in in_flight):
                            raise  # no image to blame: the engine itself is broken
                        log.warning(
                            "the engine failed on a batch (%r); predicting its images one by one", error
                        )
                # The engine's stream is gone; its images in flight are predicted alone, then the rest go on.
                while in_flight:
                    yield from self._failed_ahead(in_flight)
                    if in_flight:
                        yield self._predict_alone(in_flight.popleft(), info, timings)

    def _failed_ahead(self, in_flight: deque[_InFlight]) -> Iterator[ImageResult]:
        """The failed items at the head of the queue: they come before the next image's segments."""
        while in_flight and in_flight[0].image is None:
            entry = in_flight.popleft()
            yield self._failure(entry.index, entry.item, entry.error, entry.retry)

    def _predict_alone(self, entry: _InFlight, info: LabelConfigInfo | None, timings: dict) -> ImageResult:
        started = time.perf_counter()
        try:
            segments = self.engine.predict([entry.image], self.mode)[0]
        except SegassistError as error:
            return self._failure(entry.index, entry.item, error, retry=False)
        except Exception as error:  # noqa: BLE001
            log.exception("the engine failed on item %d", entry.index)
            return self._failure(entry.index, entry.item, _fault("the model failed", error, entry.item), True)
        finally:
            timings["model"] += time.perf_counter() - started
        return self._finish(entry, segments, info, timings)

    def _finish(
        self, entry: _InFlight, segments: list, info: LabelConfigInfo | None, timings: dict[str, float]
    ) -> ImageResult:
        """Shape, encode and serialize one image's segments."""
        try:
            started = time.perf_counter()
            shaped, report = postprocess.shape(
                segments,
                info,
                mode=self.mode,
                categories=self.engine.categories,
                score_threshold=self.settings.score_threshold,
                max_regions=self.settings.max_regions,
                panoptic_rule=self.engine.panoptic_rule,
            )
            result = ImageResult(entry.index, entry.item, segments=shaped, overlap=report)
            encoding_started = time.perf_counter()
            timings["postprocess"] += encoding_started - started
            if info is not None:
                result.prediction = postprocess.encode(shaped, info, self.model_version)
                json_started = time.perf_counter()
                timings["encoding"] += json_started - encoding_started
                result.prediction_json = postprocess.prediction_json(result.prediction)
                timings["json"] += time.perf_counter() - json_started
            return result
        except SegassistError as error:
            return self._failure(entry.index, entry.item, error, retry=False)
        except Exception as error:  # noqa: BLE001
            log.exception("post-processing failed on item %d", entry.index)
            return self._failure(
                entry.index, entry.item, _fault("post-processing failed", error, entry.item), True
            )

    def _failure(self, index: int, item: T, error: SegassistError, retry: bool) -> ImageResult[T]:
        if retry:
            log.warning("no prediction, ask again later (temporary failure): %s", error)
            return ImageResult(index, item, error=error, retry=True)
        log.warning("empty prediction: %s", error)
        prediction, text = self._empty
        return ImageResult(index, item, prediction=dict(prediction), prediction_json=text, error=error)

    # -- interactive -----------------------------------------------------------------------------------------

    def predict_interactive(
        self,
        task: dict[str, Any],
        context: dict[str, Any],
        info: LabelConfigInfo,
        load_image: Callable[[dict[str, Any]], np.ndarray],
        *,
        timings: dict[str, float] | None = None,
    ) -> ImageResult[dict[str, Any]]:
        """The suggestion answering the prompt regions of `context` on `task`'s image. No engine lock: an
        annotator's click must not wait behind a long batch, and inference-mode forwards may run side by side.
        `timings` (see `new_timings(INTERACTIVE_STAGES)`) receives media, model and json seconds."""
        timings = new_timings(INTERACTIVE_STAGES) if timings is None else timings

        def timed_load(loaded_task: dict[str, Any]) -> np.ndarray:
            started = time.perf_counter()
            try:
                return load_image(loaded_task)
            finally:
                timings["media"] += time.perf_counter() - started

        started, media_before = time.perf_counter(), timings["media"]
        prediction = handle(self.engine, task, context, info, timed_load)
        timings["model"] += time.perf_counter() - started - (timings["media"] - media_before)
        prediction["model_version"] = self.model_version
        json_started = time.perf_counter()
        text = postprocess.prediction_json(prediction)
        timings["json"] += time.perf_counter() - json_started
        return ImageResult(0, task, prediction=prediction, prediction_json=text)


def _device(settings: Settings) -> torch.device:
    """The settings' device. torch is imported here, not with this module: the Ray executor's light tasks
    (reading, rendering) unpickle this module's results in worker processes that never run a model, and
    importing torch would cost each of them over a second of CPU beside the model's actors."""
    from ml_backend.engines.torch_utils import resolve_device

    return resolve_device(settings.device)


def _choose_mode(requested: str, engine: Engine) -> str | None:
    if requested == "auto":
        # The richest automatic output the engine has; None for an interactive-only engine.
        return next((mode for mode in ("panoptic", "instance", "semantic") if mode in engine.modes), None)
    if requested not in engine.modes:
        raise SegassistError(
            f"mode {requested!r} is not available with this engine ({engine.model_version}), "
            f"which does {', '.join(engine.modes) or 'interactive prompts only'}"
        )
    return requested


def _fault(what: str, error: Exception, item: object) -> SegassistError:
    """An unexpected exception on one item, as an error naming the item (a task's id, else the item)."""
    if isinstance(item, dict):
        where = {"task_id": item.get("id")}
    else:
        where = {"file": str(item)} if isinstance(item, (str, PathLike)) else {}
    return SegassistError(f"{what}: {type(error).__name__}: {error}", **where)
