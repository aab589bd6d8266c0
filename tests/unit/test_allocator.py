"""The serving process keeps freed tensor memory for reuse (converters.allocator): counted in page faults.

Each case runs in a fresh interpreter, since malloc settings last for the process. There, a two-convolution
model runs forwards at 400x400 with 64 channels, first in a new thread (as the CPU workers do) and then in the
main thread. Each forward's output alone is a 40 MB tensor: mapped anew by the kernel, it costs a page fault
per 4 KiB page.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORWARDS = 5
OUTPUT_PAGES = 64 * 400 * 400 * 4 // 4096

FORWARD_LOOP = textwrap.dedent(
    f"""
    import resource, sys, threading
    import torch

    if sys.argv[1] == "served":
        from ml_backend.app import create_app
        from ml_backend.settings import Settings

        create_app(Settings())  # the embedded default model, loaded as `segassist serve` loads it

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3, padding=1)
    )
    image = torch.rand(1, 3, 400, 400)

    def forwards(faults):
        with torch.inference_mode():
            model(image)  # the first forward may grow the heap
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range({FORWARDS}):
                model(image)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    faults = []
    worker = threading.Thread(target=forwards, args=(faults,))
    worker.start()
    worker.join()
    forwards(faults)
    print(*faults)
    """
)

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the malloc settings are glibc's, and the page faults are counted with Linux's getrusage",
)


def _faults(case: str, **env: str) -> list[int]:
    """Page faults during FORWARDS forwards in a new thread, then during FORWARDS in the main thread."""
    result = subprocess.run(
        [sys.executable, "-c", FORWARD_LOOP, case],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return [int(count) for count in result.stdout.split()]


def test_the_serving_process_reuses_freed_tensor_memory_in_every_thread():
    # glibc's defaults, the peer: at least every forward's output is mapped anew.
    assert all(count >= FORWARDS * OUTPUT_PAGES for count in _faults("plain"))
    assert all(count < 0.01 * FORWARDS * OUTPUT_PAGES for count in _faults("served"))


def test_malloc_settings_in_glibc_tunables_are_left_to_the_operator():
    # A tunable that keeps glibc's mapping of large buffers: the backend must not override it.
    counts = _faults("served", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=131072")
    assert all(count >= FORWARDS * OUTPUT_PAGES for count in counts)
