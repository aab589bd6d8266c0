"""/predict stage times (media, model, post-processing, encoding, JSON) with torchvision Mask R-CNN v2
on the CPU, for 1 and 8 tasks of 1024x1024; 8 tasks in one request against 8 single-task requests;
/health latency while a /predict runs. Random weights (no real weights on this machine): Mask R-CNN then
returns its maximum of 100 detections per image, the worst case for post-processing and encoding.

Targets: everything but the model <= 15 % of /predict; batched >= 1.3x the throughput of single requests;
/health p99 <= 100 ms during a /predict.

The process keeps freed tensor memory for reuse, as `segassist serve` does (converters.allocator); the engine
alone is also timed in fresh interpreters with glibc's default malloc and with that setting, side by side.
"""

from __future__ import annotations

import io
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import requests
import torch
from PIL import Image
from torchvision.models import detection
from werkzeug.serving import make_server

from converters.allocator import keep_freed_memory
from ml_backend.app import create_app
from ml_backend.engines import torchvision_engine
from ml_backend.service import STAGES
from ml_backend.settings import Settings

SIZE = 1024
TASKS = 8
ROUNDS = 3
ALLOCATOR_ROUNDS = 2
CONFIG_LABELS = detection.MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"]


def _images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    out = {}
    for index in range(TASKS):
        image = np.stack([(xx + index * 40) % 256, (yy * 2) % 256, (xx + yy) % 256], axis=2).astype(np.uint8)
        image = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        out[f"/data/upload/1/{index}.png"] = buffer.getvalue()
    return out


def _serve_media(files: dict[str, bytes]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = files.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def _stages(response: requests.Response) -> dict[str, float]:
    """Seconds per stage from the Server-Timing header."""
    out = {}
    for item in response.headers["Server-Timing"].split(","):
        name, _, duration = item.strip().partition(";dur=")
        out[name] = float(duration) / 1000
    return out


def _config() -> str:
    labels = "".join(f'<Label value="{name}"/>' for name in dict.fromkeys(CONFIG_LABELS) if name != "N/A")
    control = f'<BrushLabels name="tag" toName="image">{labels}</BrushLabels>'
    return f'<View><Image name="image" value="$image"/>{control}</View>'


def _load_engine(weights: Path) -> torchvision_engine.TorchvisionEngine:
    torch.set_num_threads(os.cpu_count() or 1)
    return torchvision_engine.load(f"maskrcnn_resnet50_fpn_v2={weights}", torch.device("cpu"))


def time_engine(weights: Path, keep: bool) -> dict[str, float]:
    """In a fresh interpreter: seconds and page faults per image for single images (on every intra-op thread,
    then on one) and for a 4-image call (forwards side by side)."""
    if keep:
        keep_freed_memory()
    engine = _load_engine(weights)
    images = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy() for data in _images().values()]
    engine.predict(images[:1], "instance")  # warm-up
    threads = torch.get_num_threads()
    singles = [images[:1], images[1:2]]
    out = {}
    for name, thread_count, calls in (
        ("single", threads, singles),
        ("single on 1 thread", 1, singles),
        ("batched", threads, [images[:4]]),
    ):
        torch.set_num_threads(thread_count)
        faults, started = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        for call in calls:
            engine.predict(call, "instance")
        count = sum(len(call) for call in calls)
        out[name] = (time.perf_counter() - started) / count
        out[f"{name} faults"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / count
    return out


def _allocator_rounds(weights: Path) -> list[dict[bool, dict[str, float]]]:
    """`time_engine` with glibc's defaults and with freed memory kept, alternating, each in a new process."""
    rounds = []
    for _ in range(ALLOCATOR_ROUNDS):
        timings = {}
        for keep in (False, True):
            child = subprocess.run(
                [sys.executable, __file__, "--time-engine", str(weights), "kept" if keep else "default"],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            timings[keep] = json.loads(child.stdout)
        rounds.append(timings)
    return rounds


def _allocator_lines(rounds: list[dict[bool, dict[str, float]]]) -> list[str]:
    def mean(keep: bool, key: str) -> float:
        return statistics.fmean(timings[keep][key] for timings in rounds)

    lines = [
        f"### Freed tensor memory kept for reuse (converters.allocator), the engine alone, {len(rounds)} "
        "rounds",
        "",
        "Each row is the mean of fresh processes, glibc defaults and kept memory alternating: 2 single "
        "images, then one 4-image call (forwards side by side).",
        "",
        "| malloc | single s/image | single page faults/image | batched s/image | batched page "
        "faults/image |",
        "|---|---|---|---|---|",
    ]
    for keep, label in ((False, "glibc defaults"), (True, "freed memory kept (the server's setting)")):
        lines.append(
            f"| {label} | {mean(keep, 'single'):.2f} | {mean(keep, 'single faults'):,.0f} | "
            f"{mean(keep, 'batched'):.2f} | {mean(keep, 'batched faults'):,.0f} |"
        )
    speedups = (mean(False, key) / mean(True, key) for key in ("single", "batched"))
    threads = os.cpu_count() or 1
    scaling = mean(True, "single on 1 thread") / mean(True, "single")
    lines += [
        "",
        "Speed-up from keeping freed memory: single {:.2f}×, batched {:.2f}×.".format(*speedups),
        "",
        f"Intra-op scaling, freed memory kept: one image takes {mean(True, 'single on 1 thread'):.2f} s on "
        f"1 thread and {mean(True, 'single'):.2f} s on {threads} ({scaling:.2f}× faster). {threads} forwards "
        f"side by side on 1 thread each can therefore give at most {threads / scaling:.2f}× the throughput "
        "of single-image calls, before they slow each other down (here: "
        f"{mean(True, 'single') / mean(True, 'batched'):.2f}×).",
    ]
    return lines


def run() -> str:
    keep_freed_memory()  # as `segassist serve` does, before the engine's threads exist
    torch.manual_seed(0)
    files = _images()
    media = _serve_media(files)
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "maskrcnn.pth"
        torch.save(
            detection.maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict(), weights
        )
        allocator_rounds = _allocator_rounds(weights)
        engine = _load_engine(weights)
    settings = Settings(
        engine="torchvision",
        mode="instance",
        label_studio_url=f"http://127.0.0.1:{media.server_address[1]}",
        media_cache_bytes=0,  # every request downloads and decodes, as distinct tasks would
        predict_budget_s=0,  # every task predicted, however loaded the machine: throughput is measured here
    )
    # The single-task peer must keep every intra-op thread: request threads start after the engine's CPU
    # workers took their share, so check what a thread started now gets.
    with ThreadPoolExecutor(1) as later:
        request_threads = later.submit(torch.get_num_threads).result()
    assert request_threads == torch.get_num_threads(), "the CPU workers changed the request threads' count"
    pool = engine.cpu_pool
    forwards = f"{pool.workers} side by side × {pool.threads_each} threads" if pool else "one at a time"
    app = create_app(settings, engine=engine)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    config = _config()
    paths = list(files)

    def predict(task_paths: list[str]) -> tuple[float, dict[str, float], int]:
        tasks = [{"id": i + 1, "data": {"image": path}} for i, path in enumerate(task_paths)]
        body = {"tasks": tasks, "project": "1.1", "label_config": config, "params": {"context": None}}
        started = time.perf_counter()
        response = requests.post(f"{base}/predict", json=body, timeout=1800)
        wall = time.perf_counter() - started
        response.raise_for_status()
        regions = sum(len(result["result"]) for result in response.json()["results"])
        return wall, _stages(response), regions

    try:
        # /health is probed during a warm-up request of its own: on a small machine the probing client
        # competes with the model for the CPU, which would distort the timed runs.
        latencies: list[float] = []
        done = threading.Event()

        def probe_health() -> None:
            while not done.is_set():
                started = time.perf_counter()
                requests.get(f"{base}/health", timeout=10).raise_for_status()
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)

        prober = threading.Thread(target=probe_health)
        prober.start()
        predict(paths[:2])
        done.set()
        prober.join()
        one_wall, one_stages, one_regions = predict(paths[:1])
        # Singles before and after each batch, so a change in machine load affects both sides alike;
        # several rounds, as the load on a shared machine moves a single round's ratio by ±10 %.
        half = TASKS // 2
        rounds = []
        for _ in range(ROUNDS):
            single_walls = [predict([path])[0] for path in paths[:half]]
            batch_wall, batch_stages, batch_regions = predict(paths)
            single_walls += [predict([path])[0] for path in paths[half:]]
            rounds.append((sum(single_walls), batch_wall))
    finally:
        server.shutdown()
        media.shutdown()

    single_total = sum(single for single, _ in rounds)
    speedup = single_total / sum(batch for _, batch in rounds)
    p99 = float(np.percentile(latencies, 99)) if latencies else float("nan")

    def overhead(stages: dict[str, float]) -> float:
        return 1 - stages["model"] / stages["total"]

    rows = []
    for label, stages, wall, regions in (
        ("1 task", one_stages, one_wall, one_regions),
        (f"{TASKS} tasks, one request", batch_stages, batch_wall, batch_regions),
    ):
        cells = " | ".join(f"{stages[stage]:.3f}" for stage in STAGES)
        rows.append(
            f"| {label} | {cells} | {stages['total']:.2f} | {wall:.2f} | {overhead(stages):.1%} | {regions} |"
        )
    verdict = {
        "non-model share (8 tasks)": (overhead(batch_stages), "≤ 15 %", overhead(batch_stages) <= 0.15),
        "batched / single throughput": (speedup, "≥ 1.3×", speedup >= 1.3),
        "/health p99 during /predict (s)": (p99, "≤ 0.100 s", p99 <= 0.1),
    }
    return "\n".join(
        [
            "## backend: /predict stages (torchvision Mask R-CNN v2, CPU, random weights)",
            "",
            f"{SIZE}×{SIZE} PNG tasks fetched over local HTTP (media cache off), instance mode, "
            f"BrushLabels output; {torch.get_num_threads()} torch threads: a 1-task request runs one forward "
            f"on all of them, a batch queues its images for forwards {forwards}, and each task is encoded "
            "and serialized (orjson) while the next forwards run; the model is stored channels-last and the "
            "process keeps freed tensor memory for reuse. "
            "Random weights give 100 detections per image (the most Mask R-CNN returns), the heaviest case "
            "for post-processing and encoding. Stage seconds come from the Server-Timing header; `model` "
            "is the time /predict waited for the engine (forward, mask pasting into boxes, thresholding); "
            "`media` is only the time it waited for images that were not yet decoded.",
            "",
            f"| request | {' | '.join(STAGES)} | server total s | client wall s | non-model share | "
            "regions |",
            "|---|" + "---|" * (len(STAGES) + 4),
            *rows,
            "",
            f"Per image: {one_wall:.2f} s in a 1-task request; in {ROUNDS} rounds of 4 single-task "
            f"requests, the {TASKS}-task request, 4 more single-task requests: "
            + "; ".join(
                f"{single / TASKS:.2f} s single, {batch / TASKS:.2f} s batched ({single / batch:.2f}×)"
                for single, batch in rounds
            )
            + ". Side by side, forwards gain only what one forward loses by sharing its ops between "
            "threads: the intra-op scaling below bounds the ratio.",
            f"/health during a 2-task /predict: {len(latencies)} probes, median "
            f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms.",
            "",
            "| target | measured | goal | met |",
            "|---|---|---|---|",
            *(
                f"| {name} | {value:.3f} | {goal} | {'yes' if met else '**no**'} |"
                for name, (value, goal, met) in verdict.items()
            ),
            "",
            *_allocator_lines(allocator_rounds),
        ]
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--time-engine"]:
        print(json.dumps(time_engine(Path(sys.argv[2]), keep=sys.argv[3] == "kept")))
    else:
        print(run())
