"""`--engine` names (`ENGINES`) -> loaded engines. Each engine is imported only when chosen."""

from __future__ import annotations

import importlib

import torch

from converters.errors import SegassistError
from ml_backend.engines import ENGINES
from ml_backend.engines.base import Engine
from ml_backend.engines.sam_family import EmbeddingCache, is_sam2_spec

# The sam engine also serves SAM 2 models ("sam2.1_hiera_t:/path"), from their own module (the sam2 extra).
SAM2_LOADER = "ml_backend.engines.sam2_engine"


def load_engine(
    name: str, model: str | None, device: torch.device, *, sam_cache_mb: float | None = None
) -> Engine:
    """Build the engine once per process: `model` is a name or path understood by that engine, or None.
    `sam_cache_mb` bounds the SAM family's image embedding cache (the settings' SEGASSIST_SAM_CACHE_MB)."""
    if name not in ENGINES:
        raise SegassistError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    if name == "sam" and model is not None and is_sam2_spec(model):
        try:
            module = importlib.import_module(SAM2_LOADER)
        except ImportError as error:
            raise SegassistError(
                f"{model.partition(':')[0]} needs SAM 2, which is not installed ({error}); see the README's "
                "SAM 2 notes"
            ) from None
    else:
        module = importlib.import_module(ENGINES[name])
    options = {}
    if name == "sam" and sam_cache_mb is not None:
        options["cache"] = EmbeddingCache.of_megabytes(sam_cache_mb)
    return module.load_default(device, **options) if model is None else module.load(model, device, **options)
