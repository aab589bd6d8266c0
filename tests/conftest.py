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
