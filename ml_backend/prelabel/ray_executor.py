"""The Ray Data executor: the same stages as the local one, as one Ray Data job.

    read and decode (CPU tasks) -> the prediction service (an actor pool: `map_batches` with a callable
    class, so the model loads once per actor; one GPU per actor when the cluster has GPUs) -> the sink's
    rendering (CPU tasks) -> the driver's journal and sink, as rows arrive

Without --ray-address Ray starts a local cluster (or uses the one this process already started). Rows carry
pickled items, images and results: Ray moves them as bytes and never needs to understand them. Results come
back in any order; the sinks write in source order from the journal, so the files equal the local executor's.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from converters.errors import SegassistError
from ml_backend.labeling import LabelConfigInfo
from ml_backend.prelabel.pipeline import Outcome, Render, failed, outcome
from ml_backend.prelabel.sources import ImageLoader, Item

# Reading, decoding and rendering are light next to a forward: they share the CPUs the actors leave.
LIGHT_TASK_CPUS = 0.25
# Engine batches per actor call: within a call the service keeps the engine fed (decode ahead, CPU workers
# busy across batches); between calls it drains, and a call of one batch waits for its slowest image. On the
# benchmark's 2 CPUs, 8 batches gave 0.80x the local executor's throughput, 4 gave 0.77x, 1 gave 0.74x.
CALL_BATCHES = 8


def run_ray(run: Any, items: Iterable[Item]) -> Iterator[tuple[Item, Outcome]]:
    try:
        import ray
    except ImportError:
        raise SegassistError("--executor ray needs Ray: pip install 'segassist[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=run.ray_address, include_dashboard=False, log_to_driver=False)
    # Ray Data's own progress lines would bury the command's bar and summary.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    actors = run.actors or max(1, gpus)
    # On CPUs an actor's forward uses its share of the cluster's cores, as the local executor uses all.
    threads = None if gpus else max(1, int(resources.get("CPU", 1)) // actors)
    rows = [{"item": pickle.dumps(item)} for item in items]
    if not rows:
        return
    batch_size = run.service.batch_size
    dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * actors))
    dataset = dataset.map(_load, fn_args=(run.loader,), num_cpus=LIGHT_TASK_CPUS)
    dataset = dataset.map_batches(
        _Predict,
        fn_constructor_args=(run.engine_factory, run.service.settings, run.info, threads),
        batch_size=batch_size * CALL_BATCHES,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0,
    )
    dataset = dataset.map(_render, fn_args=(run.sink.render,), num_cpus=LIGHT_TASK_CPUS)
    for row in dataset.iter_rows():
        yield pickle.loads(row["item"]), pickle.loads(row["outcome"])


def _load(row: dict[str, Any], loader: ImageLoader) -> dict[str, Any]:
    """A CPU task: the item's image, pickled, or its failure."""
    item = pickle.loads(row["item"])
    try:
        image = loader(item)
    except SegassistError as error:
        return {"item": row["item"], "image": b"", "outcome": pickle.dumps(failed(item, error))}
    return {"item": row["item"], "image": pickle.dumps(image), "outcome": b""}


class _Predict:
    """An actor: the prediction service, built once, predicting the images of each batch."""

    def __init__(
        self, engine_factory: Any, settings: Any, info: LabelConfigInfo | None, threads: int | None
    ) -> None:
        """`info`: the driver's parsed label config, plain data: the actor needs neither label-studio-sdk's
        parser (half a second of imports) nor a parse of its own."""
        import torch

        from converters.allocator import keep_freed_memory
        from ml_backend.service import PredictionService

        # As `PredictionService.from_settings` does for the local executor, before the model's threads exist.
        keep_freed_memory()
        if threads is not None:
            torch.set_num_threads(threads)
        self.service = PredictionService(settings, engine_factory())
        self.info = info

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        images = [pickle.loads(blob) if blob else None for blob in batch["image"]]
        loaded = [index for index, image in enumerate(images) if image is not None]
        results = [b""] * len(images)
        for result in self.service.predict(loaded, images.__getitem__, self.info):
            index, result.item = result.item, None
            results[index] = pickle.dumps((result, images[index].shape[:2]))
        return {"item": list(batch["item"]), "result": results, "outcome": list(batch["outcome"])}


def _render(row: dict[str, Any], render: Render) -> dict[str, Any]:
    """A CPU task: the sink's rendering of one prediction (JSON, PNG encoding)."""
    if row["outcome"]:
        return {"item": row["item"], "outcome": row["outcome"]}
    item = pickle.loads(row["item"])
    result, size = pickle.loads(row["result"])
    return {"item": row["item"], "outcome": pickle.dumps(outcome(item, result, size, render))}
