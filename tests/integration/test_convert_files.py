"""Odd and hostile input files, and what convert says about them and about its own output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from converters import SegassistError
from converters.cli import build_parser
from converters.convert import convert

LS_EXPORT = "labelstudio/derived/image_segmentation_export_with_dims.json"


@pytest.fixture
def two_task_export(realdata: Path, tmp_path: Path) -> bytes:
    """The editor's real export (task 1, a brush region) and a copy of its task as task 2."""
    task = json.loads((realdata / LS_EXPORT).read_text())[0]
    return json.dumps([task, {**task, "id": 2}]).encode()


# -- issue 16, item 11: a truncated Label Studio JSON -----------------------------------------------------


@pytest.mark.parametrize("cut", ["in the second task", "in the first task"])
def test_a_truncated_export_names_the_last_task_and_the_byte(tmp_path, two_task_export, cut) -> None:
    second = two_task_export.index(b'"id": 2') - 20
    end = second + 200 if cut == "in the second task" else 1000
    path = tmp_path / "export.json"
    path.write_bytes(two_task_export[:end])
    with pytest.raises(SegassistError) as caught:
        convert("labelstudio", "coco", path, tmp_path / "out.json")
    after = "1 task (task 1)" if cut == "in the second task" else "0 tasks"
    assert str(caught.value) == (
        f"file {path}: invalid JSON after {after}: "
        f"the file is truncated, it stops at byte {end} inside a value"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json"]


def test_invalid_json_says_where_in_one_line(tmp_path) -> None:
    path = tmp_path / "export.json"
    path.write_text('[{"id": 5, "data": {"image": "a.png"}}, {"id": 6, "data": {"image": "b.png"}, x}]')
    with pytest.raises(SegassistError) as caught:
        convert("labelstudio", "coco", path, tmp_path / "out.json")
    message = str(caught.value)
    assert message.startswith(
        f"file {path}: invalid JSON after 1 task (task 5), before byte 81: lexical error"
    )
    assert "\n" not in message and "right here" not in message and "b.png" in message


# -- issue 16, item 16: convert --help and the segments semantic output reports -----------------------------


def test_every_convert_argument_has_a_help_text() -> None:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    convert_parser = subparsers.choices["convert"]
    missing = [
        action.dest
        for action in convert_parser._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []
    text = " ".join(convert_parser.format_help().split())  # argparse wraps lines
    assert (
        "Label Studio export" in text and "'-' for standard output" in text and "the input's format" in text
    )


def test_semantic_output_reports_one_segment_per_class_per_map(realdata, tmp_path) -> None:
    # COCO 39769: two cats, two remotes, a couch and a bed: 6 instances, 4 classes.
    document = {
        "images": [{"id": 39769, "file_name": "000000039769.jpg", "width": 640, "height": 480}],
        "annotations": json.loads((realdata / "hf_transformers_coco/coco_annotations.txt").read_text()),
        "categories": json.loads((realdata / "panopticapi_sample/panoptic_coco_categories.json").read_text()),
    }
    source = tmp_path / "instances.json"
    source.write_text(json.dumps(document))
    report = convert("coco", "semantic", source, tmp_path / "maps", overlap="area")
    label_map = np.asarray(Image.open(tmp_path / "maps" / "000000039769.png"))
    classes = set(np.unique(label_map).tolist()) - {0}
    assert len(document["annotations"]) > len(classes)
    assert report.segments == len(classes) and f"{len(classes)} segments written" in report.summary()
