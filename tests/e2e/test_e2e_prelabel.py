"""`segassist prelabel --project ID --push` against a real Label Studio: one prediction per task with the
model version, none added by a second run, one per task after --redo, and clear exits for a bad token or a
missing project."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from ml_backend.prelabel.journal import records as journal_records
from tests.backend_support import VOC_NAMES
from tests.e2e.conftest import SEGASSIST, LabelStudio
from tests.e2e.harness import clean_environment

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

TASKS = 20
CONFIG = (
    '<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image">'
    + "".join(f'<Label value="{name}"/>' for name in VOC_NAMES)
    + "</BrushLabels></View>"
)


def _photos() -> list[tuple[str, bytes]]:
    """TASKS small PNGs cut from skimage's photos (each a different crop, so each task is its own image)."""
    import skimage.data

    sources = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    photos = []
    for index in range(TASKS):
        array = sources[index % len(sources)]
        top = 10 * (index // len(sources))
        picture = Image.fromarray(array[top : top + 300, top : top + 300]).convert("RGB")
        picture.thumbnail((64, 64))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        photos.append((f"photo{index:02d}.png", buffer.getvalue()))
    return photos


@pytest.fixture(scope="module")
def project(label_studio: LabelStudio) -> int:
    api = label_studio.api()
    created = api.call("POST", "/api/projects", json={"title": "e2e prelabel", "label_config": CONFIG})
    files = {name: (name, data, "image/png") for name, data in _photos()}
    api.call("POST", f"/api/projects/{created['id']}/import", files=files)
    return created["id"]


def _argv_env(
    label_studio: LabelStudio, api_key: str, weights: Path, workdir: Path, *extra: str, project: int
) -> tuple[list[str], dict[str, str]]:
    argv = [
        str(SEGASSIST),
        "prelabel",
        "--project",
        str(project),
        "--push",
        "--engine",
        "torchvision",
        "--model",
        f"deeplabv3_mobilenet_v3_large={weights}",
        "--device",
        "cpu",
        "--score-threshold",
        "0",
        "--report",
        str(workdir / "report.json"),
        *extra,
    ]
    env = clean_environment({"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": api_key})
    return argv, env


def _prelabel(*args: object, project: int) -> subprocess.CompletedProcess:
    argv, env = _argv_env(*args, project=project)
    return subprocess.run(argv, env=env, cwd=args[3], capture_output=True, text=True, timeout=600)


def _journaled(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for _, record in journal_records(handle) if record[0] == "done")


def _predictions(label_studio: LabelStudio, project: int) -> list[dict]:
    return label_studio.api().call("GET", "/api/predictions", params={"project": project})


def test_push_creates_one_prediction_per_task_and_never_a_duplicate(
    label_studio: LabelStudio, personal_access_token: str, project: int, random_torchvision_weights, tmp_path
) -> None:
    _, weights = random_torchvision_weights
    # The first run is killed with SIGKILL after a few images; the same command then finishes the job.
    argv, env = _argv_env(label_studio, personal_access_token, weights, tmp_path, project=project)
    journal = tmp_path / f".segassist-prelabel-project-{project}.journal"
    killed = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _journaled(journal) < 3 and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    done_before = _journaled(journal)
    assert 3 <= done_before < TASKS, killed.stderr.read().decode()[-3000:]
    first = _prelabel(label_studio, personal_access_token, weights, tmp_path, project=project)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    version = report["model_version"]
    assert (report["predicted"], report["skipped"], report["failed"]) == (TASKS, 0, [])
    assert report["resumed"] == done_before  # journaled images are not predicted again
    predictions = _predictions(label_studio, project)
    assert Counter(p["task"] for p in predictions) == Counter(
        {task: 1 for task in {p["task"] for p in predictions}}
    )
    assert len(predictions) == TASKS
    assert {p["model_version"] for p in predictions} == {version}
    assert all(p["result"] and p["result"][0]["type"] == "brushlabels" for p in predictions)
    assert all(isinstance(p["score"], float) for p in predictions)
    tasks = label_studio.api().call("GET", "/api/tasks", params={"project": project, "page_size": 100})[
        "tasks"
    ]
    assert all(task["total_predictions"] == 1 for task in tasks)
    assert not list(tmp_path.glob(".segassist-prelabel-*")), "the journal is removed after a complete run"

    second = _prelabel(label_studio, personal_access_token, weights, tmp_path, project=project)
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads((tmp_path / "report.json").read_text())["skipped"] == TASKS
    assert sorted(p["id"] for p in _predictions(label_studio, project)) == sorted(
        p["id"] for p in predictions
    )

    redo = _prelabel(label_studio, personal_access_token, weights, tmp_path, "--redo", project=project)
    assert redo.returncode == 0, redo.stderr[-3000:]
    assert json.loads((tmp_path / "report.json").read_text())["predicted"] == TASKS
    replaced = _predictions(label_studio, project)
    assert len(replaced) == TASKS and len({p["task"] for p in replaced}) == TASKS
    assert not {p["id"] for p in replaced} & {p["id"] for p in predictions}
    assert {p["model_version"] for p in replaced} == {version}


@pytest.mark.parametrize(
    ("case", "expected"),
    [("bad token", "LABEL_STUDIO_API_KEY was refused (401)"), ("missing project", "does not exist")],
)
def test_bad_token_or_missing_project_exits_2_naming_the_problem(
    label_studio: LabelStudio, personal_access_token: str, project: int, tmp_path, case, expected
) -> None:
    api_key = "0123456789abcdef-not-a-token" if case == "bad token" else personal_access_token
    project_id = project if case == "bad token" else 987654
    done = _prelabel(label_studio, api_key, tmp_path / "unused.pth", tmp_path, project=project_id)
    assert done.returncode == 2, done.stderr[-3000:]
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert "0123456789abcdef" not in done.stderr
