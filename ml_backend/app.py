"""The Flask app factory and the prediction service behind the protocol routes.

One `Backend` per process holds the engine (loaded once, before the first request), the media fetcher, a cache
of parsed label configs and a thread pool that decodes the next tasks' images while the model runs. One
request's prediction runs at a time (`_model_lock`); /health and /setup never wait for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from flask import Flask

from converters.errors import SegassistError
from converters.parallel import submit_ahead
from ml_backend import postprocess
from ml_backend.allocator import keep_freed_memory
from ml_backend.engines.base import Engine
from ml_backend.engines.torch_utils import resolve_device
from ml_backend.labeling import LabelConfigInfo, load_label_map, parse_label_config
from ml_backend.media import MediaFetcher
from ml_backend.settings import Settings

log = logging.getLogger(__name__)

CONFIG_CACHE_SIZE = 32
STAGES = ("media", "model", "postprocess", "encoding", "json")
# A task's result that holds no prediction at all: Label Studio saves nothing for it and asks again later.
NO_PREDICTION = b"[]"


class Backend:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.mode = self._choose_mode(settings.mode, engine)
        # Stable for the process; includes the mode so changing it makes Label Studio predict again.
        self.model_version = f"{engine.model_version}-{self.mode}" if self.mode else engine.model_version
        self.media = MediaFetcher(settings)
        self._label_map = load_label_map(settings.label_map_file)
        self._configs: OrderedDict[str, LabelConfigInfo] = OrderedDict()
        self._configs_lock = threading.Lock()
        self._project_configs: dict[str, str] = {}
        self._model_lock = threading.Lock()
        self.batch_size = settings.batch_size or (8 if resolve_device(settings.device).type == "cuda" else 2)
        self._pool = ThreadPoolExecutor(max_workers=max(2, self.batch_size), thread_name_prefix="media")

    @staticmethod
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

    # -- label configs ---------------------------------------------------------------------------------------

    def remember_project_config(self, project: object, schema: str) -> None:
        with self._configs_lock:
            self._project_configs[str(project)] = schema

    def project_config(self, project: object) -> str | None:
        with self._configs_lock:
            return self._project_configs.get(str(project))

    def label_config(self, xml: str) -> LabelConfigInfo:
        """Parsed once per distinct config (unmapped classes are logged then, i.e. once)."""
        with self._configs_lock:
            info = self._configs.get(xml)
            if info is not None:
                self._configs.move_to_end(xml)
                return info
        parsed = parse_label_config(xml, self.engine.categories, self._label_map)
        # The interactive handler fetches the task image through the info it is given.
        info = dataclasses.replace(parsed, load_image=functools.partial(self.load_task_image, info=parsed))
        with self._configs_lock:
            self._configs[xml] = info
            while len(self._configs) > CONFIG_CACHE_SIZE:
                self._configs.popitem(last=False)
        return info

    def load_task_image(self, task: dict, info: LabelConfigInfo) -> np.ndarray:
        task_id = task.get("id") if isinstance(task, dict) else None
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise SegassistError("the task has no data object", task_id=task_id)
        key = info.image.value_key
        reference = data.get(key, data.get("$undefined$"))
        if reference is None:
            raise SegassistError(
                f'the task data has no {key!r} (the config\'s <Image value="${key}">)', task_id=task_id
            )
        return self.media.load_rgb(reference, task_id)

    # -- batch prediction ------------------------------------------------------------------------------------

    def predict_batch(self, tasks: list, info: LabelConfigInfo, timings: dict[str, float]) -> list[bytes]:
        """One prediction per task, in order, as JSON (bytes). A task that fails (bad image, bad data) gets an
        empty prediction and a logged reason; the others are unaffected.

        The request is one stream: images are decoded a few tasks ahead of the model, and each task is
        shaped, encoded and serialized as soon as its segments are ready, while the model works on the next.

        Label Studio sends a whole selection in one request and gives up after ML_TIMEOUT_PREDICT (100 s).
        Once the predict budget is spent (after at least one task), the tasks not yet predicted get no
        prediction (`[]`): Label Studio saves none for them, so the next Retrieve Predictions sends only them.
        """
        budget = self.settings.predict_budget_s
        deadline = time.perf_counter() + budget if budget else math.inf
        empty = postprocess.prediction_json(postprocess.empty_prediction(self.model_version))
        if self.mode is None or info.output is None:
            reason = "no automatic mode for this engine" if self.mode is None else "no mask or box control"
            log.warning("returning empty predictions for %d tasks: %s", len(tasks), reason)
            return [empty] * len(tasks)
        if not info.label_for_category:
            log.warning("no model class maps to a label of control %r: empty predictions", info.output.name)
            return [empty] * len(tasks)
        decoded: deque[int] = deque()  # task indices of the images handed to the engine, not yet predicted

        def images() -> Iterator[np.ndarray]:
            # Decoding runs two batches ahead, so a huge request never holds every image at once.
            loads = submit_ahead(self._pool, info.load_image, tasks, 2 * self.batch_size)
            with contextlib.closing(loads):
                for index, future in enumerate(loads):
                    started = time.perf_counter()
                    try:
                        image = future.result()
                    except SegassistError as error:
                        log.warning("task skipped: %s", error)
                        failed.add(index)
                        continue
                    finally:
                        timings["media"] += time.perf_counter() - started
                    decoded.append(index)
                    yield image

        predictions: dict[int, bytes] = {}
        failed: set[int] = set()
        with (
            self._model_lock,
            contextlib.closing(self.engine.predict_each(images(), self.mode, self.batch_size)) as predicted,
        ):
            while not (predictions and time.perf_counter() >= deadline):
                waited_from, media_before = time.perf_counter(), timings["media"]
                segments = next(predicted, None)
                # Waiting for images happens inside the engine's reads; it is media time, not model time.
                timings["model"] += time.perf_counter() - waited_from - (timings["media"] - media_before)
                if segments is None:
                    break
                predictions[decoded.popleft()] = self._prediction_text(segments, info, timings)
        left = len(tasks) - len(predictions) - len(failed)
        if left:
            log.warning(
                "the %g s predict budget (SEGASSIST_PREDICT_BUDGET) ran out after %d of %d tasks; the "
                "other %d get no prediction now: Retrieve Predictions again to continue",
                budget,
                len(predictions) + len(failed),
                len(tasks),
                left,
            )
        return [
            predictions.get(index, empty if index in failed else NO_PREDICTION) for index in range(len(tasks))
        ]

    def _prediction_text(self, segments: list, info: LabelConfigInfo, timings: dict[str, float]) -> bytes:
        started = time.perf_counter()
        shaped = postprocess.shape(
            segments,
            info,
            mode=self.mode,
            categories=self.engine.categories,
            score_threshold=self.settings.score_threshold,
            max_regions=self.settings.max_regions,
        )
        encoding_started = time.perf_counter()
        prediction = postprocess.encode(shaped, info, self.model_version)
        json_started = time.perf_counter()
        text = postprocess.prediction_json(prediction)
        timings["postprocess"] += encoding_started - started
        timings["encoding"] += json_started - encoding_started
        timings["json"] += time.perf_counter() - json_started
        return text

    # -- interactive -----------------------------------------------------------------------------------------

    def predict_interactive(self, task: dict, context: dict, info: LabelConfigInfo) -> dict:
        """THE place interactive requests leave the backend: the SAM engineer's handler answers them."""
        from ml_backend.interactive import handle

        # No model lock here: an annotator's click must not wait behind a long batch prediction, and
        # inference-mode forwards may run concurrently.
        prediction = handle(self.engine, task, context, info)
        prediction["model_version"] = self.model_version
        return prediction


def configure_logging() -> None:
    """INFO logs by default; LOG_LEVEL=DEBUG adds per-region details (never tokens or image bytes)."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def create_app(settings: Settings, engine: Engine | None = None) -> Flask:
    """The WSGI app. `engine` is loaded from the settings when not given (tests pass one they built through
    the same loaders); a process that loads its engine here also keeps freed tensor memory for reuse."""
    if engine is None:
        from ml_backend.engines.registry import load_engine

        keep_freed_memory()  # before the engine's threads exist: each keeps the heap it first gets
        started = time.perf_counter()
        engine = load_engine(settings.engine, settings.model, resolve_device(settings.device))
        log.info("loaded %s in %.1f s", engine.model_version, time.perf_counter() - started)
    from ml_backend.protocol import blueprint

    app = Flask("segassist")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False
    app.extensions["segassist"] = Backend(settings, engine)
    app.register_blueprint(blueprint)
    return app
