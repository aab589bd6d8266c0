"""`segassist prelabel` throughput and memory on the CPU.

- Pipeline efficiency: prelabel (folder -> Label Studio JSON, the local executor) on 64 photos, in images/s,
  against the engine's bare forward on the same images already decoded in memory, same batch size, same
  threads, same process. Target >= 0.9: decoding, post-processing, encoding and writing overlap the model.
- Ray overhead: the Ray Data executor (a local cluster of 2 CPUs, one model actor) against the local one,
  same images, output files checked equal. Target >= 0.8x the throughput.
- Memory: peak RSS of a prelabel process on 1,000 small images against 100. Target <= 1.2x.

The engine is torchvision's DeepLabV3-MobileNetV3 (semantic mode) with random weights: the real
architecture and forward cost; no real weights on this machine. Each run alternates the peers in rounds and
reports medians.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGES = 64
ROUNDS = 2
MEMORY_COUNTS = (100, 1000)


def _weights(folder: Path) -> Path:
    from torchvision.models import segmentation

    torch.manual_seed(0)
    path = folder / "deeplab.pth"
    model = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, aux_loss=True)
    torch.save(model.state_dict(), path)
    return path


def _photos(folder: Path, count: int, longest: int) -> Path:
    """`count` JPEGs cut from skimage's photos (a different crop each)."""
    import skimage.data

    sources = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        array = sources[index % len(sources)]
        offset = (7 * index) % 150
        picture = Image.fromarray(array[offset : offset + 320, offset : offset + 400]).convert("RGB")
        picture.thumbnail((longest, longest))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        (folder / f"{index:05d}.jpg").write_bytes(buffer.getvalue())
    return folder


def _run(folder: Path, out: Path, engine, weights: Path, executor: str = "local"):
    import functools

    from converters.cli import build_parser
    from ml_backend.engines import torchvision_engine
    from ml_backend.prelabel.command import build_run
    from ml_backend.prelabel.driver import prelabel

    argv = ["prelabel", str(folder), "--to", "labelstudio", str(out), "--mode", "semantic", "--device", "cpu"]
    argv += ["--score-threshold", "0", "--executor", executor, "--actors", "1"]
    factory = functools.partial(
        torchvision_engine.load, f"deeplabv3_mobilenet_v3_large={weights}", torch.device("cpu")
    )
    run = build_run(build_parser().parse_args(argv), engine=engine, engine_factory=factory)
    run.progress = False
    started = time.perf_counter()
    summary = prelabel(run)
    assert summary.predicted == len(list(folder.iterdir())) and not summary.failed
    return time.perf_counter() - started


def _bare_forward(engine, images: list[np.ndarray], batch_size: int) -> float:
    """The engine's own streaming forward (what the service calls) over images already in memory."""
    started = time.perf_counter()
    for _ in engine.predict_each(iter(images), "semantic", batch_size):
        pass
    return time.perf_counter() - started


def throughput() -> list[str]:
    from ml_backend.engines import torchvision_engine
    from ml_backend.media import decode_rgb
    from ml_backend.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-prelabel-"))
    weights = _weights(work)
    folder = _photos(work / "photos", IMAGES, 256)
    engine = torchvision_engine.load(f"deeplabv3_mobilenet_v3_large={weights}", torch.device("cpu"))
    batch_size = Settings(device="cpu").batch_size or 2
    decoded = [decode_rgb(path.read_bytes(), 10**8) for path in sorted(folder.iterdir())]
    _bare_forward(engine, decoded[:4], batch_size)  # warm-up: first forwards allocate
    _run(_photos(work / "warm", 4, 256), work / "warm.json", engine, weights)
    bare, local, ray_times = [], [], []
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _run(work / "warm", work / "warm-ray.json", engine, weights, "ray")  # Ray's first job starts workers
        for _ in range(ROUNDS):
            bare.append(_bare_forward(engine, decoded, batch_size))
            local.append(_run(folder, work / "local.json", engine, weights))
            ray_times.append(_run(folder, work / "ray.json", engine, weights, "ray"))
    finally:
        ray.shutdown()
    same = (work / "ray.json").read_bytes() == (work / "local.json").read_bytes()
    rate = {
        name: IMAGES / statistics.median(times)
        for name, times in (("bare", bare), ("local", local), ("ray", ray_times))
    }
    efficiency = rate["local"] / rate["bare"]
    ray_ratio = rate["ray"] / rate["local"]
    return [
        f"{IMAGES} photos (256 px), DeepLabV3-MobileNetV3 semantic (random weights), batch {batch_size}, "
        f"{torch.get_num_threads()} torch threads, medians of {ROUNDS} interleaved rounds.",
        "",
        "| path | images/s | ratio | target |",
        "|---|---|---|---|",
        f"| engine forward alone, images decoded in memory | {rate['bare']:.2f} | 1.00 | |",
        f"| prelabel folder -> Label Studio JSON, local | {rate['local']:.2f} | {efficiency:.2f} of the "
        f"forward | >= 0.9 {_met(efficiency >= 0.9)} |",
        f"| prelabel, Ray Data executor (2 CPUs, 1 actor) | {rate['ray']:.2f} | {ray_ratio:.2f} of local "
        f"| >= 0.8 {_met(ray_ratio >= 0.8)} |",
        "",
        f"Ray's output file {'equals' if same else 'DIFFERS from'} the local executor's, byte for byte.",
    ]


def _peak_rss_child(count: int) -> None:
    """In a fresh process: prelabel `count` small images; prints nothing (the parent reads the rusage)."""
    from ml_backend.engines import torchvision_engine

    work = Path(tempfile.mkdtemp(prefix=f"bench-prelabel-mem{count}-"))
    weights = _weights(work)
    folder = _photos(work / "photos", count, 48)
    engine = torchvision_engine.load(
        f"deeplabv3_mobilenet_v3_large={weights}", torch.device("cpu"), semantic_size=48
    )
    _run(folder, work / "out.json", engine, weights)


def memory() -> list[str]:
    peaks = {}
    for count in MEMORY_COUNTS:
        child = subprocess.Popen([sys.executable, __file__, "--memory", str(count)])
        _, status, usage = os.wait4(child.pid, 0)
        assert status == 0, f"the memory run for {count} images failed"
        peaks[count] = usage.ru_maxrss / 1024  # KiB -> MiB
    ratio = peaks[MEMORY_COUNTS[1]] / peaks[MEMORY_COUNTS[0]]
    return [
        "",
        "| peak RSS of a prelabel process (48 px images) | MiB |",
        "|---|---|",
        *(f"| {count} images | {peaks[count]:.0f} |" for count in MEMORY_COUNTS),
        f"| ratio {MEMORY_COUNTS[1]} / {MEMORY_COUNTS[0]} (target <= 1.2) | {ratio:.2f} "
        f"({_met(ratio <= 1.2)}) |",
    ]


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    if sys.argv[1:2] == ["--memory"]:
        _peak_rss_child(int(sys.argv[2]))
        return
    print("\n".join(["## prelabel", "", *throughput(), *memory()]))


if __name__ == "__main__":
    main()
