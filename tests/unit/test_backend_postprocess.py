"""Engine segments -> Label Studio regions: label mapping, thresholds, modes and region caps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters import Category, Mask, Segment
from ml_backend.labeling import parse_label_config
from ml_backend.postprocess import encode, prediction_json, shape

CATEGORIES = [
    Category(1, "car"),
    Category(2, "truck"),
    Category(3, "road", isthing=False),
    Category(4, "cat"),
]
CONFIG = (
    '<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
    '<Label value="Vehicle" predicted_values="car,truck"/><Label value="Road"/></BrushLabels></View>'
)


def _box(top: int, left: int, rows: int, cols: int, size: int = 20) -> Mask:
    dense = np.zeros((size, size), dtype=bool)
    dense[top : top + rows, left : left + cols] = True
    return Mask.from_dense(dense)


@pytest.fixture(scope="module")
def info():
    return parse_label_config(CONFIG, CATEGORIES, {})


SEGMENTS = [
    Segment(_box(0, 0, 5, 5), 1, score=0.9),  # car -> Vehicle
    Segment(_box(3, 3, 5, 5), 2, score=0.6),  # truck -> Vehicle, overlaps the car by 4 px
    Segment(_box(10, 0, 10, 20), 3, score=0.7),  # road -> Road
    Segment(_box(0, 15, 3, 3), 4, score=0.99),  # cat: no label, dropped
    Segment(_box(15, 15, 2, 2), 1, score=0.2),  # under the score threshold
]


def test_instance_mode_maps_labels_filters_and_sorts_by_score(info) -> None:
    shaped, _ = shape(
        SEGMENTS, info, mode="instance", categories=CATEGORIES, score_threshold=0.5, max_regions=10
    )
    assert [(item.label, item.segment.score) for item in shaped] == [
        ("Vehicle", 0.9),
        ("Road", 0.7),
        ("Vehicle", 0.6),
    ]
    capped, _ = shape(
        SEGMENTS, info, mode="instance", categories=CATEGORIES, score_threshold=0.5, max_regions=2
    )
    assert [item.segment.score for item in capped] == [0.9, 0.7]


def test_semantic_mode_unions_each_label_with_an_area_weighted_score(info) -> None:
    shaped, _ = shape(
        SEGMENTS, info, mode="semantic", categories=CATEGORIES, score_threshold=0.5, max_regions=10
    )
    by_label = {item.label: item.segment for item in shaped}
    assert set(by_label) == {"Vehicle", "Road"}
    assert by_label["Vehicle"].mask.area == 25 + 25 - 4
    assert by_label["Vehicle"].score == pytest.approx((0.9 * 25 + 0.6 * 25) / 50)


def test_panoptic_mode_makes_regions_exclusive(info) -> None:
    shaped, _ = shape(
        SEGMENTS, info, mode="panoptic", categories=CATEGORIES, score_threshold=0.5, max_regions=10
    )
    areas = {item.segment.score: item.segment.mask.area for item in shaped}
    assert areas == {0.9: 25, 0.6: 21, 0.7: 200}


def test_encode_writes_one_result_per_region_and_the_mean_score(info) -> None:
    shaped, _ = shape(
        SEGMENTS, info, mode="instance", categories=CATEGORIES, score_threshold=0.5, max_regions=10
    )
    prediction = encode(shaped, info, "v1")
    assert prediction["model_version"] == "v1"
    assert [r["id"] for r in prediction["result"]] == ["seg0", "seg1", "seg2"]
    assert prediction["score"] == pytest.approx((0.9 + 0.7 + 0.6) / 3)
    assert info.config.interface.validate_prediction(prediction, return_errors=True) == []
    assert encode([], info, "v1") == {"result": [], "score": 0.0, "model_version": "v1"}


def test_prediction_json_writes_numpy_scalars_and_brush_lists_as_json_numbers() -> None:
    prediction = {
        "result": [{"value": {"rle": [0, 255, 3]}, "score": np.float32(0.25)}],
        "score": np.float64(0.5),
        "model_version": "m",
    }
    assert json.loads(prediction_json(prediction)) == {
        "result": [{"value": {"rle": [0, 255, 3]}, "score": 0.25}],
        "score": 0.5,
        "model_version": "m",
    }
