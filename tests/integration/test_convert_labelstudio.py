"""Label Studio export reading (annotation choice, cancelled, predictions, sizes from files), the CLI and
`segassist ls-config`, with errors that name file, task and region and leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image

from converters import Mask, SegassistError, Segment
from converters.cli import main
from converters.convert import convert
from converters.formats.common import Options
from converters.formats.labelstudio import LabelStudioSource
from converters.formats.ls_regions import segment_to_result
from converters.lsconfig import read_label_config

W, H = 32, 24


def box_mask(top: int, left: int, bottom: int, right: int) -> Mask:
    dense = np.zeros((H, W), dtype=bool)
    dense[top:bottom, left:right] = True
    return Mask.from_dense(dense)


def region(mask: Mask, label: str, region_id: str, **extra) -> dict:
    result = segment_to_result(
        Segment(mask, 1),
        from_name="tag",
        to_name="image",
        control_type="brushlabels",
        label=label,
        region_id=region_id,
    )
    return {**result, **extra}


@pytest.fixture
def export(tmp_path) -> Path:
    """Three tasks: two annotations, a cancelled one and a prediction; one unlabeled; one plain."""
    tasks = [
        {
            "id": 11,
            "data": {"image": "/data/upload/1/abc-cat.png"},
            "annotations": [
                {
                    "id": 101,
                    "ground_truth": True,
                    "updated_at": "2025-01-01T10:00:00Z",
                    "result": [region(box_mask(0, 0, 10, 10), "cat", "a1")],
                },
                {
                    "id": 102,
                    "updated_at": "2025-01-02T10:00:00Z",
                    "result": [
                        region(box_mask(0, 0, 8, 8), "dog", "b1"),
                        region(box_mask(4, 4, 12, 12), "cat", "b2"),
                        {"id": "rel", "type": "relation", "from_id": "b1", "to_id": "b2"},
                    ],
                },
                {
                    "id": 103,
                    "was_cancelled": True,
                    "updated_at": "2025-01-03T10:00:00Z",
                    "result": [region(box_mask(0, 0, 2, 2), "bird", "c1")],
                },
            ],
            "predictions": [
                {"id": 7, "score": 0.6, "result": [region(box_mask(10, 10, 20, 20), "cat", "p1")]},
            ],
        },
        {"id": 12, "data": {"image": "/data/local-files/?d=pics/dog%202.png"}, "annotations": []},
        {
            "id": 13,
            "data": {"image": "https://example.com/x/plain.png?sig=1"},
            "annotations": [{"id": 104, "result": [region(box_mask(20, 20, 24, 32), "dog", "d1")]}],
        },
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def coco(path: Path) -> dict:
    return json.loads(path.read_text())


def test_latest_annotation_per_task_is_the_default(export, tmp_path):
    report = convert("labelstudio", "coco", export, tmp_path / "out.json")
    data = coco(tmp_path / "out.json")
    assert [(i["id"], i["file_name"]) for i in data["images"]] == [(11, "abc-cat.png"), (13, "plain.png")]
    # Labels of the converted regions in order of first appearance, ids from 1 (the older annotation's and
    # the cancelled one's labels do not count).
    assert [(c["id"], c["name"]) for c in data["categories"]] == [(1, "dog"), (2, "cat")]
    assert [(a["image_id"], a["category_id"], a["area"]) for a in data["annotations"]] == [
        (11, 1, 64),
        (11, 2, 64),
        (13, 1, 48),
    ]
    assert report.not_labeled == [{"file": str(export), "task_id": 12}]


def test_all_ground_truth_and_predictions(export, tmp_path):
    convert("labelstudio", "coco", export, tmp_path / "all.json", annotations="all")
    assert [a["area"] for a in coco(tmp_path / "all.json")["annotations"]] == [100, 64, 64, 48]
    convert("labelstudio", "coco", export, tmp_path / "gt.json", annotations="ground-truth")
    gt = coco(tmp_path / "gt.json")
    assert [i["id"] for i in gt["images"]] == [11] and [a["area"] for a in gt["annotations"]] == [100]
    convert("labelstudio", "coco", export, tmp_path / "pred.json", predictions=True)
    [prediction] = coco(tmp_path / "pred.json")["annotations"]
    assert prediction["score"] == 0.6 and prediction["area"] == 100


def test_order_policy_paints_later_regions_over_earlier_ones(export, tmp_path):
    convert("labelstudio", "semantic", export, tmp_path / "sem", overlap="order")
    mapping = coco(tmp_path / "sem/labelmap.json")
    value = {c["name"]: c["value"] for c in mapping["classes"]}
    label_map = np.asarray(Image.open(tmp_path / "sem" / "abc-cat.png"))
    assert label_map[0, 0] == value["dog"] and label_map[5, 5] == value["cat"] and label_map[20, 20] == 0
    assert label_map.dtype == np.uint8


def test_sizes_come_from_the_image_file_when_results_lack_them(tmp_path):
    result = region(box_mask(2, 3, 6, 9), "cat", "r1")
    del result["original_width"], result["original_height"]
    (tmp_path / "export.json").write_text(
        json.dumps(
            [
                {
                    "id": 5,
                    "data": {"image": "/data/upload/img.png"},
                    "annotations": [{"id": 1, "result": [result]}],
                }
            ]
        )
    )
    with pytest.raises(SegassistError) as caught:
        convert("labelstudio", "coco", tmp_path / "export.json", tmp_path / "out.json")
    assert "task 5" in str(caught.value) and "region r1" in str(caught.value)
    (tmp_path / "images").mkdir()
    Image.new("RGB", (W, H)).save(tmp_path / "images/img.png")
    convert(
        "labelstudio", "coco", tmp_path / "export.json", tmp_path / "out.json", images=tmp_path / "images"
    )
    [annotation] = coco(tmp_path / "out.json")["annotations"]
    assert annotation["bbox"] == [3, 2, 6, 4]


def test_label_config_gives_categories_and_writer_names(export, tmp_path):
    config = tmp_path / "config.xml"
    config.write_text(
        '<View><Image name="img" value="$image"/><BrushLabels name="brush" toName="img">'
        '<Label value="dog" background="#00ff00"/><Label value="cat" category="7" background="red"/>'
        "</BrushLabels></View>"
    )
    parsed = read_label_config(config)
    assert [(c.id, c.name, c.color) for c in parsed.categories] == [
        (1, "dog", (0, 255, 0)),
        (7, "cat", (255, 0, 0)),
    ]
    convert("labelstudio", "labelstudio", export, tmp_path / "tasks.json", label_config=config)
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert len(tasks) == 2 and "id" not in tasks[0]
    first = tasks[0]["annotations"][0]["result"]
    assert [(r["from_name"], r["to_name"], r["id"]) for r in first] == [
        ("brush", "img", "b1"),
        ("brush", "img", "b2"),
    ]
    assert tasks[1]["data"] == {"image": "https://example.com/x/plain.png?sig=1"}


def test_unknown_label_and_corrupt_region_name_task_and_region_and_leave_nothing(tmp_path):
    broken = region(box_mask(0, 0, 4, 4), "cat", "bad-region")
    broken["value"]["rle"] = broken["value"]["rle"][:8]
    (tmp_path / "in.json").write_text(
        json.dumps(
            [
                {
                    "id": 1,
                    "data": {"image": "a.png"},
                    "annotations": [{"id": 9, "result": [region(box_mask(0, 0, 4, 4), "cat", "ok")]}],
                },
                {"id": 2, "data": {"image": "b.png"}, "annotations": [{"id": 10, "result": [broken]}]},
            ]
        )
    )
    out = tmp_path / "out"
    with pytest.raises(SegassistError) as caught:
        convert("labelstudio", "coco-panoptic", tmp_path / "in.json", out / "pan.json")
    message = str(caught.value)
    assert (
        "in.json" in message
        and "task 2" in message
        and "annotation 10" in message
        and "region bad-region" in message
    )
    assert not out.exists() or list(out.iterdir()) == []
    with pytest.raises(SegassistError) as in_worker:
        convert("labelstudio", "coco-panoptic", tmp_path / "in.json", out / "pan.json", workers=2)
    assert str(in_worker.value) == message  # from a worker process, with every location field

    report = convert("labelstudio", "coco-panoptic", tmp_path / "in.json", out / "pan.json", on_error="skip")
    assert report.images == 1 and [s["task_id"] for s in report.skipped] == [2]
    assert "region bad-region" in report.skipped[0]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["pan", "pan.json"]
    # Labels without colours get distinct ones: panoptic categories carry isthing and color.
    [category] = json.loads((out / "pan.json").read_text())["categories"]
    assert category["name"] == "cat" and category["isthing"] == 1 and len(category["color"]) == 3


def test_cli_convert_exit_codes_report_and_error_without_traceback(export, tmp_path, capsys):
    code = main(
        [
            "convert",
            "--from",
            "labelstudio",
            "--to",
            "coco",
            str(export),
            str(tmp_path / "c.json"),
            "--report",
            str(tmp_path / "r.json"),
            "--workers",
            "2",
        ]
    )
    assert code == 0 and coco(tmp_path / "r.json")["images"] == 2
    assert "2 images, 3 segments" in capsys.readouterr().err
    code = main(
        ["convert", "--from", "labelstudio", "--to", "coco-panoptic", str(export), str(tmp_path / "p.json")]
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "segassist convert: error:" in err and "overlapping segment pair" in err and "region b1" in err
    assert not (tmp_path / "p.json").exists()


def test_cli_ls_config_writes_a_config_label_studio_parses(tmp_path, realdata):
    out = tmp_path / "config.xml"
    code = main(
        ["ls-config", str(realdata / "panopticapi_sample/panoptic_coco_categories.json"), "-o", str(out)]
    )
    assert code == 0
    interface = LabelInterface(out.read_text())
    control = interface.get_control("tag")
    assert type(control).__name__ == "BrushLabelsTag" and len(control.labels) == 133
    parsed = read_label_config(out)
    assert parsed.categories[0].name == "person" and parsed.categories[0].color == (220, 20, 60)
    assert (parsed.from_name, parsed.to_name, parsed.image_key) == ("tag", "image", "image")


def test_export_is_streamed_task_by_task(tmp_path):
    task = {
        "id": 1,
        "data": {"image": "a.png"},
        "annotations": [{"result": [region(box_mask(0, 0, 4, 4), "cat", "r")]}],
    }
    text = json.dumps(task)
    # The second task is cut off: the first is still read (and converted) before the error shows.
    (tmp_path / "cut.json").write_text(f"[{text},{text[: len(text) // 2]}")
    (tmp_path / "categories.json").write_text(json.dumps([{"id": 1, "name": "cat"}]))
    source = LabelStudioSource(tmp_path / "cut.json", Options(categories_file=tmp_path / "categories.json"))
    items = source.items()
    position, first = next(items)
    assert (position, first["id"]) == (0, 1) and source.load((position, first)).segments[0].mask.area == 16
    with pytest.raises(SegassistError, match="invalid JSON after 1 task"):
        next(items)
    with pytest.raises(SegassistError, match="cut.json"):
        convert("labelstudio", "coco", tmp_path / "cut.json", tmp_path / "out.json", on_error="skip")
    assert not (tmp_path / "out.json").exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_exports_listing_prediction_ids_read_annotations_and_explain_predictions(export, tmp_path):
    tasks = json.loads(export.read_text())
    tasks[0]["predictions"] = [7]  # Label Studio 1.23's JSON export without predictions included
    export.write_text(json.dumps(tasks))
    convert("labelstudio", "coco", export, tmp_path / "annotations.json")
    assert len(coco(tmp_path / "annotations.json")["annotations"]) == 3
    with pytest.raises(SegassistError, match="task 11: the task lists prediction ids"):
        convert("labelstudio", "coco", export, tmp_path / "predictions.json", predictions=True)
