"""The timing helpers the benchmarks share, so that both sides of a ratio are timed alike, and the quick mode.

Quick mode (`python benchmarks/NAME.py --quick`, run by the test suite) runs every "same output" check of a
benchmark on small inputs and times one call of each side: it proves the comparison still holds, not a speed.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls of `function`, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_pair(ours: Callable[[], object], peer: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of `repeats` calls of each side. With more than one repeat each side first gets one
    untimed warm-up call; the timed calls alternate, so load from other work on the machine falls on both."""
    if repeats > 1:
        ours()
        peer()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for function, spent in zip((ours, peer), times, strict=True):
            start = time.perf_counter()
            function()
            spent.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main(run: Callable[[bool], str]) -> None:
    """A benchmark module's entry point: prints its Markdown section; `--quick` runs the quick mode."""
    print(run("--quick" in sys.argv[1:]))
