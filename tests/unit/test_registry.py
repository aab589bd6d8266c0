"""The format registry: one entry per format with its reader, writer and checks, and the one public way to
read any format into the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from converters import registry
from converters.errors import SegassistError
from converters.qa import QAOptions, check
from converters.qa.core import Run
from tests.unit.qa_helpers import clean_tasks, copy_panoptic_sample, write_json


def test_every_format_has_a_reader_a_writer_and_checks() -> None:
    assert set(registry.FORMATS) == {"labelstudio", "coco", "coco-panoptic", "semantic"}
    for entry in registry.FORMATS.values():
        assert callable(entry.reader) and callable(entry.writer) and callable(entry.checks)


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(SegassistError, match="unknown source format 'yolo'; known: labelstudio, coco"):
        registry.get("yolo", "source")
    with pytest.raises(TypeError, match="unknown conversion option"):
        registry.read("coco", "x.json", colour="red")


def test_read_gives_the_model_and_checks_read_the_same_input(realdata: Path, tmp_path: Path) -> None:
    """`registry.read` streams the model; the format's checks start a run over the same images."""
    json_path, _ = copy_panoptic_sample(realdata, tmp_path)
    dataset = registry.read("coco-panoptic", json_path)
    images = list(dataset.iter_images())
    assert [image.id for image in images] == [142238, 439180]
    assert all(segment.mask.area > 0 for image in images for segment in image.segments)
    run = registry.get("coco-panoptic").checks(json_path, QAOptions())
    assert isinstance(run, Run) and run.total == len(images) and run.fixer is not None
    assert registry.get("labelstudio").checks(tmp_path / "absent.json", QAOptions()).fixer is None


def test_pictures_and_findings_are_the_same_with_workers(tmp_path: Path) -> None:
    tasks = clean_tasks()
    tasks[1]["annotations"][0]["result"][0]["value"]["brushlabels"] = []
    export = write_json(tmp_path / "export.json", tasks * 2)
    serial = check(export, QAOptions(), pictures=True)
    parallel = check(export, QAOptions(workers=2), pictures=True)
    assert parallel.findings == serial.findings and serial.pictures
    assert parallel.pictures == serial.pictures
