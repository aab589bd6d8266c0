"""`--engine` names -> loaders. Each engine is imported only when chosen (SAM never loads transformers)."""

from __future__ import annotations

import importlib

import torch

from converters.errors import SegassistError
from ml_backend.engines.base import Engine

# name -> the engine's module: load_default(device) for its default model, load(model, device) for --model.
LOADERS = {
    "sam": "ml_backend.engines.sam",
    "torchvision": "ml_backend.engines.torchvision_engine",
    "transformers": "ml_backend.engines.transformers_engine",
}


def load_engine(name: str, model: str | None, device: torch.device) -> Engine:
    """Build the engine once per process: `model` is a name or path understood by that engine, or None."""
    if name not in LOADERS:
        raise SegassistError(f"unknown engine {name!r}; choose one of {', '.join(LOADERS)}")
    module = importlib.import_module(LOADERS[name])
    return module.load_default(device) if model is None else module.load(model, device)
