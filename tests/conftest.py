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


@pytest.fixture(scope="session")
def random_torchvision_weights(tmp_path_factory):
    """Mask R-CNN v2 and DeepLabV3 weight files with seeded random weights, written once per session."""
    import torch

    from tests.backend_support import save_random_weights

    torch.set_num_threads(1)
    return save_random_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def random_torchvision_engine(random_torchvision_weights):
    """The torchvision engine on those weights, loaded once for the tests that only predict with it."""
    from tests.backend_support import load_test_engine

    return load_test_engine(*random_torchvision_weights)
