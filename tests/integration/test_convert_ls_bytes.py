"""Label Studio without a list-of-ints round trip: the reader hands brush RLE to the decoder as bytes, and
the writer's orjson output is byte for byte what the json module wrote (issue 15, item 8)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converters import Mask, Segment
from converters.convert import convert
from converters.formats.common import Options
from converters.formats.labelstudio import LabelStudioRenderer, iter_tasks
from converters.model import Category, ImageRecord

EXPORT = "labelstudio/derived/image_segmentation_export_with_dims.json"


@pytest.fixture
def export(realdata: Path) -> Path:
    return realdata / EXPORT


def as_json_module_writes(tasks: list) -> bytes:
    """The writer's layout with each task written by the json module: the bytes before orjson."""
    return ("[\n" + ",\n".join(json.dumps(task) for task in tasks) + "\n]\n").encode()


def test_the_reader_gives_the_editors_rle_as_bytes(export: Path) -> None:
    with export.open("rb") as handle:
        tasks = list(iter_tasks(handle, str(export)))
    expected = json.loads(export.read_text())
    regions = [
        (result["value"]["rle"], want["value"]["rle"])
        for task, want_task in zip(tasks, expected, strict=True)
        for annotation, want_annotation in zip(task["annotations"], want_task["annotations"], strict=True)
        for result, want in zip(annotation["result"], want_annotation["result"], strict=True)
        if result["type"] == "brushlabels"
    ]
    assert regions and all(isinstance(rle, bytes) and rle == bytes(want) for rle, want in regions)


@pytest.mark.parametrize("options", [{}, {"write_predictions": True}, {"segmentation": "polygon"}])
def test_the_writer_bytes_are_what_the_json_module_wrote(tmp_path: Path, export: Path, options: dict) -> None:
    output = tmp_path / "tasks.json"
    convert("labelstudio", "labelstudio", export, output, **options)
    written = output.read_bytes()
    tasks = json.loads(written)
    assert tasks and written == as_json_module_writes(tasks)


def test_integers_beyond_64_bits_and_non_ascii_text_are_written_as_json_writes_them() -> None:
    """orjson refuses integers over 64 bits; the writer falls back for that value only. (Task data carries
    them: ijson cannot read one from an export, but a task made in Python can hold one.)"""
    data = {"image": "/data/upload/1/caf\u00e9.png", "serial": 2**70, "parts": [1, 2**80, -(2**65)]}
    mask = Mask.from_dense(np.eye(8, dtype=bool))
    image = ImageRecord(1, "caf\u00e9.png", 8, 8, [Segment(mask, 1)], extra={"data": data})
    for segmentation in ("rle", "polygon"):
        options = Options(segmentation=segmentation)
        renderer = LabelStudioRenderer.create([Category(1, "\u00e9t\u00e9")], options)
        payload = renderer.render(image).payload
        task = json.loads(payload)
        assert task["data"] == data and payload == json.dumps(task).encode()
