"""`segassist eval` across formats: a Label Studio export against its own COCO conversion, and unlabelled
pixels of instance formats counted as background (a prediction there is a false positive)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from converters.cli import main
from tests.unit.test_eval_acceptance import CAT_A, DOG_B, HEIGHT, WIDTH, _annotation, _brush, _task


def _rle(alpha: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray((alpha > 0).astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _coco(path, masks: list[tuple[np.ndarray, int, float]]) -> None:
    data = {
        "images": [{"id": 1, "file_name": "1.png", "width": WIDTH, "height": HEIGHT}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {
                "id": i,
                "image_id": 1,
                "category_id": category,
                "segmentation": _rle(alpha),
                "area": int(np.count_nonzero(alpha)),
                "bbox": [float(v) for v in mask_utils.toBbox(_rle(alpha))],
                "iscrowd": 0,
                "score": score,
            }
            for i, (alpha, category, score) in enumerate(masks, start=1)
        ],
    }
    path.write_text(json.dumps(data))


def _scores(tmp_path, *args: str) -> dict:
    out = tmp_path / "scores.json"
    assert main(["eval", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_label_studio_export_against_its_coco_conversion_is_perfect(tmp_path):
    export = tmp_path / "export.json"
    export.write_text(
        json.dumps([_task(1, [_annotation(1, 1, _brush("a", CAT_A, "cat"), _brush("b", DOG_B, "dog"))], [])])
    )
    coco = tmp_path / "coco.json"
    assert main(["convert", "--from", "labelstudio", "--to", "coco", str(export), str(coco)]) == 0
    scores = _scores(tmp_path, str(export), str(coco))
    assert scores["gt"]["format"] == "labelstudio" and scores["pred"]["format"] == "coco"
    assert scores["pq"]["all"]["pq"] == 1.0 and scores["semantic"]["miou"] == 1.0
    assert scores["ap"]["AP"] == pytest.approx(1.0, abs=1e-12)  # COCOeval's mean of 101 precisions


def test_a_prediction_on_instance_background_is_a_false_positive(tmp_path):
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    _coco(gt, [(CAT_A, 1, 1.0)])
    _coco(pred, [(CAT_A, 1, 0.9), (DOG_B, 2, 0.8)])  # the dog lies where GT labels nothing
    scores = _scores(tmp_path, str(gt), str(pred), "--metrics", "pq,miou")
    dog = scores["pq"]["per_class"]["dog"]
    assert (dog["tp"], dog["fp"], dog["fn"], dog["pq"]) == (0, 1, 0, 0.0)
    assert scores["pq"]["per_class"]["cat"]["pq"] == 1.0
    assert scores["semantic"]["per_class"] == {"cat": 1.0, "dog": 0.0}
    assert scores["semantic"]["pixel_accuracy"] == 1.0  # over GT pixels labelled with a class
    assert scores["semantic"]["miou"] == pytest.approx(0.5)
