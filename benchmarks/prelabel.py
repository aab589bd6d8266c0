"""`segassist prelabel` throughput and memory on the CPU.

- Pipeline efficiency: prelabel (folder -> Label Studio JSON, the local executor) on 64 photos, in images/s,
  against the engine's bare forward on the same images already decoded in memory, same batch size, same
  threads, same process. Target >= 0.9: decoding, post-processing, encoding and writing overlap the model.
- Ray overhead: the Ray Data executor (a local cluster of 2 CPUs, one model actor) against the local one,
  same images, output files checked equal. Both runs load their model inside the timed run, as the command
  does (Ray in its main process and in the actor); the cluster is started before. Target >= 0.8x the
  throughput. Run on 64 and on 256 photos: the difference gives each executor's seconds per image once
  running, apart from its start (Ray's actor is a new process that imports torch before loading the model).
- Memory: peak RSS of a prelabel process on 1,000 small images against 100. Target <= 1.2x.
- Against the peer path, in a real Label Studio (`.venv-ls`, as the end-to-end tests start it): the same 64
  uploaded tasks predicted by Label Studio's Retrieve Predictions against `segassist serve` (as many calls as
  it takes, each answering after the backend's 60 s budget) and by one `prelabel --project ID --push`
  (its process start and model load included). Target: one command, >= 1.0x the throughput.

The engine is torchvision's DeepLabV3-MobileNetV3 (semantic mode) with random weights: the real
architecture and forward cost; no real weights on this machine. Each run alternates the peers in rounds and
reports medians.
"""

from __future__ import annotations

import atexit
import io
import json
import shutil
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
LONG_IMAGES = 256  # a second length: separates each executor's start from its throughput once running
ROUNDS = 2
MEMORY_COUNTS = (100, 1000)
MEMORY_ROUNDS = 3


def _scratch(prefix: str) -> Path:
    """A temporary folder removed when the process ends (photos, weights, outputs, Label Studio's data)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    return folder


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
    """Seconds for one prelabel run; with `engine` None the run loads its own model, as the command does
    (timed from before the load)."""
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
    started = time.perf_counter()
    if engine is None:
        engine = factory()
    run = build_run(build_parser().parse_args(argv), engine=engine, engine_factory=factory)
    run.progress = False
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
    from converters.allocator import keep_freed_memory
    from ml_backend.engines import torchvision_engine
    from ml_backend.media import decode_rgb
    from ml_backend.settings import Settings

    work = _scratch("bench-prelabel-")
    weights = _weights(work)
    folders = {count: _photos(work / f"photos-{count}", count, 256) for count in (IMAGES, LONG_IMAGES)}
    folder = folders[IMAGES]
    # As `segassist prelabel` runs the local executor (PredictionService.from_settings) and each Ray actor.
    keep_freed_memory()
    engine = torchvision_engine.load(f"deeplabv3_mobilenet_v3_large={weights}", torch.device("cpu"))
    batch_size = Settings(device="cpu").batch_size or 2
    decoded = [decode_rgb(path.read_bytes(), 10**8) for path in sorted(folder.iterdir())]
    _bare_forward(engine, decoded[:4], batch_size)  # warm-up: first forwards allocate
    _run(_photos(work / "warm", 4, 256), work / "warm.json", engine, weights)
    bare, local = [], []
    # (executor, image count) -> seconds of runs loading their model
    loading: dict[tuple[str, int], list[float]] = {(e, n): [] for e in ("local", "ray") for n in folders}
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _run(work / "warm", work / "warm-ray.json", engine, weights, "ray")  # Ray's first job starts workers
        for round_index in range(ROUNDS):
            bare.append(_bare_forward(engine, decoded, batch_size))
            local.append(_run(folder, work / "local.json", engine, weights))
            # Executors compared as the command runs them: each loads its model (Ray: in the main process for
            # the label config and version, and in its actor), Ray's cluster already up. Each length runs
            # local and Ray back to back, in the opposite order every other round (what runs before a run,
            # a long job or Ray's idle workers, weighs on both alike).
            for count in folders:
                executors = ("local", "ray") if round_index % 2 == 0 else ("ray", "local")
                for executor in executors:
                    out = work / f"{executor}-{count}.json"
                    loading[executor, count].append(_run(folders[count], out, None, weights, executor))
    finally:
        ray.shutdown()
    same = all(
        (work / first).read_bytes() == (work / second).read_bytes()
        for first, second in [
            ("local.json", f"local-{IMAGES}.json"),
            ("local.json", f"ray-{IMAGES}.json"),
            (f"local-{LONG_IMAGES}.json", f"ray-{LONG_IMAGES}.json"),
        ]
    )
    seconds = {key: statistics.median(times) for key, times in loading.items()}
    rate = {key: key[1] / value for key, value in seconds.items()}
    bare_rate, local_rate = (IMAGES / statistics.median(times) for times in (bare, local))
    efficiency = local_rate / bare_rate
    ray_ratio = {count: rate["ray", count] / rate["local", count] for count in folders}
    # Two lengths separate each executor's start (model load; Ray: also the actor's process and imports) from
    # its seconds per image once running.
    per_image = {
        e: (seconds[e, LONG_IMAGES] - seconds[e, IMAGES]) / (LONG_IMAGES - IMAGES) for e in ("local", "ray")
    }
    start = {e: seconds[e, IMAGES] - IMAGES * per_image[e] for e in per_image}
    running_ratio = per_image["local"] / per_image["ray"]
    return [
        f"{IMAGES} and {LONG_IMAGES} photos (256 px), DeepLabV3-MobileNetV3 semantic (random weights), "
        f"batch {batch_size}, {torch.get_num_threads()} torch threads, medians of {ROUNDS} interleaved "
        "rounds.",
        "",
        "| path | images/s | ratio | target |",
        "|---|---|---|---|",
        f"| engine forward alone, images decoded in memory | {bare_rate:.2f} | 1.00 | |",
        f"| prelabel folder -> Label Studio JSON, local | {local_rate:.2f} | {efficiency:.2f} of the "
        f"forward | >= 0.9 {_met(efficiency >= 0.9)} |",
        *(
            row
            for count in folders
            for row in (
                f"| prelabel, local, loading its model in the run, {count} photos "
                f"| {rate['local', count]:.2f} | | |",
                "| prelabel, Ray Data executor (2 CPUs, 1 actor), loading its model in the run, "
                f"{count} photos "
                f"| {rate['ray', count]:.2f} | {ray_ratio[count]:.2f} of local loading its model "
                f"| >= 0.8 {_met(ray_ratio[count] >= 0.8)} |",
            )
        ),
        "",
        f"From the two lengths: once running, local takes {1000 * per_image['local']:.0f} ms an image and "
        f"Ray {1000 * per_image['ray']:.0f} ms (Ray's throughput {running_ratio:.2f} of local's); the fixed "
        "start, where the line through the two lengths meets zero images (an estimate: two rounds' noise "
        f"moves it by about a second), is {start['local']:.1f} s for local (its model load) and "
        f"{start['ray']:.1f} s for Ray (its actor's process, imports and model). Ray's output files "
        f"{'equal' if same else 'DIFFER from'} the local executor's, byte for byte.",
    ]


def _peak_rss_child(count: int) -> None:
    """In a fresh process: prelabel `count` small images, then print the process's peak RSS in KiB. VmHWM
    belongs to this program's memory map; rusage's maxrss would also count the parent's RSS at the fork."""
    from ml_backend.engines import torchvision_engine

    work = _scratch(f"bench-prelabel-mem{count}-")
    weights = _weights(work)
    folder = _photos(work / "photos", count, 48)
    engine = torchvision_engine.load(
        f"deeplabv3_mobilenet_v3_large={weights}", torch.device("cpu"), semantic_size=48
    )
    _run(folder, work / "out.json", engine, weights)
    status = Path("/proc/self/status").read_text()
    print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def memory() -> list[str]:
    """Each count in MEMORY_ROUNDS fresh processes, interleaved: a process's peak moves by a few hundred MiB
    from run to run (threads' heaps, forwards side by side), so the highest peak of each count is compared."""
    peaks: dict[int, list[float]] = {count: [] for count in MEMORY_COUNTS}
    for _ in range(MEMORY_ROUNDS):
        for count in MEMORY_COUNTS:
            done = subprocess.run(
                [sys.executable, __file__, "--memory", str(count)], capture_output=True, text=True, check=True
            )
            peaks[count].append(int(done.stdout.split()[-1]) / 1024)  # KiB -> MiB
    small, large = (max(peaks[count]) for count in MEMORY_COUNTS)
    ratio = large / small
    return [
        "",
        f"| peak RSS of a prelabel process (48 px images), {MEMORY_ROUNDS} processes each | highest MiB "
        "| all runs |",
        "|---|---|---|",
        *(
            f"| {count} images | {max(peaks[count]):.0f} | {', '.join(f'{p:.0f}' for p in peaks[count])} |"
            for count in MEMORY_COUNTS
        ),
        f"| ratio {MEMORY_COUNTS[1]} / {MEMORY_COUNTS[0]} (target <= 1.2) | {ratio:.2f} "
        f"({_met(ratio <= 1.2)}) | |",
    ]


def peer() -> list[str]:
    """Retrieve Predictions against `segassist serve` vs `prelabel --push`, in one real Label Studio."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".venv-ls" / "bin" / "label-studio").exists():
        return ["", "Against Retrieve Predictions: not run (no Label Studio in .venv-ls)."]
    sys.path.insert(0, str(root))
    from tests.backend_support import VOC_NAMES
    from tests.e2e.conftest import SEGASSIST, running_label_studio
    from tests.e2e.harness import ManagedProcess, clean_environment, free_port

    work = _scratch("bench-prelabel-peer-")
    weights = _weights(work)
    photos = sorted(_photos(work / "photos", IMAGES, 256).iterdir())
    config = (
        '<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image">'
        + "".join(f'<Label value="{name}"/>' for name in VOC_NAMES)
        + "</BrushLabels></View>"
    )
    engine = [
        "--engine",
        "torchvision",
        "--model",
        f"deeplabv3_mobilenet_v3_large={weights}",
        "--device",
        "cpu",
    ]
    (work / "ls").mkdir()
    with running_label_studio(work / "ls") as label_studio:
        api = label_studio.api()
        token = api.call("POST", "/api/token/", json={})["token"]

        def project(title: str) -> int:
            made = api.call("POST", "/api/projects", json={"title": title, "label_config": config})
            files = {path.name: (path.name, path.read_bytes(), "image/jpeg") for path in photos}
            api.call("POST", f"/api/projects/{made['id']}/import", files=files)
            return made["id"]

        def predicted(project_id: int) -> dict[str, list]:
            tasks = api.call("GET", "/api/tasks", params={"project": project_id, "page_size": 1000})["tasks"]
            by_id = {task["id"]: task["data"]["image"].rsplit("-", 1)[-1] for task in tasks}
            found: dict[str, list] = {}
            for prediction in api.call("GET", "/api/predictions", params={"project": project_id}):
                found.setdefault(by_id[prediction["task"]], []).append(prediction["result"])
            return found

        env = {
            "LABEL_STUDIO_URL": label_studio.url,
            "LABEL_STUDIO_API_KEY": token,
            "SEGASSIST_MODE": "semantic",
        }
        port = free_port()
        serve = ManagedProcess(
            "serve",
            [str(SEGASSIST), "serve", "--host", "127.0.0.1", "--port", str(port), *engine],
            clean_environment(env),
            work / "serve.log",
            cwd=work,
        )
        retrieve_times, prelabel_times, run_times, calls_made, same = [], [], [], [], True
        projects: dict[str, int] = {}  # each path's latest project
        try:
            serve.wait_healthy(f"http://127.0.0.1:{port}/health", 600)

            def retrieve() -> None:
                retrieved = project("bench retrieve")
                api.call("POST", "/api/ml", json={"url": f"http://127.0.0.1:{port}", "project": retrieved})
                calls, started = 0, time.perf_counter()
                while len(predicted(retrieved)) < IMAGES and calls < 50:
                    api.call(
                        "POST",
                        "/api/dm/actions",
                        params={"id": "retrieve_tasks_predictions", "project": retrieved},
                        json={"selectedItems": {"all": True, "excluded": []}},
                    )
                    calls += 1
                retrieve_times.append(time.perf_counter() - started)
                calls_made.append(calls)
                projects["retrieve"] = retrieved

            def push() -> None:
                pushed = project("bench prelabel")
                report = work / f"report-{pushed}.json"
                started = time.perf_counter()
                done = subprocess.run(
                    [str(SEGASSIST), "prelabel", "--project", str(pushed), "--push", "--mode", "semantic"]
                    + [*engine, "--report", str(report)],
                    env=clean_environment(env),
                    cwd=work,
                    capture_output=True,
                    text=True,
                )
                prelabel_times.append(time.perf_counter() - started)
                assert done.returncode == 0, done.stderr[-2000:]
                # The run itself, without the process start and model load (the server had those before).
                run_times.append(json.loads(report.read_text())["seconds"])
                projects["prelabel"] = pushed

            # Alternated (ABBA...) so that a load that drifts during the run weighs on both paths alike; the
            # server stays up, idle, while prelabel runs.
            for round_index in range(ROUNDS):
                for step in (retrieve, push) if round_index % 2 == 0 else (push, retrieve):
                    step()
                same = same and predicted(projects["prelabel"]) == predicted(projects["retrieve"])
        finally:
            serve.stop()
    retrieve_s, prelabel_s, run_s = (
        statistics.median(times) for times in (retrieve_times, prelabel_times, run_times)
    )
    calls = max(calls_made)
    ratio, steady = retrieve_s / prelabel_s, retrieve_s / run_s
    return [
        "",
        f"Against Retrieve Predictions, {IMAGES} uploaded tasks in a real Label Studio 1.23, the same engine "
        "(DeepLabV3-MobileNetV3 semantic, random weights) in `segassist serve` and in `prelabel`, medians of "
        f"{ROUNDS} alternated rounds (a fresh project each; the server started once, before them):",
        "",
        "| path | calls a person makes | seconds | images/s |",
        "|---|---|---|---|",
        f"| Retrieve Predictions (Data Manager action) against `segassist serve` | {calls} "
        f"| {retrieve_s:.1f} | {IMAGES / retrieve_s:.2f} |",
        f"| `segassist prelabel --project ID --push`, the whole command | 1 "
        f"| {prelabel_s:.1f} | {IMAGES / prelabel_s:.2f} |",
        f"| the same run without its process start and model load | | {run_s:.1f} | {IMAGES / run_s:.2f} |",
        "",
        f"prelabel / Retrieve Predictions throughput: {ratio:.2f} for the whole command, {steady:.2f} "
        f"without its start-up (target >= 1.0 in one command: {_met(ratio >= 1.0)} for the whole command). "
        f"The two projects' predictions are {'identical' if same else 'NOT identical'}. Retrieve Predictions "
        f"needs a call per 60 s of model time (SEGASSIST_PREDICT_BUDGET); here it took {calls}.",
    ]


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    if sys.argv[1:2] == ["--memory"]:
        _peak_rss_child(int(sys.argv[2]))
        return
    print("\n".join(["## prelabel", "", *throughput(), *memory(), *peer()]))


if __name__ == "__main__":
    main()
