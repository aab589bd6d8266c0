"""`--engine` names -> loaders. Each engine is imported only when chosen (SAM never loads transformers)."""

from __future__ import annotations

import importlib

import torch

from converters.errors import SegassistError
from ml_backend.engines.base import Engine
from ml_backend.engines.torch_utils import resolve_device

__all__ = ["LOADERS", "load_engine", "resolve_device"]

# name -> (module, loader for the engine's default model, loader taking --model)
LOADERS: dict[str, tuple[str, str, str]] = {
    "sam": ("ml_backend.engines.sam", "load_default", "load"),
    "torchvision": ("ml_backend.engines.torchvision_engine", "load_default", "load"),
    "transformers": ("ml_backend.engines.transformers_engine", "load_default", "load"),
}


def load_engine(name: str, model: str | None, device: torch.device) -> Engine:
    """Build the engine once per process: `model` is a name or path understood by that engine, or None."""
    try:
        module_name, default_loader, loader = LOADERS[name]
    except KeyError:
        raise SegassistError(f"unknown engine {name!r}; choose one of {', '.join(LOADERS)}") from None
    module = importlib.import_module(module_name)
    if model is None:
        return getattr(module, default_loader)(device)
    return getattr(module, loader)(model, device)
