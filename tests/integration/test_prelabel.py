"""`segassist prelabel` on real photos with real engines (the embedded LiteMedSAM, torchvision architectures
with random weights), checked with pycocotools and label-studio-sdk's brush decoder; resume after SIGKILL;
Ray Data against the local executor; bad input."""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from converters.cli import build_parser
from converters.errors import SegassistError
from ml_backend.prelabel.command import build_run
from ml_backend.prelabel.driver import prelabel
from ml_backend.prelabel.journal import records
from ml_backend.service import PredictionService
from ml_backend.settings import Settings
from tests.backend_support import MediaServer, label_config, load_test_engine

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
EXIF_ORIENTATION = 0x0112


def _photo(name: str, longest: int = 96) -> Image.Image:
    import skimage.data

    picture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    picture.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    return picture


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """skimage's photos, small: two at the top, the rest in a subfolder, one JPEG stored sideways with an
    EXIF orientation (6: shown turned 90 degrees clockwise), and one file that does not decode."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "more").mkdir()
    _photo("astronaut").save(folder / "astronaut.png")
    _photo("coffee").save(folder / "coffee.jpg", quality=95)
    _photo("chelsea").save(folder / "more" / "chelsea.webp")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    _photo("rocket").save(folder / "more" / "rocket.jpg", exif=exif.tobytes(), quality=95)
    (folder / "more" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["prelabel", *argv])


def _prelabel(argv: list[str], engine=None, **run_fields):
    run = build_run(_args(*argv), engine=engine)
    for name, value in run_fields.items():
        setattr(run, name, value)
    return run, prelabel(run)


def _decoded(image: Image.Image) -> np.ndarray:
    from PIL import ImageOps

    return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.mark.slow
def test_folder_to_labelstudio_with_the_embedded_engine_decodes_with_the_sdk(tmp_path, litemedsam) -> None:
    # One photo: the embedded model's automatic mode takes about 20 s per image on one core.
    folder = tmp_path / "one"
    (folder / "sub").mkdir(parents=True)
    _photo("coffee", longest=80).save(folder / "sub" / "coffee.png")
    out = tmp_path / "tasks.json"
    argv = [str(folder), "--to", "labelstudio", str(out), "--url-prefix", "/data/local-files/?d=photos/"]
    _, summary = _prelabel(argv, engine=litemedsam)
    assert (summary.predicted, summary.failed) == (1, [])
    (task,) = json.loads(out.read_text())
    assert task["data"] == {"image": "/data/local-files/?d=photos/sub/coffee.png"}
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == PredictionService(Settings(), litemedsam).model_version
    assert prediction["result"], "LiteMedSAM finds objects in the coffee photo"
    image = _decoded(Image.open(folder / "sub" / "coffee.png"))
    for region in prediction["result"]:
        assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["object"]
        assert (region["original_height"], region["original_width"]) == image.shape[:2]
        # label-studio-sdk's decoder gives the brush's RGBA bytes; alpha is the mask.
        alpha = decode_rle(region["value"]["rle"]).reshape(*image.shape[:2], 4)[:, :, 3]
        assert alpha.any() and set(np.unique(alpha).tolist()) <= {0, 255}
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], (
        "journal and temporaries are gone"
    )


def test_folder_to_coco_with_torchvision_checked_by_pycocotools(
    tmp_path, photos, random_torchvision_engine
) -> None:
    out = tmp_path / "coco.json"
    report = tmp_path / "report.json"
    argv = [str(photos), "--to", "coco", str(out), "--score-threshold", "0", "--mode", "instance"]
    run, summary = _prelabel(argv, engine=random_torchvision_engine)
    coco = COCO(str(out))
    names = [img["file_name"] for img in coco.dataset["images"]]
    assert names == ["astronaut.png", "coffee.jpg", "more/chelsea.webp", "more/rocket.jpg"]
    # EXIF orientation applied as the browser shows the photo: the sideways JPEG is taller than wide.
    for entry in coco.dataset["images"]:
        shown = _decoded(Image.open(photos / entry["file_name"]))
        assert (entry["height"], entry["width"]) == shown.shape[:2]
    rocket = next(e for e in coco.dataset["images"] if e["file_name"] == "more/rocket.jpg")
    assert rocket["height"] > rocket["width"]
    assert len(coco.dataset["annotations"]) == summary.segments > 0
    category_ids = {c["id"] for c in coco.dataset["categories"]}
    for annotation in coco.dataset["annotations"]:
        rle = coco.annToRLE(annotation)
        assert annotation["area"] == int(mask_utils.area(rle)) > 0
        assert annotation["bbox"] == [float(v) for v in mask_utils.toBbox(rle)]
        assert annotation["category_id"] in category_ids and 0 <= annotation["score"] <= 1
    # The broken file is one failure, named; the others went on.
    assert summary.predicted == 4 and len(summary.failed) == 1
    assert summary.failed[0]["key"] == "more/broken.png" and "does not decode" in summary.failed[0]["error"]
    del report


@pytest.mark.parametrize("target", ["coco-panoptic", "semantic"])
def test_panoptic_and_semantic_output_are_exclusive_and_complete(
    tmp_path, photos, random_torchvision_engine, target
) -> None:
    out = tmp_path / ("panoptic.json" if target == "coco-panoptic" else "semantic")
    argv = [str(photos), "--to", target, str(out), "--score-threshold", "0", "--mode", "instance"]
    _, summary = _prelabel(argv, engine=random_torchvision_engine)
    assert summary.predicted == 4
    if target == "coco-panoptic":
        data = json.loads(out.read_text())
        assert len(data["annotations"]) == 4
        for annotation in data["annotations"]:
            rgb = np.asarray(
                Image.open(out.with_suffix("") / annotation["file_name"]).convert("RGB"), np.uint32
            )
            ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
            present = set(np.unique(ids)) - {0}
            assert present == {s["id"] for s in annotation["segments_info"]}
            for segment in annotation["segments_info"]:
                assert segment["area"] == int((ids == segment["id"]).sum())
    else:
        mapping = json.loads((out / "labelmap.json").read_text())
        assert len(mapping["images"]) == 4
        for entry in mapping["images"]:
            label_map = np.asarray(Image.open(out / entry["label_map"]))
            assert label_map.shape == (entry["height"], entry["width"])


def test_tasks_file_skip_rule_and_redo_replace_never_add(
    tmp_path, random_torchvision_engine, monkeypatch
) -> None:
    server = MediaServer()
    try:
        for name in ("coffee", "chelsea", "astronaut"):
            buffer = __import__("io").BytesIO()
            _photo(name, longest=64).save(buffer, format="PNG")
            server.routes[f"/{name}.png"] = (200, {"Content-Type": "image/png"}, buffer.getvalue())
        monkeypatch.setenv("SEGASSIST_ALLOWED_HOSTS", "127.0.0.1")
        config = tmp_path / "config.xml"
        config.write_text(label_config())
        service = PredictionService(
            Settings.from_env(mode="instance", score_threshold=0.0), random_torchvision_engine
        )
        version = service.model_version
        other = {"model_version": "someone-else", "result": [], "score": 0.5}
        tasks = [
            {"id": 1, "data": {"image": f"{server.url}/coffee.png"}},
            {"id": 2, "data": {"image": f"{server.url}/chelsea.png"}, "predictions": [other]},
            {
                "id": 3,
                "data": {"image": f"{server.url}/astronaut.png"},
                "predictions": [{"model_version": version, "result": [], "score": 0.1}, other],
            },
            {"id": 4, "data": {"image": f"{server.url}/missing.png"}},
        ]
        source = tmp_path / "tasks.json"
        source.write_text(json.dumps(tasks))
        out = tmp_path / "out.json"
        common = [str(source), "--label-config", str(config), "--mode", "instance", "--score-threshold", "0"]
        _, summary = _prelabel([*common, "--to", "labelstudio", str(out)], engine=random_torchvision_engine)
        assert (summary.predicted, summary.skipped, len(summary.failed)) == (2, 1, 1)
        assert "HTTP 404" in summary.failed[0]["error"] and summary.failed[0]["task_id"] == 4
        written = json.loads(out.read_text())
        assert [t["id"] for t in written] == [1, 2, 3, 4]
        assert [p["model_version"] for p in written[0]["predictions"]] == [version]
        assert [p["model_version"] for p in written[1]["predictions"]] == ["someone-else", version]
        assert written[2] == tasks[2] and written[3] == tasks[3]  # skipped and failed: as they were
        # The backend's own pipeline on the same tasks is the reference: one pre- and post-processing path.
        info = service.label_config(config.read_text())
        reference = list(service.predict(tasks[:2], service.media.task_loader("image"), info))
        assert [t["predictions"][-1] for t in written[:2]] == [r.prediction for r in reference]
        assert all(r.prediction["result"] for r in reference)

        _, summary = _prelabel(
            [*common, "--redo", "--to", "labelstudio", str(out)], engine=random_torchvision_engine
        )
        assert (summary.predicted, summary.skipped) == (3, 0)
        redone = json.loads(out.read_text())
        for task in redone[:3]:
            assert [p["model_version"] for p in task["predictions"]].count(version) == 1
        assert redone[2]["predictions"][0] == other and redone[2]["predictions"][1]["result"]
    finally:
        server.close()


# -- resume after kill -9 ------------------------------------------------------------------------------------


def _journal_records(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for _, record in records(handle) if record[0] == "done")


def _interrupt_after(argv: list[str], env: dict, journal: Path, records: int, sig: signal.Signals) -> str:
    """Start the command, send `sig` once the journal holds `records` finished images; its stderr."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _journal_records(journal) < records and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == (130 if sig == signal.SIGTERM else -signal.SIGKILL), err[-2000:]
    return err


@pytest.mark.slow
def test_runs_stopped_by_sigterm_and_sigkill_resume_and_write_each_image_once(
    tmp_path, random_torchvision_weights
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    names = []
    for index, name in enumerate(PHOTOS * 2):
        _photo(name, longest=64).save(folder / f"{index:02d}-{name}.png")
        names.append(f"{index:02d}-{name}.png")
    (folder / "99-broken.png").write_bytes(b"not a png")
    out = tmp_path / "coco.json"
    journal = tmp_path / ".coco.json.prelabel-journal"
    report = tmp_path / "report.json"
    _, semantic = random_torchvision_weights
    model = f"deeplabv3_mobilenet_v3_large={semantic}"
    argv = [sys.executable, "-m", "converters.cli", "prelabel", str(folder), "--to", "coco", str(out)]
    argv += ["--engine", "torchvision", "--model", model, "--device", "cpu", "--batch-size", "1"]
    argv += ["--report", str(report)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    err = _interrupt_after(argv, env, journal, 2, signal.SIGTERM)
    assert "interrupted; run the same command to continue" in err and "Traceback" not in err
    after_sigterm = _journal_records(journal)
    _interrupt_after(argv, env, journal, after_sigterm + 2, signal.SIGKILL)
    done_before = _journal_records(journal)
    assert 2 <= after_sigterm < done_before < len(names)
    assert not out.exists()

    last = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert last.returncode == 1, last.stderr[-2000:]  # the broken file: listed, and the others written
    summary = json.loads(report.read_text())
    assert summary["resumed"] == done_before and summary["predicted"] == len(names)
    assert [failure["key"] for failure in summary["failed"]] == ["99-broken.png"]
    assert f"{done_before} from the journal" in last.stderr and "1 failed" in last.stderr
    coco = COCO(str(out))
    assert [image["file_name"] for image in coco.dataset["images"]] == names
    assert [image["id"] for image in coco.dataset["images"]] == list(range(1, len(names) + 1))
    ids = [a["id"] for a in coco.dataset["annotations"]]
    assert ids == list(range(1, len(ids) + 1))
    assert not journal.exists()


# -- Ray Data ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["coco-panoptic"])
def test_ray_executor_writes_the_same_files_as_the_local_one(
    tmp_path, photos, random_torchvision_weights, random_torchvision_engine, ray_cluster, target
) -> None:
    factory = functools.partial(load_test_engine, *random_torchvision_weights)
    outputs = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor / ("out.json")
        argv = [
            str(photos),
            "--to",
            target,
            str(out),
            "--score-threshold",
            "0",
            "--mode",
            "instance",
            "--executor",
            executor,
            "--actors",
            "1",
        ]
        run = build_run(_args(*argv), engine=random_torchvision_engine, engine_factory=factory)
        summary = prelabel(run)
        assert summary.predicted == 4 and len(summary.failed) == 1
        outputs[executor] = out
    assert outputs["ray"].read_bytes() == outputs["local"].read_bytes()
    if target == "coco-panoptic":
        for png in sorted((tmp_path / "local" / "out").iterdir()):
            assert (tmp_path / "ray" / "out" / png.name).read_bytes() == png.read_bytes()


# -- bad input -----------------------------------------------------------------------------------------------


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from converters.cli import main

    code = main(["prelabel", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "case",
    [
        "missing folder",
        "empty folder",
        "unwritable output",
        "output is a folder",
        "no source",
        "no output",
        "push without project",
        "unknown format",
        "bad tasks file",
    ],
)
def test_bad_arguments_exit_2_with_one_clear_line_and_write_nothing(tmp_path, capsys, case) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad_tasks = tmp_path / "tasks.json"
    bad_tasks.write_text('{"data": ')
    out = str(tmp_path / "out" / "coco.json")
    argv, expected = {
        "missing folder": ([str(tmp_path / "nope"), "--to", "coco", out], "the source does not exist"),
        "empty folder": ([str(empty), "--to", "coco", out], "the folder holds no images"),
        "unwritable output": ([str(empty), "--to", "coco", str(blocker / "coco.json")], "Not a directory"),
        "output is a folder": ([str(empty), "--to", "coco", str(empty)], f"cannot write {empty}"),
        "no source": (["--to", "coco", out], "give either SOURCE"),
        "no output": ([str(empty)], "give either --to FORMAT OUTPUT or --push"),
        "push without project": ([str(empty), "--push"], "--push needs --project"),
        "unknown format": ([str(empty), "--to", "yolo", out], "unknown output format 'yolo'"),
        "bad tasks file": ([str(bad_tasks), "--to", "coco", out], "the tasks file is not JSON"),
    }[case]
    code, err = _cli(argv, capsys)
    assert code == 2
    assert expected in err and "Traceback" not in err and err.count("\n") == 1
    assert gc.isenabled()  # start-up turns the collector off; a refused start turns it back on
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_on_error_fail_stops_at_the_first_failure_and_writes_nothing(
    tmp_path, photos, random_torchvision_engine
) -> None:
    out = tmp_path / "coco.json"
    run = build_run(
        _args(str(photos), "--to", "coco", str(out), "--on-error", "fail"), engine=random_torchvision_engine
    )
    with pytest.raises(SegassistError) as error:
        prelabel(run)
    assert "more/broken.png" in str(error.value) and "--on-error fail" in str(error.value)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".coco.json.tmp")]


def test_an_oversized_image_is_one_failure_naming_its_file(
    tmp_path, photos, random_torchvision_engine, monkeypatch
) -> None:
    monkeypatch.setenv("SEGASSIST_MAX_IMAGE_PIXELS", str(60 * 60))  # each photo is over it
    out = tmp_path / "coco.json"
    _, summary = _prelabel([str(photos), "--to", "coco", str(out)], engine=random_torchvision_engine)
    assert summary.predicted == 0 and len(summary.failed) == 5
    oversized = [f for f in summary.failed if "SEGASSIST_MAX_IMAGE_PIXELS" in f["error"]]
    assert {f["key"] for f in oversized} == {
        "astronaut.png",
        "coffee.jpg",
        "more/chelsea.webp",
        "more/rocket.jpg",
    }
    assert all(str(photos / f["key"]) in f["error"] for f in oversized)
    assert COCO(str(out)).dataset["images"] == []  # a valid, empty dataset: nothing was predicted


# -- start-up ------------------------------------------------------------------------------------------------


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after `code` (this checkout first on the path)."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_start_up_imports_only_what_the_run_uses() -> None:
    # Every command builds the whole parser: prelabel's options must not cost the others torch's import.
    assert "torch" not in _modules_after("from converters.cli import build_parser; build_parser()")
    # What a Ray worker unpickles (the executor's stages, the sinks' render, the parsed label config) needs
    # nothing of label-studio-sdk (no client, no config parser), nor torch: only the model's actors import it.
    worker = _modules_after("import ml_backend.prelabel.ray_executor, ml_backend.prelabel.sinks")
    assert "ml_backend.prelabel.project" not in worker and "torch" not in worker
    assert not [name for name in worker if name.startswith("label_studio_sdk")]
    # The project client: the SDK's, without the export helpers that import pandas.
    assert "pandas" not in _modules_after("import ml_backend.prelabel.project")
