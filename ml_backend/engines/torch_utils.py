"""Device handling shared by the tensor engines: device choice, inference context, OOM batch splitting,
side-by-side CPU forwards, weight files (local path or the framework cache) and tensor <-> Mask conversion."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from converters import Mask
from converters.errors import SegassistError
from converters.parallel import pool_map

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def resolve_device(spec: str) -> torch.device:
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise SegassistError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise SegassistError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SegassistError(f"device {spec!r} asked for, but CUDA is not available on this machine")
    return device


@contextlib.contextmanager
def inference(device: torch.device) -> Iterator[None]:
    """No autograd; fp16 autocast on CUDA (CPU stays fp32: CPU half precision is slower, not faster)."""
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                yield
        else:
            yield


def split_on_oom(run: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R]:
    """`run(items)`, halving the batch and retrying when CUDA runs out of memory (a single item re-raises)."""
    try:
        return run(items)
    except torch.cuda.OutOfMemoryError:
        if len(items) <= 1:
            raise
        torch.cuda.empty_cache()
        half = len(items) // 2
        log.warning(
            "CUDA out of memory on a batch of %d; retrying as %d + %d", len(items), half, len(items) - half
        )
        return split_on_oom(run, items[:half]) + split_on_oom(run, items[half:])


class CpuWorkers:
    """Runs independent CPU forwards side by side: `workers` threads of `threads_each` intra-op threads.

    Why: forwards side by side win back what one forward loses by splitting its ops over intra-op threads
    (serial parts: NMS, mask pasting, the Python between ops): little on idle cores, where one forward scales
    well over the intra-op threads, more on a busy machine (the measured gain and the intra-op scaling that
    bounds it: BENCHMARKS.md, backend section). One model copy serves every worker.

    torch's intra-op thread count belongs to the calling thread, but `torch.set_num_threads` also sets the
    count that threads started later take on their first parallel op. So each worker sets its count once,
    when it starts, and the creating thread's count is then set again, which request threads started later
    inherit unchanged.
    """

    def __init__(self, workers: int, threads_each: int) -> None:
        self.workers, self.threads_each = workers, threads_each
        restore = torch.get_num_threads()
        started = threading.Barrier(workers + 1)

        def start_worker() -> None:
            # torch's lazy per-thread set-up runs on the first call; run later, it would undo the next line.
            torch.get_num_threads()
            torch.set_num_threads(threads_each)
            started.wait()

        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="cpu-forward", initializer=start_worker)
        # A pool starts a thread per task while none is idle: `workers` tasks start them all.
        for _ in range(workers):
            self._pool.submit(lambda: None)
        started.wait()
        torch.set_num_threads(restore)

    def imap(self, run: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """`run` on each item in the workers, results in order as they are ready; the first error is raised.

        Two items per worker are taken ahead of the result being waited for, so a worker that finishes early
        starts the next item instead of waiting for a slower neighbour. Closing the iterator early cancels
        what has not started and waits for what has (`pool_map`).
        """
        return pool_map(self._pool, run, items, 2 * self.workers)


def to_tensor_images(images: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """(H, W, 3) uint8 arrays -> (3, H, W) float tensors in [0, 1], converted on `device`, not on the CPU.

    On CUDA each image goes through pinned (page-locked) memory: a copy from pageable memory is staged and
    waited for by the driver, one from pinned memory runs on the GPU's copy engine while the next image is
    prepared (torch's pinned allocator keeps the buffer until its copy is done)."""
    pinned = device.type == "cuda"
    tensors = []
    for image in images:
        host = torch.from_numpy(np.ascontiguousarray(image))
        if pinned:
            host = host.pin_memory()
        tensors.append(host.to(device, non_blocking=True).permute(2, 0, 1).float() / 255)
    return tensors


def crops_to_masks(
    crops: Sequence[torch.Tensor], origins: Sequence[tuple[int, int]], height: int, width: int
) -> list[Mask]:
    """Bool crops on the device, placed at (top, left) origins, as Masks: one device -> CPU copy for all."""
    if not crops:
        return []
    flat = torch.cat([crop.reshape(-1) for crop in crops]).cpu().numpy()
    masks, offset = [], 0
    for crop, (top, left) in zip(crops, origins, strict=True):
        rows, cols = crop.shape
        bits = flat[offset : offset + rows * cols].reshape(rows, cols)
        offset += rows * cols
        masks.append(Mask.from_crop(height, width, top, left, bits))
    return masks


def hub_checkpoint_path(url: str) -> Path:
    """Where torch's hub cache keeps the checkpoint downloaded from `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def weights_path(given: str | None, url: str) -> Path:
    """The weight file: `given` when set, else the framework cache's copy of `url` (torch hub checkpoints)."""
    path = Path(given) if given else hub_checkpoint_path(url)
    if not path.is_file():
        hint = (
            "check the path"
            if given
            else "run `segassist weights download NAME` on a machine with internet and copy the file there"
        )
        raise SegassistError(f"model weights not found ({hint})", file=str(path))
    return path


def load_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """A state dict (weights only: no pickled code runs) and a short digest of the file for model_version."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or non-weight files
        raise SegassistError(f"not a loadable weight file: {error}", file=str(path)) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise SegassistError("the weight file does not hold a state dict", file=str(path))
    return state, digest.hexdigest()[:10]
