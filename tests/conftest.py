"""Shared fixtures. Real fixtures are read from ../shared/realdata beside the checkout, never copied in.

Under CI (the `CI` environment variable set to true, as CI services and `.ci/run` do) nothing that a green run
depends on may be skipped silently: a missing realdata folder fails every test that needs it, and Hypothesis
runs derandomized (the same examples on every run, so a failure reproduces)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

# Hypothesis picks a CI profile by itself when `CI` is merely set (even to "false"); the choice is made here,
# on the same rule as the realdata check. Loaded at import, before the test modules build their own
# `settings(...)`, which inherit from it.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile("ci" if IN_CI else "default")


SLOW_TIMEOUT_S = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` (servers, real model sizes) get SLOW_TIMEOUT_S instead of the default timeout in
    pyproject.toml, unless they set their own with @pytest.mark.timeout."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real-data folder; without it a test skips with the reason, or fails under CI."""
    if not REALDATA.is_dir():
        reason = f"real fixtures not found at {REALDATA} (shared/realdata beside the checkout)"
        if IN_CI:
            pytest.fail(f"{reason}; CI must not skip the tests that read them", pytrace=False)
        pytest.skip(reason)
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
