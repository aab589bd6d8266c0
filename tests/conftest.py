"""Shared fixtures. Real fixtures are read from ../shared/realdata beside the checkout, never copied in."""

from __future__ import annotations

from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real-data folder; tests that need it skip with the reason when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real fixtures not found at {REALDATA} (shared/realdata beside the checkout)")
    return REALDATA


@pytest.fixture(scope="session")
def litemedsam():
    """The embedded LiteMedSAM engine on the CPU, loaded once for every test that prompts it (its embedding
    cache is shared too: tests use their own image keys and count cache hits relative to their start)."""
    import torch

    from ml_backend.engines.sam import load_default

    torch.set_num_threads(1)
    return load_default(torch.device("cpu"))
