"""`segassist qa` end to end: exit codes, the JSON report, the terminal summary, --fix, --workers."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from converters.cli import main
from converters.qa import CHECKS
from converters.qa.findings import checks_table_markdown
from tests.unit.qa_helpers import (
    clean_tasks,
    codes,
    copy_panoptic_sample,
    findings,
    hf_polygons_with_an_empty_mask,
    write_json,
)

REPO = Path(__file__).resolve().parents[2]


def _datumaro_train(realdata: Path, tmp_path: Path) -> Path:
    source = realdata / "datumaro_coco" / "coco_panoptic" / "annotations"
    shutil.copytree(source, tmp_path / "annotations")
    return tmp_path / "annotations" / "panoptic_train.json"


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_exit_codes(realdata: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean, _ = copy_panoptic_sample(realdata, tmp_path)
    faulty = realdata / "datumaro_coco" / "coco_panoptic" / "annotations" / "panoptic_train.json"
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    assert main(["qa", str(clean)]) == 0
    assert main(["qa", str(faulty)]) == 1
    assert main(["qa", str(faulty), "--fail-on", "never"]) == 0
    assert main(["qa", str(broken)]) == 2
    assert main(["qa", str(tmp_path / "absent.json")]) == 2
    assert "broken.json" in capsys.readouterr().err


def test_fail_on_warning(realdata: Path) -> None:
    """The old polygon example has a warning (no original size) and no error."""
    example = realdata / "labelstudio" / "frontend_examples" / "image_polygons" / "tasks.json"
    assert main(["qa", str(example)]) == 0
    assert main(["qa", str(example), "--fail-on", "warning"]) == 1


def test_json_report_shape(realdata: Path, tmp_path: Path) -> None:
    faulty = realdata / "datumaro_coco" / "coco_panoptic" / "annotations" / "panoptic_train.json"
    report = tmp_path / "out" / "report.json"
    assert main(["qa", str(faulty), "--report", str(report)]) == 1
    data = json.loads(report.read_text())
    assert data["summary"]["by_severity"] == {"error": 3, "warning": 0, "info": 0}
    assert data["summary"]["by_code"] == {"AREA_MISMATCH": 1, "BBOX_MISMATCH": 1, "PAN_PNG_SIZE_MISMATCH": 1}
    fields = ("code", "severity", "message", "image_id", "file_name", "task_id", "annotation_id", "region_id")
    for finding in data["findings"]:
        assert set(fields) | {"segment_id"} <= set(finding)
        assert finding["task_id"] is None and finding["region_id"] is None
        assert finding["image_id"] == 5 and finding["file_name"] == "a.png"
    area = next(f for f in data["findings"] if f["code"] == "AREA_MISMATCH")
    assert (area["segment_id"], area["declared_area"], area["area"]) == (460551, 20, 25)


def test_terminal_summary_lists_worst_image_first(
    realdata: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path, _ = copy_panoptic_sample(realdata, tmp_path)
    data = json.loads(json_path.read_text())
    data["annotations"][1]["segments_info"][0]["area"] += 5
    for segment in data["annotations"][0]["segments_info"][:2]:
        segment["bbox"][0] += 3
    write_json(json_path, data)
    assert main(["qa", str(json_path)]) == 1
    out = capsys.readouterr().out
    assert "2  error    BBOX_MISMATCH" in out
    assert out.index("image 142238") < out.index("image 439180")


def test_fix_panoptic_recomputes_and_keeps_the_input(realdata: Path, tmp_path: Path) -> None:
    source = _datumaro_train(realdata, tmp_path)
    before = _digest(source.parent)
    output = tmp_path / "fixed" / "panoptic_train.json"
    report = tmp_path / "report.json"
    assert main(["qa", str(source), "--fix", str(output), "--report", str(report)]) == 1
    assert _digest(source.parent) == before
    fixed = json.loads(output.read_text())
    (segment,) = fixed["annotations"][0]["segments_info"]
    assert (segment["area"], segment["bbox"]) == (25, [0, 0, 5, 5])
    assert (output.with_suffix("") / "a.png").is_file()
    # What stays is what cannot be fixed mechanically: the PNG's size.
    assert codes(findings(output)) == {"PAN_PNG_SIZE_MISMATCH": 1}
    (change,) = json.loads(report.read_text())["fix"]
    assert change["action"] == "recomputed area and bbox" and change["before"]["area"] == 20


def test_fix_panoptic_drops_segments_without_pixels(realdata: Path, tmp_path: Path) -> None:
    json_path, _ = copy_panoptic_sample(realdata, tmp_path)
    data = json.loads(json_path.read_text())
    data["annotations"][0]["segments_info"].append(
        {"id": 77, "category_id": 1, "iscrowd": 0, "area": 3, "bbox": [0, 0, 1, 3]}
    )
    write_json(json_path, data)
    output = tmp_path / "out.json"
    main(["qa", str(json_path), "--fix", str(output)])
    assert 77 not in {s["id"] for s in json.loads(output.read_text())["annotations"][0]["segments_info"]}
    assert findings(output) == []


def test_fix_coco_resolves_overlaps_for_panoptic(realdata: Path, tmp_path: Path) -> None:
    """The real overlapping polygons of image 39769: after --fix with a policy, no pixel has two owners."""
    source = write_json(tmp_path / "instances.json", hf_polygons_with_an_empty_mask(realdata))
    output = tmp_path / "fixed.json"
    assert main(["qa", str(source), "--target", "panoptic", "--fix", str(output), "--overlap", "area"]) == 1
    assert "SEGMENTS_OVERLAP" in codes(findings(source, target="panoptic"))
    after = findings(output, target="panoptic")
    assert "SEGMENTS_OVERLAP" not in codes(after) and "SEGMENT_EMPTY" not in codes(after)
    coco = COCO(str(output))
    assert 5 not in coco.anns
    owners = np.zeros((480, 640), np.int32)
    for annotation in coco.anns.values():
        mask = coco.annToMask(annotation).astype(bool)
        if isinstance(annotation["segmentation"], dict):
            assert annotation["area"] == mask.sum()
        owners += mask
    assert owners.max() == 1


def test_fix_refuses_label_studio_and_the_input_path(realdata: Path, tmp_path: Path) -> None:
    export = realdata / "labelstudio" / "sdk_tests" / "test_export_coco" / "data.json"
    assert main(["qa", str(export), "--fix", str(tmp_path / "fixed.json")]) == 2
    assert not (tmp_path / "fixed.json").exists()
    json_path, _ = copy_panoptic_sample(realdata, tmp_path)
    before = json_path.read_bytes()
    assert main(["qa", str(json_path), "--fix", str(json_path)]) == 2
    assert json_path.read_bytes() == before


def test_workers_give_the_same_findings(realdata: Path, tmp_path: Path) -> None:
    json_path, images = copy_panoptic_sample(realdata, tmp_path)
    data = json.loads(json_path.read_text())
    for annotation in data["annotations"]:
        annotation["segments_info"][0]["area"] += 1
    write_json(json_path, data)
    assert findings(json_path, images_dir=images, workers=2) == findings(json_path, images_dir=images)
    assert len(findings(json_path, workers=2)) == 2


def test_readme_table_matches_the_registry() -> None:
    """The README's (or, before it is merged, the notes') table of codes is the registry's own rendering."""
    table = checks_table_markdown()
    texts = [p.read_text() for p in (REPO / "README.md", REPO / ".notes" / "readme-qa.md") if p.is_file()]
    assert any(table in text for text in texts)
    assert table.count("\n") == len(CHECKS) + 1


def test_images_folder_that_does_not_exist_is_an_error(
    realdata: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unusable option is an error (exit 2) naming the folder, not every image reported missing."""
    clean, _ = copy_panoptic_sample(realdata, tmp_path)
    assert main(["qa", str(clean), "--images", str(tmp_path / "nonexistent" / "dir")]) == 2
    captured = capsys.readouterr()
    assert "nonexistent/dir" in captured.err and "does not exist" in captured.err
    assert "IMAGE_FILE_MISSING" not in captured.out
    assert main(["qa", str(clean), "--images", str(clean)]) == 2
    assert "is not a folder" in capsys.readouterr().err


def _count_opens(monkeypatch: pytest.MonkeyPatch, watched: Path) -> list[str]:
    """Every open of `watched` from now on (the readers open their input through Path.open)."""
    opens: list[str] = []
    original = Path.open

    def counting(self: Path, *args, **kwargs):
        if self.resolve() == watched.resolve():
            opens.append(str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting)
    return opens


@pytest.mark.parametrize("fmt", ["coco", "coco-panoptic", "labelstudio"])
def test_fix_html_and_report_come_from_one_read(
    fmt: str, realdata: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`qa --fix OUT --html R.html --report R.json` opens its input once: the findings, the pictures and the
    fixed copy all come from the reader's one pass (before, check, fix and HTML read it three times)."""
    if fmt == "coco":
        source = write_json(tmp_path / "instances.json", hf_polygons_with_an_empty_mask(realdata))
    elif fmt == "coco-panoptic":
        source = _datumaro_train(realdata, tmp_path)
    else:
        source = write_json(tmp_path / "export.json", [dict(clean_tasks()[1], id=None)])
    opens = _count_opens(monkeypatch, source)
    html, report = tmp_path / "r.html", tmp_path / "r.json"
    args = ["qa", str(source), "--format", fmt, "--html", str(html), "--report", str(report)]
    if fmt != "labelstudio":
        args += ["--fix", str(tmp_path / "fixed" / "out.json")]
    main(args)
    assert len(opens) == 1
    assert html.is_file() and report.is_file()
    # Format detection sniffs the head of the file before the one read.
    opens.clear()
    main([arg for arg in args if arg not in ("--format", fmt)])
    assert len(opens) == 2


def test_fix_coco_keeps_ids_and_untouched_annotations(realdata: Path, tmp_path: Path) -> None:
    """The fixed copy, written by the COCO writer, keeps every annotation's id, and the segmentation of the
    ones no repair touched; area and bbox are recomputed only where flagged."""
    data = hf_polygons_with_an_empty_mask(realdata)
    data["annotations"][0]["area"] *= 2
    source = write_json(tmp_path / "instances.json", data)
    output = tmp_path / "fixed.json"
    assert main(["qa", str(source), "--fix", str(output)]) == 1
    fixed = {a["id"]: a for a in json.loads(output.read_text())["annotations"]}
    original = {a["id"]: a for a in data["annotations"]}
    assert set(fixed) == set(original) - {5}  # the empty one is dropped
    for annotation_id, annotation in fixed.items():
        assert annotation["segmentation"] == original[annotation_id]["segmentation"]
    first = data["annotations"][0]
    assert fixed[first["id"]]["area"] != first["area"]
    assert {f.code for f in findings(output)} <= {"SEGMENT_TINY"}


def test_fix_refuses_what_it_cannot_repair(realdata: Path, tmp_path: Path) -> None:
    """An image without a valid size cannot go through the writer: --fix says so and writes nothing."""
    data = hf_polygons_with_an_empty_mask(realdata)
    data["images"][0]["width"] = "wide"
    source = write_json(tmp_path / "instances.json", data)
    output = tmp_path / "fixed.json"
    assert main(["qa", str(source), "--fix", str(output)]) == 2
    assert not output.exists() and list(tmp_path.iterdir()) == [source]


def test_the_run_keeps_the_pictures_of_the_worst_images_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pictures are drawn as the items are checked; past MAX_PICTURES the least bad are let go."""
    from converters.qa import run

    tasks = clean_tasks()
    tasks[0]["annotations"][0]["result"][0]["value"]["brushlabels"] = []  # one error in task 1
    for region in tasks[1]["annotations"][0]["result"]:
        region["value"]["brushlabels"] = []
    tasks[1]["annotations"][0]["result"].append(dict(tasks[1]["annotations"][0]["result"][0], id="b3"))
    export = write_json(tmp_path / "export.json", tasks)
    monkeypatch.setattr(run, "MAX_PICTURES", 1)
    result = run.check(export, run.QAOptions(), pictures=True)
    assert len([f for f in result.findings if f.task_id == 2]) == 2
    assert set(result.pictures) == {("task", "2")}
    assert result.pictures[("task", "2")].thumbnail_png.startswith(b"\x89PNG")


def test_fix_refuses_a_panoptic_png_it_cannot_read(realdata: Path, tmp_path: Path) -> None:
    json_path, _ = copy_panoptic_sample(realdata, tmp_path)
    png = json_path.with_suffix("") / "000000142238.png"
    png.write_bytes(b"not a png")
    output = tmp_path / "fixed" / "out.json"
    assert main(["qa", str(json_path), "--fix", str(output)]) == 2
    assert not output.exists() and not output.with_suffix("").exists()
