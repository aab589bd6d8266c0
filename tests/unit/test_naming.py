"""One way to name a task, image, annotation and region in every message of convert and qa (issue 16,
item 10): the same task is `task #1` in both, no word is doubled, a panoptic image is named by its image file,
errors come before warnings, and counts agree in number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converters import naming
from converters.cli import main
from converters.convert import ConversionReport
from tests.unit.qa_helpers import brush_region, clean_tasks, copy_panoptic_sample, polygon_region, write_json


def _task_without_ids(tmp_path: Path) -> Path:
    """One task with neither a task id nor an annotation id, whose second region has no label."""
    task = clean_tasks()[1]
    del task["id"]
    annotation = task["annotations"][0]
    del annotation["id"]
    unlabeled = brush_region("b3", np.zeros((48, 64), np.uint8))
    unlabeled["value"]["brushlabels"] = []
    annotation["result"].append(unlabeled)
    return write_json(tmp_path / "export.json", [task])


def test_convert_and_qa_name_the_first_task_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = _task_without_ids(tmp_path)
    assert (
        main(["convert", "--from", "labelstudio", "--to", "coco", str(export), str(tmp_path / "c.json")]) != 0
    )
    convert_error = capsys.readouterr().err
    assert main(["qa", str(export)]) == 1
    qa_out = capsys.readouterr().out
    assert "task #1" in convert_error and "region b3" in convert_error
    assert "task #1" in qa_out and "task #0" not in qa_out
    # An annotation without an id is `annotation #1`, in both, never `annotation annotation #0`.
    assert "annotation #1" in convert_error and "annotation #1, region b3" in qa_out
    assert "annotation annotation" not in qa_out + convert_error


def test_panoptic_image_is_named_by_its_image_file(realdata: Path, tmp_path: Path, capsys) -> None:
    json_path, _ = copy_panoptic_sample(realdata, tmp_path)
    data = json.loads(json_path.read_text())
    data["annotations"][0]["segments_info"][0]["area"] += 5
    write_json(json_path, data)
    assert main(["qa", str(json_path)]) == 1
    out = capsys.readouterr().out
    assert "image 142238 (000000142238.jpg)" in out and "000000142238.png)" not in out


def test_worst_first_lists_errors_before_warnings_of_the_same_task(tmp_path: Path, capsys) -> None:
    tasks = clean_tasks()[1:]
    tasks[0]["annotations"][0]["result"] = [
        dict(polygon_region("p1", [[10, 10], [30, 10], [30, 30], [10, 30]]), image_rotation=90),
        polygon_region("p2", [[50, 50], [90, 90], [90, 50], [50, 90]]),
        polygon_region("p3", [[10, 60], [30, 60]]),
    ]
    assert main(["qa", str(write_json(tmp_path / "export.json", tasks))]) == 1
    lines = capsys.readouterr().out.split("worst first:")[1].splitlines()
    severities = [line.split()[0] for line in lines if line.startswith("    ") and "..." not in line]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    assert severities[0] == "error" and "warning" in severities


def test_counts_agree_in_number() -> None:
    report = ConversionReport("coco", "coco", "in.json", "out.json", images=1, segments=1)
    report.skipped.append({"error": "x"})
    assert report.summary().startswith("1 image, 1 segment written")
    assert "0 overlapping pixels moved, 0 segments dropped, 1 item skipped" in report.summary()
    assert naming.plural(2, "task") == "2 tasks" and naming.plural(0, "error") == "0 errors"


def test_describe_names_places_in_one_order() -> None:
    where = naming.describe(region_id="r1", task_id="#1", file="x.json", annotation_id="prediction #2")
    assert where == "file x.json, task #1, prediction #2, region r1"
    assert naming.describe(image_id=5, file_name="a.jpg", segment_id=7) == "image 5 (a.jpg), segment 7"
