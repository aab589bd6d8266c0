"""Each benchmark's quick mode: its "same output" checks on small inputs, so a change that makes segassist and
a peer disagree fails here, not only under `make bench`. Times printed in quick mode mean nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from run_all import QUICK_MODULES  # noqa: E402


@pytest.mark.parametrize("name", QUICK_MODULES)
def test_benchmark_quick_mode_checks_hold(name: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", name],
        capture_output=True,
        text=True,
        timeout=240,
        # This checkout's code, whichever checkout the environment's editable install points to.
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.startswith("## "), completed.stdout[:500]
