"""COCO panoptic -> Label Studio tasks, imported into a real Label Studio 1.23: with `--image-root` the images
load from Label Studio's local-files storage, and the brush annotations land on the BrushLabels control of a
config whose smart RectangleLabels comes first; Label Studio's export of them passes segassist's QA."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from converters.formats.common import read_categories_file
from converters.lsconfig import label_config_xml
from tests.e2e.conftest import SEGASSIST, LabelStudio
from tests.e2e.test_e2e_label_studio import project_tasks

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

PANOPTIC = "panopticapi_sample"


def smart_box_then_brush(categories_file: Path) -> str:
    categories = read_categories_file(categories_file)
    brush = label_config_xml(categories, from_name="brush", to_name="image")
    labels = "".join(f'<Label value="{category.name}"/>' for category in categories)
    box = f'<RectangleLabels name="box" toName="image" smart="true">{labels}</RectangleLabels>'
    return brush.replace("<BrushLabels", box + "<BrushLabels", 1)


def test_converted_panoptic_tasks_import_and_their_images_load(
    label_studio: LabelStudio, realdata: Path, tmp_path: Path
) -> None:
    sample = realdata / PANOPTIC
    images = label_studio.local_files_root / "dataset" / "images"
    shutil.copytree(sample / "input_images", images)
    config = tmp_path / "config.xml"
    config.write_text(smart_box_then_brush(sample / "panoptic_coco_categories.json"))
    tasks_file = tmp_path / "tasks.json"
    subprocess.run(
        [
            str(SEGASSIST),
            "convert",
            "--from",
            "coco-panoptic",
            "--to",
            "labelstudio",
            str(sample / "panoptic_examples.json"),
            str(tasks_file),
            "--label-config",
            str(config),
            "--image-root",
            "/data/local-files/?d=dataset/images/",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    tasks = json.loads(tasks_file.read_text())

    api = label_studio.api()
    project = api.call(
        "POST", "/api/projects", json={"title": "e2e converted panoptic", "label_config": config.read_text()}
    )["id"]
    api.call(
        "POST", "/api/storages/localfiles", json={"project": project, "path": str(images), "title": "images"}
    )

    api.call("POST", f"/api/projects/{project}/import", json=tasks)
    imported = project_tasks(api, project)
    assert len(imported) == 2
    expected = {
        image["file_name"]: image
        for image in json.loads((sample / "panoptic_examples.json").read_text())["images"]
    }
    for task in imported:
        reference = task["data"]["image"]
        assert reference.startswith("/data/local-files/?d=dataset/images/")
        name = reference.rsplit("/", 1)[1]
        picture = Image.open(io.BytesIO(api.call("GET", reference)))
        assert picture.size == (expected[name]["width"], expected[name]["height"])
        [annotation] = api.call("GET", f"/api/tasks/{task['id']}/annotations")
        converted = next(t for t in tasks if t["data"]["image"] == reference)
        assert len(annotation["result"]) == len(converted["annotations"][0]["result"])
        assert {(r["type"], r["from_name"]) for r in annotation["result"]} == {("brushlabels", "brush")}

    export = tmp_path / "export.json"
    export.write_bytes(api.call("GET", f"/api/projects/{project}/export", params={"exportType": "JSON"}))
    qa = subprocess.run(
        [str(SEGASSIST), "qa", str(export), "--format", "labelstudio", "--label-config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert qa.returncode == 0 and "LS_" not in qa.stdout, qa.stdout + qa.stderr
