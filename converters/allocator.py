"""glibc malloc settings for a process that allocates and frees the same large buffers again and again: a
server running tensor models (`segassist serve`), an evaluation decoding one id map after another
(`segassist eval`).

With glibc's defaults, buffers over its mmap threshold (at most 32 MiB; the largest activations of a forward
are larger) are mapped fresh from the kernel and unmapped when freed, and so are the large buffers of threads
that got a heap of their own: every forward (every decoded image) pays a page fault for each 4 KiB of them,
and the kernel zeroes each page. Kept in one heap instead, freed buffers are reused by the next one, and the
process holds on to its peak footprint, as a caching allocator would. benchmarks/backend.py and
benchmarks/eval.py measure it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
SETTINGS = (
    (M_MMAP_MAX, 0),  # no buffer is mapped on its own: all come from the heap and go back to it
    (M_ARENA_MAX, 1),  # one heap, so what a worker thread frees is reused by the next, whichever thread
    (M_TRIM_THRESHOLD, 2**31 - 1),  # up to 2 GiB freed at the heap's top is kept, not returned to the kernel
)


def keep_freed_memory() -> None:
    """Applies SETTINGS to this process's glibc malloc.

    Call it before the model (the worker threads) first allocate: a thread keeps the heap it was first given.
    Nothing is changed where the C library is not glibc, or where GLIBC_TUNABLES already sets malloc (the
    operator's choice wins).
    """
    if platform.libc_ver()[0] != "glibc" or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return
    mallopt = ctypes.CDLL(None).mallopt
    refused = [parameter for parameter, value in SETTINGS if mallopt(parameter, value) != 1]
    if refused:
        log.warning("glibc refused mallopt parameters %s: freed memory may go back to the kernel", refused)
