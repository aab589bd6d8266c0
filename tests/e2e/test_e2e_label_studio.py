"""Label Studio 1.23 + `segassist serve` end to end, through Label Studio's REST API only.

The flow is the one a user follows: create projects, import images by URL and by upload, connect the backend,
retrieve predictions from the Data Manager, draw smart keypoints and rectangles, accept predictions as
annotations, export JSON, convert it to COCO instance and COCO panoptic, check the results with QA, and
measure with `segassist eval` how many pre-labels were accepted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image
from pycocotools.coco import COCO

from converters import brush
from tests.e2e.conftest import SEGASSIST, Backend, LabelStudio, MediaImages
from tests.e2e.harness import LabelStudioAPI

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]


# The embedded default model proposes class-agnostic objects under the label "object".
BRUSH_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"><Label value="object" background="#ff0000"/></BrushLabels>
</View>"""
POLYGON_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="polygon" toName="image"><Label value="object" background="#00aa00"/></PolygonLabels>
</View>"""
SMART_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"><Label value="object" background="#ff0000"/></BrushLabels>
  <KeyPointLabels name="keypoint" toName="image" smart="true">
    <Label value="object" smart="true" background="#0000ff"/>
  </KeyPointLabels>
  <RectangleLabels name="rectangle" toName="image" smart="true">
    <Label value="object" smart="true" background="#0000ff"/>
  </RectangleLabels>
</View>"""


@dataclass
class Project:
    id: int
    config: str
    # Task id -> the PNG file the task shows (from the media folder).
    images: dict[int, str] = field(default_factory=dict)


def create_project(api: LabelStudioAPI, title: str, config: str) -> Project:
    created = api.call("POST", "/api/projects", json={"title": title, "label_config": config})
    return Project(id=created["id"], config=config)


def project_tasks(api: LabelStudioAPI, project_id: int) -> list[dict]:
    answer = api.call("GET", "/api/tasks", params={"project": project_id, "page_size": 1000})
    return answer["tasks"] if isinstance(answer, dict) else answer


def import_tasks(
    api: LabelStudioAPI, project: Project, media: MediaImages, by_url: list[str], uploads: list[str]
):
    """Import `by_url` as tasks pointing at the media server and `uploads` as files stored by Label Studio."""
    known = {task["id"] for task in project_tasks(api, project.id)}
    if by_url:
        api.call("POST", f"/api/projects/{project.id}/import", json=[{"image": media.url(n)} for n in by_url])
    for name in uploads:
        with open(media.directory / name, "rb") as handle:
            api.call("POST", f"/api/projects/{project.id}/import", files={name: (name, handle, "image/png")})
    for task in project_tasks(api, project.id):
        if task["id"] in known:
            continue
        reference = task["data"]["image"]
        project.images[task["id"]] = next(n for n in media.names if reference.endswith(n))


@pytest.fixture(scope="module")
def projects(label_studio: LabelStudio, media: MediaImages) -> dict[str, Project]:
    api = label_studio.api()
    made = {
        "brush": create_project(api, "e2e brush", BRUSH_CONFIG),
        "polygon": create_project(api, "e2e polygon", POLYGON_CONFIG),
        "smart": create_project(api, "e2e smart", SMART_CONFIG),
        "budget": create_project(api, "e2e budget", BRUSH_CONFIG),
    }
    # Few tasks: the default model's automatic mode takes 10 to 20 s per image on a small CPU.
    import_tasks(api, made["brush"], media, by_url=["astronaut.png"], uploads=["chelsea.png"])
    import_tasks(api, made["polygon"], media, by_url=[], uploads=["coffee.png"])
    import_tasks(api, made["smart"], media, by_url=[], uploads=["astronaut.png"])
    import_tasks(api, made["budget"], media, by_url=[], uploads=["coffee.png", "chelsea.png"])
    return made


def access_token(label_studio: LabelStudio, personal_access_token: str) -> str:
    answer = requests.post(
        f"{label_studio.url}/api/token/refresh/", json={"refresh": personal_access_token}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access"]


# -- Label Studio alone: tokens, projects, imports ---------------------------------------------------------


def test_legacy_token_and_personal_access_token_authenticate(
    label_studio: LabelStudio, personal_access_token: str
):
    whoami = "/api/current-user/whoami"
    assert label_studio.api().call("GET", whoami)["email"] == "admin@example.com"

    # A PAT is a refresh token: it is exchanged for a short-lived access token that is sent as Bearer.
    bearer = label_studio.api(f"Bearer {access_token(label_studio, personal_access_token)}")
    assert bearer.call("GET", whoami)["email"] == "admin@example.com"
    label_studio.api(f"Token {personal_access_token}").call("GET", whoami, expect=(401,))
    label_studio.api(f"Bearer {personal_access_token}").call("GET", whoami, expect=(401,))
    label_studio.api("Token not-the-token-0123456789").call("GET", whoami, expect=(401,))


def test_imports_by_url_and_upload_serve_media_only_with_a_token(
    label_studio: LabelStudio, personal_access_token: str, media: MediaImages, projects: dict[str, Project]
):
    api = label_studio.api()
    tasks = {task["id"]: task for task in project_tasks(api, projects["brush"].id)}
    assert sorted(projects["brush"].images.values()) == ["astronaut.png", "chelsea.png"]
    references = {projects["brush"].images[task_id]: task["data"]["image"] for task_id, task in tasks.items()}
    assert references["astronaut.png"] == media.url("astronaut.png")
    uploaded = references["chelsea.png"]
    assert uploaded.startswith(f"/data/upload/{projects['brush'].id}/") and uploaded.endswith("chelsea.png")

    # The backend downloads uploads from Label Studio; without credentials Label Studio refuses.
    anonymous = requests.get(f"{label_studio.url}{uploaded}", timeout=30, allow_redirects=False)
    assert anonymous.status_code in (302, 401, 403)
    bearer = label_studio.api(f"Bearer {access_token(label_studio, personal_access_token)}")
    assert bearer.call("GET", uploaded) == (media.directory / "chelsea.png").read_bytes()


# -- With the backend: connect, batch predictions, interactive prompts -------------------------------------


def connect_backend(api: LabelStudioAPI, project: Project, backend: Backend, *, interactive: bool) -> dict:
    created = api.call(
        "POST",
        "/api/ml",
        json={"url": backend.url, "project": project.id, "title": "segassist", "is_interactive": interactive},
    )
    connected = api.call("GET", f"/api/ml/{created['id']}")
    assert connected["state"] == "CO", connected
    return connected


def retrieve_predictions(api: LabelStudioAPI, project: Project) -> dict[int, list[dict]]:
    """The Data Manager's "Retrieve Predictions" on every task; returns task id -> stored predictions."""
    answer = api.call(
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project.id},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    assert answer.get("processed_items") == len(project.images), answer
    return {
        task_id: api.call("GET", "/api/predictions", params={"task": task_id}) for task_id in project.images
    }


def check_predictions(
    stored: dict[int, list[dict]], project: Project, model_version: str, control_type: str, media: MediaImages
) -> int:
    """Each task has one valid prediction with the backend's model_version; returns the region count."""
    interface = LabelInterface(project.config)
    regions = 0
    for task_id, predictions in stored.items():
        assert len(predictions) == 1, (task_id, predictions)
        prediction = predictions[0]
        assert prediction["model_version"] == model_version
        assert interface.validate_prediction(prediction, return_errors=True) == []
        width, height = Image.open(media.directory / project.images[task_id]).size
        for region in prediction["result"]:
            assert region["type"] == control_type
            assert (region["original_width"], region["original_height"]) == (width, height)
            if control_type == "brushlabels":
                assert brush.decode_mask(region["value"]["rle"], width, height).area > 0
            regions += 1
    return regions


@pytest.fixture(scope="module")
def predicted_brush_project(
    label_studio: LabelStudio, backend_with_pat: Backend, projects: dict[str, Project], media: MediaImages
) -> tuple[Project, dict, dict[int, list[dict]]]:
    api = label_studio.api()
    ml = connect_backend(api, projects["brush"], backend_with_pat, interactive=False)
    return projects["brush"], ml, retrieve_predictions(api, projects["brush"])


@pytest.fixture(scope="module")
def predicted_polygon_project(
    label_studio: LabelStudio,
    backend_with_legacy_token: Backend,
    projects: dict[str, Project],
    media: MediaImages,
) -> tuple[Project, dict, dict[int, list[dict]]]:
    api = label_studio.api()
    ml = connect_backend(api, projects["polygon"], backend_with_legacy_token, interactive=False)
    return projects["polygon"], ml, retrieve_predictions(api, projects["polygon"])


def test_brush_predictions_with_a_personal_access_token(predicted_brush_project, backend_with_pat, media):
    project, ml, stored = predicted_brush_project
    setup = requests.post(
        f"{backend_with_pat.url}/setup", json={"project": f"{project.id}.0", "schema": project.config}
    )
    assert setup.status_code == 200
    # The version /setup reports is the one on every prediction, so Label Studio does not re-request forever.
    assert ml["model_version"] == setup.json()["model_version"]
    assert check_predictions(stored, project, ml["model_version"], "brushlabels", media) > 0


def test_polygon_predictions_with_a_legacy_token(predicted_polygon_project, media):
    project, ml, stored = predicted_polygon_project
    assert check_predictions(stored, project, ml["model_version"], "polygonlabels", media) > 0


def test_retrieving_again_adds_no_duplicate_predictions(label_studio: LabelStudio, predicted_brush_project):
    project, _, first = predicted_brush_project
    again = retrieve_predictions(label_studio.api(), project)
    assert {task: [p["id"] for p in stored] for task, stored in again.items()} == {
        task: [p["id"] for p in stored] for task, stored in first.items()
    }


def test_tasks_a_spent_budget_left_out_are_predicted_by_the_next_retrieve(
    label_studio: LabelStudio, backend_with_tiny_budget: Backend, projects: dict[str, Project], media
):
    api, project = label_studio.api(), projects["budget"]
    ml = connect_backend(api, project, backend_with_tiny_budget, interactive=False)
    first = retrieve_predictions(api, project)
    # The budget runs out after the first task: Label Studio stores nothing for the other (no error either).
    assert sorted(len(stored) for stored in first.values()) == [0, 1]
    second = retrieve_predictions(api, project)
    assert check_predictions(second, project, ml["model_version"], "brushlabels", media) > 0
    for task, stored in first.items():
        if stored:
            assert [p["id"] for p in second[task]] == [stored[0]["id"]]


def _smart_region(kind: str, value: dict, width: int, height: int, **extra: object) -> dict:
    """A smart region as the 1.23 frontend serialises it into the interactive context."""
    return {
        "id": f"e2e-{kind}",
        "from_name": kind,
        "to_name": "image",
        "type": f"{kind}labels",
        "origin": "manual",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {**value, f"{kind}labels": ["object"], "labels": ["object"]},
        **extra,
    }


@pytest.fixture(scope="module")
def interactive_backend(
    label_studio: LabelStudio, backend_with_pat: Backend, projects: dict[str, Project]
) -> dict:
    return connect_backend(label_studio.api(), projects["smart"], backend_with_pat, interactive=True)


@pytest.mark.parametrize(
    "prompt",
    [
        # A click on the astronaut's face, as x/y percentages.
        ("keypoint", {"x": 45.0, "y": 30.0, "width": 0.5}, {"is_positive": True}),
        # A box around the helmet at the bottom right.
        ("rectangle", {"x": 55.0, "y": 60.0, "width": 40.0, "height": 38.0, "rotation": 0}, {}),
    ],
    ids=["keypoint", "rectangle"],
)
def test_interactive_annotating_returns_a_mask(
    label_studio: LabelStudio,
    interactive_backend: dict,
    projects: dict[str, Project],
    media: MediaImages,
    prompt,
):
    kind, value, extra = prompt
    project = projects["smart"]
    ((task_id, image_name),) = project.images.items()
    width, height = Image.open(media.directory / image_name).size
    context = {"result": [_smart_region(kind, value, width, height, **extra)]}
    answer = label_studio.api().call(
        "POST",
        f"/api/ml/{interactive_backend['id']}/interactive-annotating",
        json={"task": task_id, "context": context},
    )
    assert "errors" not in answer, answer
    prediction = answer["data"]
    assert LabelInterface(project.config).validate_prediction(prediction, return_errors=True) == []
    (region,) = prediction["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["object"]
    mask = brush.decode_mask(region["value"]["rle"], width, height)
    assert 0 < mask.area < width * height
    x, y, w, h = mask.bbox
    if kind == "keypoint":
        click = (value["x"] * width / 100, value["y"] * height / 100)
        assert x <= click[0] <= x + w and y <= click[1] <= y + h
    else:
        left, top = value["x"] * width / 100, value["y"] * height / 100
        right, bottom = left + value["width"] * width / 100, top + value["height"] * height / 100
        # The mask stays inside the prompt box, give or take a few pixels.
        slack = 0.05 * max(width, height)
        assert left - slack <= x and x + w <= right + slack
        assert top - slack <= y and y + h <= bottom + slack


# -- Export, convert, QA ----------------------------------------------------------------------------------


def accept_predictions(api: LabelStudioAPI, stored: dict[int, list[dict]]) -> None:
    """What an annotator does with good pre-labels: submit them as the task's annotation."""
    for task_id, (prediction, *_) in stored.items():
        api.call(
            "POST",
            f"/api/tasks/{task_id}/annotations",
            json={"result": prediction["result"], "parent_prediction": prediction["id"]},
        )


def images_as_exported(tasks: list[dict], project: Project, media: MediaImages, folder: Path) -> Path:
    """The image folder a user has beside an export: files named as the tasks refer to them (Label Studio
    prefixes uploads with a hash, e.g. /data/upload/1/421719c1-chelsea.png)."""
    folder.mkdir()
    for task in tasks:
        name = task["data"]["image"].rsplit("/", 1)[-1]
        shutil.copyfile(media.directory / project.images[task["id"]], folder / name)
    return folder


def run_segassist(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SEGASSIST), *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def qa_errors(*args: str | Path, report: Path) -> dict:
    """`segassist qa` with a JSON report; returns the report after checking that the command succeeded."""
    done = run_segassist("qa", *args, "--report", report)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(report.read_text())


@dataclass(frozen=True)
class Exported:
    project: Project
    stored: dict[int, list[dict]]
    export: Path
    config: Path
    images: Path


@pytest.fixture(scope="module", params=["brush", "polygon"])
def exported(request, label_studio: LabelStudio, media: MediaImages, tmp_path_factory) -> Exported:
    """The project's JSON export after its predictions were accepted, with its config and image folder."""
    project, _, stored = request.getfixturevalue(f"predicted_{request.param}_project")
    api = label_studio.api()
    accept_predictions(api, stored)
    exported = api.call("GET", f"/api/projects/{project.id}/export", params={"exportType": "JSON"})
    tasks = json.loads(exported)
    assert sorted(task["id"] for task in tasks) == sorted(project.images)
    assert all(len(task["annotations"]) == 1 for task in tasks)
    folder = tmp_path_factory.mktemp(f"export-{request.param}")
    (folder / "export.json").write_bytes(exported)
    (folder / "config.xml").write_text(project.config)
    images = images_as_exported(tasks, project, media, folder / "images")
    return Exported(project, stored, folder / "export.json", folder / "config.xml", images)


def test_label_studio_export_passes_qa(exported: Exported, tmp_path: Path):
    report = qa_errors(
        exported.export,
        "--label-config",
        exported.config,
        "--images",
        exported.images,
        report=tmp_path / "qa.json",
    )
    assert report["summary"]["checked"] >= len(exported.project.images)


def test_export_converts_to_coco_and_panoptic_that_pass_qa(exported: Exported, tmp_path: Path):
    stored, images, export_path = exported.stored, exported.images, exported.export
    common = ("--from", "labelstudio", "--label-config", exported.config, "--images", images)
    coco_path = tmp_path / "coco.json"
    done = run_segassist("convert", *common, "--to", "coco", export_path, coco_path)
    assert done.returncode == 0, done.stderr
    coco = COCO(str(coco_path))
    expected_regions = sum(len(p[0]["result"]) for p in stored.values())
    assert len(coco.getAnnIds()) == expected_regions
    for annotation in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(annotation["image_id"])[0]
        pixels = coco.annToMask(annotation)
        assert pixels.shape == (image["height"], image["width"])
        assert int(pixels.sum()) == annotation["area"] > 0
    qa_errors(coco_path, "--images", images, report=tmp_path / "coco-qa.json")

    panoptic_path = tmp_path / "panoptic.json"
    done = run_segassist(
        "convert", *common, "--to", "coco-panoptic", "--overlap", "order", export_path, panoptic_path
    )
    assert done.returncode == 0, done.stderr
    panoptic = json.loads(panoptic_path.read_text())
    assert len(panoptic["annotations"]) == len(exported.project.images)
    coco_image_ids = {image["file_name"]: image["id"] for image in coco.loadImgs(coco.getImgIds())}
    panoptic_files = {image["id"]: image["file_name"] for image in panoptic["images"]}
    for entry in panoptic["annotations"]:
        rgb = np.asarray(
            Image.open(tmp_path / "panoptic" / entry["file_name"]).convert("RGB"), dtype=np.int64
        )
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
        # No overlap: one id per pixel, and each segment's area is exactly its pixel count in the id map.
        for segment in entry["segments_info"]:
            assert int((ids == segment["id"]).sum()) == segment["area"] > 0
        # Overlaps were resolved by moving pixels, not losing them: same labelled pixels as the instances.
        instances = coco.getAnnIds(imgIds=coco_image_ids[panoptic_files[entry["image_id"]]])
        union = np.zeros(ids.shape, dtype=bool)
        for annotation in coco.loadAnns(instances):
            union |= coco.annToMask(annotation).astype(bool)
        assert np.array_equal(union, ids != 0)
    # As panoptic data, overlapping segments would be errors.
    qa_errors(panoptic_path, "--target", "panoptic", "--images", images, report=tmp_path / "pan-qa.json")


def test_backends_logged_no_errors(
    backend_with_pat: Backend, backend_with_legacy_token: Backend, backend_with_tiny_budget: Backend
):
    """Everything above was answered without a server-side error (the backends run to the session's end)."""
    for backend in (backend_with_pat, backend_with_legacy_token, backend_with_tiny_budget):
        assert backend.process.running()
        log = backend.process.log_tail(chars=1_000_000)
        assert "Traceback" not in log and "ERROR" not in log, log


def test_pre_labels_submitted_unchanged_count_as_accepted(
    exported: Exported, label_studio: LabelStudio, tmp_path: Path
):
    """`segassist eval --predictions-vs-annotations` on a real export snapshot that holds the predictions
    (the plain export lists their ids only): every pre-label was submitted as it was, so each is accepted
    and nothing was edited, deleted or added."""
    api, project = label_studio.api(), exported.project.id
    options = {"serialization_options": {"predictions": {"only_id": False}}}
    snapshot = api.call("POST", f"/api/projects/{project}/exports", json=options)
    for _ in range(120):
        if api.call("GET", f"/api/projects/{project}/exports/{snapshot['id']}")["status"] == "completed":
            break
        time.sleep(0.5)
    tasks = api.call(
        "GET", f"/api/projects/{project}/exports/{snapshot['id']}/download", params={"exportType": "JSON"}
    )
    assert all(isinstance(p, dict) for task in tasks for p in task["predictions"])
    export = tmp_path / "snapshot.json"
    export.write_text(json.dumps(tasks))
    scores = tmp_path / "acceptance.json"
    done = run_segassist(
        "eval",
        export,
        "--predictions-vs-annotations",
        "--label-config",
        exported.config,
        "--images",
        exported.images,
        "--json",
        scores,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(scores.read_text())
    acceptance = result["acceptance"]
    assert result["pairs"] >= len(exported.project.images)
    assert acceptance["predicted"] == acceptance["accepted"] > 0
    assert acceptance["edited"] == acceptance["deleted"] == acceptance["added"] == 0
    assert result["pq"]["all"]["pq"] == 1.0
    # The plain export lists prediction ids: a clear error, not a silent comparison with nothing.
    done = run_segassist("eval", exported.export, "--predictions-vs-annotations")
    assert done.returncode == 2 and "lists prediction ids" in done.stderr
