"""The Ray Data executor: the same stages as the local one, as a Ray Data job.

    read and decode (CPU tasks) -> the prediction service (an actor pool: the model loads once per actor,
    one GPU per actor when there are GPUs) -> render for the sink (CPU tasks) -> the driver's journal and sink

Without --ray-address Ray starts a local cluster (or uses the one this process already started). Rows carry
pickled items, images and results: Ray moves them as bytes and never needs to understand them.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from converters.errors import SegassistError
from ml_backend.prelabel.pipeline import Outcome, failed, outcome
from ml_backend.prelabel.sources import ImageLoader, Item


def run_ray(run: Any, items: Iterable[Item]) -> Iterator[tuple[Item, Outcome]]:
    try:
        import ray
    except ImportError:
        raise SegassistError("--executor ray needs Ray: pip install 'segassist[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=run.ray_address, include_dashboard=False, log_to_driver=False)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = run.actors or max(1, gpus)
    batch_size = run.service.batch_size
    rows = [{"item": pickle.dumps(item)} for item in items]
    if not rows:
        return
    dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * actors * batch_size) or 1)
    dataset = dataset.map(_Load, fn_constructor_args=(run.loader,), concurrency=actors + 1)
    dataset = dataset.map_batches(
        _Predict,
        fn_constructor_args=(run.engine_factory, run.service.settings, run.label_config),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=actors,
        num_gpus=1 if gpus else 0,
    )
    dataset = dataset.map(_Render, fn_constructor_args=(run.sink.render,), concurrency=actors + 1)
    for row in dataset.iter_rows():
        yield pickle.loads(row["item"]), pickle.loads(row["outcome"])


class _Load:
    """A CPU task: the item's image, pickled, or its failure."""

    def __init__(self, loader: ImageLoader) -> None:
        self.loader = loader

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        item = pickle.loads(row["item"])
        try:
            image = self.loader(item)
        except SegassistError as error:
            return {"item": row["item"], "image": b"", "outcome": pickle.dumps(failed(item, error))}
        return {"item": row["item"], "image": pickle.dumps(image), "outcome": b""}


class _Predict:
    """An actor: the prediction service, built once, predicting the images of each batch."""

    def __init__(self, engine_factory: Any, settings: Any, label_config: str | None) -> None:
        from ml_backend.service import PredictionService

        self.service = PredictionService(settings, engine_factory())
        self.info = self.service.label_config(label_config) if label_config else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        items = list(batch["item"])
        images = [pickle.loads(blob) if blob else None for blob in batch["image"]]
        loaded = [index for index, image in enumerate(images) if image is not None]
        results = [b""] * len(items)
        for result in self.service.predict(loaded, lambda index: images[index], self.info):
            index = result.item
            result.item = None
            results[index] = pickle.dumps((result, images[index].shape[:2]))
        return {"item": items, "result": results, "outcome": list(batch["outcome"])}


class _Render:
    """A CPU task: the sink's rendering of one prediction (encoding, PNGs)."""

    def __init__(self, render: Any) -> None:
        self.render = render

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["outcome"]:
            return {"item": row["item"], "outcome": row["outcome"]}
        item = pickle.loads(row["item"])
        result, size = pickle.loads(row["result"])
        return {"item": row["item"], "outcome": pickle.dumps(outcome(item, result, size, self.render))}
