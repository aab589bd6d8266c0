"""Label Studio QA: a small clean export (brush RLE from the SDK's own encoder, polygons, a bitmask) passes,
each planted fault is found and placed; the real LS fixtures are checked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.unit.qa_helpers import (
    LS_CONFIG,
    LS_HEIGHT,
    LS_WIDTH,
    alpha_box,
    bitmask_region,
    brush_region,
    clean_tasks,
    codes,
    findings,
    polygon_region,
    reported,
    with_code,
    write_json,
)


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, Path, Path, list[dict[str, Any]]]:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("one.png", "two.png"):
        Image.new("RGB", (LS_WIDTH, LS_HEIGHT), "white").save(images / name)
    config = tmp_path / "config.xml"
    config.write_text(LS_CONFIG)
    return tmp_path / "export.json", images, config, clean_tasks()


def _result(tasks: list, task: int = 0, annotation: int = 0) -> list[dict[str, Any]]:
    return tasks[task]["annotations"][annotation]["result"]


def _label(images: Path, tasks: list) -> Any:
    _result(tasks)[0]["value"]["brushlabels"] = ["Horse"]
    return "b1"


def _control(images: Path, tasks: list) -> Any:
    _result(tasks)[1]["from_name"] = "nope"
    return "p1"


def _to_name(images: Path, tasks: list) -> Any:
    _result(tasks)[1]["to_name"] = "picture"
    return "p1"


def _no_label(images: Path, tasks: list) -> Any:
    _result(tasks)[0]["value"]["brushlabels"] = []
    return "b1"


def _size_missing(images: Path, tasks: list) -> Any:
    del _result(tasks)[0]["original_width"]
    return "b1"


def _size_inconsistent(images: Path, tasks: list) -> Any:
    _result(tasks)[1]["original_width"] = LS_WIDTH + 1
    return None


def _rotation(images: Path, tasks: list) -> Any:
    _result(tasks)[1]["image_rotation"] = 90
    return "p1"


def _antialiased(images: Path, tasks: list) -> Any:
    alpha = alpha_box(5, 5, 20, 25)
    alpha[5, 5:25] = 90
    _result(tasks)[0] = brush_region("b1", alpha)
    return "b1"


def _cancelled(images: Path, tasks: list) -> Any:
    tasks[0]["annotations"][1]["was_cancelled"] = True
    return None


def _disagree(images: Path, tasks: list) -> Any:
    _result(tasks, annotation=1)[0] = brush_region("b1", alpha_box(25, 30, 40, 60))
    return None


def _duplicate_task(images: Path, tasks: list) -> Any:
    tasks[1]["id"] = 1
    return None


def _duplicate_annotation(images: Path, tasks: list) -> Any:
    tasks[1]["annotations"][0]["id"] = 11
    return None


def _duplicate_region(images: Path, tasks: list) -> Any:
    _result(tasks)[1]["id"] = "b1"
    return "b1"


def _undecodable(images: Path, tasks: list) -> Any:
    value = _result(tasks)[0]["value"]
    value["rle"] = value["rle"][:8]
    return "b1"


def _mask_size(images: Path, tasks: list) -> Any:
    _result(tasks)[0]["original_height"] = LS_HEIGHT + 2
    return "b1"


def _bitmask_size(images: Path, tasks: list) -> Any:
    _result(tasks)[2] = bitmask_region("m1", np.full((LS_HEIGHT, LS_WIDTH + 3), 255, np.uint8))
    return "m1"


def _empty(images: Path, tasks: list) -> Any:
    _result(tasks)[0] = brush_region("b1", np.zeros((LS_HEIGHT, LS_WIDTH), np.uint8))
    return "b1"


def _tiny(images: Path, tasks: list) -> Any:
    _result(tasks)[0] = brush_region("b1", alpha_box(0, 0, 1, 2))
    return "b1"


def _overlap(images: Path, tasks: list) -> Any:
    _result(tasks)[1] = polygon_region("p1", [[10, 10], [30, 10], [30, 30], [10, 30]])
    return "b1"


def _few_points(images: Path, tasks: list) -> Any:
    _result(tasks)[1] = polygon_region("p1", [[10, 10], [30, 10]])
    return "p1"


def _outside(images: Path, tasks: list) -> Any:
    _result(tasks)[1] = polygon_region("p1", [[50, 50], [120, 50], [90, 90]])
    return "p1"


def _crossing(images: Path, tasks: list) -> Any:
    _result(tasks)[1] = polygon_region("p1", [[50, 50], [90, 90], [90, 50], [50, 90]])
    return "p1"


def _exif(images: Path, tasks: list) -> Any:
    """one.jpg is stored 64 x 48 with EXIF 'rotate 90°': the browser, hence LS, shows it 48 x 64."""
    image = Image.new("RGB", (LS_WIDTH, LS_HEIGHT), "white")
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(images / "one.png", exif=exif)
    return None


def _file_missing(images: Path, tasks: list) -> Any:
    (images / "two.png").unlink()
    return None


def _unreadable(images: Path, tasks: list) -> Any:
    (images / "two.png").write_bytes(b"garbage")
    return None


def _structure(images: Path, tasks: list) -> Any:
    tasks[1]["annotations"][0]["result"] = "oops"
    return None


PLANTS: dict[str, Callable[[Path, list], Any]] = {
    "LS_LABEL_NOT_IN_CONFIG": _label,
    "LS_CONTROL_MISMATCH": _control,
    "LS_REGION_NO_LABEL": _no_label,
    "LS_SIZE_MISSING": _size_missing,
    "LS_SIZE_INCONSISTENT": _size_inconsistent,
    "LS_IMAGE_ROTATION": _rotation,
    "LS_BRUSH_ANTIALIASED": _antialiased,
    "LS_ANNOTATION_CANCELLED": _cancelled,
    "LS_ANNOTATORS_DISAGREE": _disagree,
    "DUPLICATE_TASK_ID": _duplicate_task,
    "DUPLICATE_ANNOTATION_ID": _duplicate_annotation,
    "DUPLICATE_REGION_ID": _duplicate_region,
    "MASK_UNDECODABLE": _undecodable,
    "MASK_SIZE_MISMATCH": _mask_size,
    "SEGMENT_EMPTY": _empty,
    "SEGMENT_TINY": _tiny,
    "SEGMENTS_OVERLAP": _overlap,
    "POLYGON_TOO_FEW_POINTS": _few_points,
    "POLYGON_OUT_OF_IMAGE": _outside,
    "POLYGON_SELF_INTERSECTION": _crossing,
    "IMAGE_SIZE_MISMATCH": _exif,
    "IMAGE_FILE_MISSING": _file_missing,
    "IMAGE_UNREADABLE": _unreadable,
    "JSON_STRUCTURE": _structure,
}


def _check(export_path: Path, images: Path, config: Path) -> list:
    return findings(export_path, images_dir=images, label_config=config, target="panoptic")


def test_clean_export_has_no_findings(export) -> None:
    """No check fires on the clean export, so each planted fault below is what its check reacts to."""
    path, images, config, tasks = export
    write_json(path, tasks)
    assert _check(path, images, config) == []


@pytest.mark.parametrize("code", sorted(PLANTS))
def test_planted_fault_is_found(code: str, export) -> None:
    path, images, config, tasks = export
    region_id = PLANTS[code](images, tasks)
    write_json(path, tasks)
    found = reported(_check(path, images, config), code)
    assert all(f.task_id in (1, 2) for f in found)
    if region_id is not None:
        assert region_id in {f.region_id for f in found}


@pytest.mark.parametrize(("plant", "where"), [(_to_name, "to_name"), (_bitmask_size, "bitmask")])
def test_more_variants_are_found(plant: Callable, where: str, export) -> None:
    path, images, config, tasks = export
    plant(images, tasks)
    write_json(path, tasks)
    found = _check(path, images, config)
    assert any(where in f.message for f in found if f.code in ("LS_CONTROL_MISMATCH", "MASK_SIZE_MISMATCH"))


def test_exif_mismatch_in_a_task(export) -> None:
    path, images, config, tasks = export
    _exif(images, tasks)
    write_json(path, tasks)
    (found,) = with_code(_check(path, images, config), "IMAGE_SIZE_MISMATCH")
    assert found.task_id == 1
    assert (found.numbers["file_width"], found.numbers["file_height"]) == (LS_HEIGHT, LS_WIDTH)


def test_disagreement_reports_the_iou(export) -> None:
    path, images, config, tasks = export
    _disagree(images, tasks)
    write_json(path, tasks)
    (found,) = with_code(_check(path, images, config), "LS_ANNOTATORS_DISAGREE")
    assert (found.annotation_id, found.numbers["other_annotation_id"], found.numbers["label"]) == (
        11,
        12,
        "Cat",
    )
    assert found.numbers["iou"] == 0.0


def test_workers_give_the_same_findings(export) -> None:
    path, images, config, tasks = export
    for plant in (_label, _overlap, _disagree):
        plant(images, tasks)
    write_json(path, tasks * 3)
    serial = findings(path, label_config=config, target="panoptic")
    assert len(serial) >= 9
    assert findings(path, label_config=config, target="panoptic", workers=2) == serial


def test_a_task_that_is_not_an_object_is_reported(tmp_path: Path) -> None:
    found = findings(write_json(tmp_path / "export.json", [*clean_tasks(), "not a task"]))
    assert [(f.code, f.task_id) for f in found] == [("JSON_STRUCTURE", None)]
    # Positions count from 1, as convert names tasks (issue 16 item 10): the third task is task #3.
    assert "task #3" in found[0].message


def test_prediction_ids_in_a_label_studio_export_are_not_faults(tmp_path: Path) -> None:
    """Label Studio 1.23's JSON export lists predictions by id; an id that is not an object is still a fault
    for annotations, and the message numbers entries per kind."""
    tasks = clean_tasks()
    tasks[0]["predictions"] = [1, 2]
    assert findings(write_json(tmp_path / "ids.json", tasks)) == []
    tasks[0]["predictions"] = ["not a prediction"]
    (found,) = findings(write_json(tmp_path / "bad.json", tasks))
    assert (found.code, found.task_id) == ("JSON_STRUCTURE", 1)
    assert "prediction #1" in found.message


def test_single_task_object_is_read(tmp_path: Path) -> None:
    task = clean_tasks()[1]
    _result([task])[0]["value"]["brushlabels"] = []
    found = findings(write_json(tmp_path / "task.json", task))
    assert [(f.code, f.task_id, f.region_id) for f in found] == [("LS_REGION_NO_LABEL", 2, "b2")]


# -- the real Label Studio fixtures -------------------------------------------------------------------------


def test_real_brush_export_is_antialiased_and_otherwise_clean(realdata: Path) -> None:
    """The LS editor's real brush (2242 x 2802) decodes; its soft edge is reported with the pixel counts that
    the fixture's metadata gives for alpha > 0 and alpha >= 128."""
    derived = realdata / "labelstudio" / "derived"
    meta = json.loads((derived / "image_segmentation_decoded_meta.json").read_text())
    config = realdata / "labelstudio" / "frontend_examples" / "image_segmentation" / "config.xml"
    found = findings(derived / "image_segmentation_export_with_dims.json", label_config=config)
    (soft,) = found
    assert (soft.code, soft.task_id, soft.annotation_id, soft.region_id) == (
        "LS_BRUSH_ANTIALIASED",
        1,
        1001,
        "lOA7F7sUZJ",
    )
    assert soft.numbers["area_alpha_gt0"] == meta["area_alpha_gt0"]
    assert soft.numbers["area_at_threshold"] == meta["area_alpha_ge128"]


@pytest.mark.parametrize(
    ("export_file", "config_file"),
    [
        (
            "frontend_examples/image_segmentation/annotations/1.json",
            "frontend_examples/image_segmentation/config.xml",
        ),
        ("frontend_examples/image_polygons/tasks.json", "frontend_examples/image_polygons/config.xml"),
        (
            "frontend_examples/image_polygons/annotations/0.json",
            "frontend_examples/image_polygons/config.xml",
        ),
    ],
)
def test_old_frontend_examples_lack_sizes_but_match_their_config(
    realdata: Path, export_file: str, config_file: str
) -> None:
    """Old LS results have no original_width/height: a warning, and no label/control error."""
    base = realdata / "labelstudio"
    found = findings(base / export_file, label_config=base / config_file)
    assert codes(found) == {"LS_SIZE_MISSING": 1}


@pytest.mark.parametrize(
    ("export_file", "config_file"),
    [
        ("sdk_tests/test_export_coco/data.json", "sdk_tests/test_export_coco/label_config.xml"),
        (
            "sdk_tests/test_export_yolo/data_polygons.json",
            "sdk_tests/test_export_yolo/label_config_polygons.xml",
        ),
    ],
)
def test_modern_sdk_exports_pass(realdata: Path, export_file: str, config_file: str) -> None:
    base = realdata / "labelstudio"
    assert findings(base / export_file, label_config=base / config_file) == []


def test_wrong_config_flags_every_label(realdata: Path) -> None:
    """The polygon export checked against the brush example's config: the control and labels do not exist."""
    base = realdata / "labelstudio"
    found = findings(
        base / "sdk_tests/test_export_yolo/data_polygons.json",
        label_config=base / "frontend_examples/image_segmentation/config.xml",
    )
    assert "LS_CONTROL_MISMATCH" in codes(found)


def test_brush_regions_of_a_12_megapixel_image_stay_cropped(tmp_path: Path) -> None:
    """QA decodes brush regions to their crops and counts soft edges from the RLE runs: checking a task with
    several soft-edged regions on a 4000 x 3000 image never holds an array of the image's size (12 MB)."""
    import tracemalloc

    from converters import brush
    from converters.qa import QAOptions, check

    width, height = 4000, 3000
    results = []
    for index, (top, left) in enumerate([(100, 100), (1500, 2000), (2700, 3600)]):
        alpha = np.zeros((height, width), np.uint8)
        alpha[top : top + 200, left : left + 300] = 255
        alpha[top, left : left + 300] = 100  # a soft edge
        region = brush_region(f"r{index}", alpha_box(0, 0, 1, 1))
        region.update(original_width=width, original_height=height)
        region["value"]["rle"] = brush.encode(alpha)
        results.append(region)
    tasks = [{"id": 1, "data": {"image": "big.jpg"}, "annotations": [{"id": 1, "result": results}]}]
    export = write_json(tmp_path / "big.json", tasks)
    check(export, QAOptions(min_area=0))  # warm-up: the codecs' kernels load on first use
    tracemalloc.start()
    try:
        found = check(export, QAOptions(min_area=0)).findings
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(f.code, f.region_id, f.numbers["soft_pixels"]) for f in found] == [
        ("LS_BRUSH_ANTIALIASED", f"r{index}", 300) for index in range(3)
    ]
    assert peak < width * height // 4
