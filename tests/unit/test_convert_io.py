"""converters.io: outputs written through temporary paths, committed together or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from converters.errors import OutputError
from converters.io import JsonArrayWriter, Outputs, write_text


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_outputs_are_committed_together(tmp_path: Path) -> None:
    with Outputs() as outputs:
        first = outputs.file(tmp_path / "a.json")
        folder = outputs.folder(tmp_path / "pngs")
        first.write_text("A")
        (folder / "x.png").write_bytes(b"png")
        assert entries(tmp_path) == sorted([first.name, folder.name])  # nothing in place before the commit
        outputs.commit()
    assert (tmp_path / "a.json").read_text() == "A" and entries(tmp_path / "pngs") == ["x.png"]
    assert entries(tmp_path) == ["a.json", "pngs"]


def test_an_error_leaves_the_targets_untouched_and_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("old")
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "old.png").write_bytes(b"old")
    with pytest.raises(RuntimeError), Outputs() as outputs:
        outputs.file(tmp_path / "a.json").write_text("new")
        outputs.folder(tmp_path / "pngs")
        raise RuntimeError("the work failed")
    assert (tmp_path / "a.json").read_text() == "old" and entries(tmp_path / "pngs") == ["old.png"]
    assert entries(tmp_path) == ["a.json", "pngs"]


def test_a_folder_output_replaces_the_old_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.png").write_bytes(b"stale")
    with Outputs() as outputs:
        (outputs.folder(tmp_path / "out") / "new.png").write_bytes(b"new")
        outputs.commit()
    assert entries(tmp_path / "out") == ["new.png"] and entries(tmp_path) == ["out"]


def test_write_text_makes_missing_folders(tmp_path: Path) -> None:
    write_text(tmp_path / "a" / "b" / "c.xml", "<View/>")
    assert (tmp_path / "a" / "b" / "c.xml").read_text() == "<View/>"


def test_the_same_target_twice_is_refused(tmp_path: Path) -> None:
    with Outputs() as outputs:
        outputs.file(tmp_path / "a.json")
        with pytest.raises(OutputError, match="named twice"):
            outputs.file(tmp_path / "." / "a.json")


def test_json_array_writer_streams_arrays_into_one_document(tmp_path: Path) -> None:
    with Outputs() as outputs:
        writer = JsonArrayWriter(outputs, tmp_path / "coco.json", ("images", "annotations"))
        for index in range(3):
            writer.append("images", {"id": index})
        writer.finish({"info": {"description": "x"}}, ("info", "images", "annotations"))
        outputs.commit()
    assert json.loads((tmp_path / "coco.json").read_text()) == {
        "info": {"description": "x"},
        "images": [{"id": 0}, {"id": 1}, {"id": 2}],
        "annotations": [],
    }
    assert entries(tmp_path) == ["coco.json"]  # the scratch parts are gone
