"""`--engine` names (`ENGINES`) -> loaded engines. Each engine is imported only when chosen."""

from __future__ import annotations

import importlib

import torch

from converters.errors import SegassistError
from ml_backend.engines import ENGINES
from ml_backend.engines.base import Engine


def load_engine(name: str, model: str | None, device: torch.device) -> Engine:
    """Build the engine once per process: `model` is a name or path understood by that engine, or None."""
    if name not in ENGINES:
        raise SegassistError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    module = importlib.import_module(ENGINES[name])
    return module.load_default(device) if model is None else module.load(model, device)
