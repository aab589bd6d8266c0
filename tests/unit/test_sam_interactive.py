"""Label Studio smart-tool contexts -> one suggested region, with the real LiteMedSAM engine and config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface
from skimage import data

from converters import brush, polygons
from converters.errors import SegassistError
from ml_backend.engines.base import Engine
from ml_backend.engines.sam import SamEngine
from ml_backend.interactive import handle
from ml_backend.labeling import LabelConfigInfo, parse_label_config
from tests.unit.sam_references import (
    ASTRONAUT_SIZE,
    HELMET,
    keypoint_region,
    rectangle_region,
    reference,
)

HEIGHT, WIDTH = ASTRONAUT_SIZE
TASK = {"id": 7, "data": {"image": "/data/upload/1/astronaut.png"}}


def _config(mask_tag: str) -> str:
    return f"""
<View>
  <Image name="image" value="$image"/>
  <{mask_tag} name="mask" toName="image"><Label value="helmet"/><Label value="person"/></{mask_tag}>
  <KeyPointLabels name="click" toName="image" smart="true"><Label value="helmet"/><Label value="person"/>
    <Label value="flag"/></KeyPointLabels>
  <RectangleLabels name="box" toName="image" smart="true"><Label value="helmet"/></RectangleLabels>
</View>"""


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def _info(
    litemedsam: SamEngine, image: np.ndarray, mask_tag: str = "BrushLabels"
) -> tuple[LabelConfigInfo, Callable[[dict], np.ndarray]]:
    return _with_image(parse_label_config(_config(mask_tag), litemedsam.categories, {}), image)


def _with_image(
    info: LabelConfigInfo, image: np.ndarray
) -> tuple[LabelConfigInfo, Callable[[dict], np.ndarray]]:
    """The config info and a task image loader as the service passes it (here: the image in memory)."""
    return info, lambda task: image


def _click(x_px: float, y_px: float, label: str = "helmet", positive: bool | None = True) -> dict[str, Any]:
    return keypoint_region(
        x_px, y_px, ASTRONAUT_SIZE, label=label, region_id=f"k{x_px:.0f}", positive=positive
    )


def _box(x0: float, y0: float, x1: float, y1: float, rotation: float = 0) -> dict[str, Any]:
    return rectangle_region(x0, y0, x1, y1, ASTRONAUT_SIZE, label="helmet", rotation=rotation)


def test_a_click_gives_one_brush_region_holding_the_helmet(litemedsam: SamEngine, astronaut) -> None:
    info = _info(litemedsam, astronaut)
    prediction = handle(litemedsam, TASK, {"result": [_click(400, 420)]}, *info)
    [region] = prediction["result"]
    assert region["type"] == "brushlabels"
    assert (region["from_name"], region["to_name"]) == ("mask", "image")
    assert region["value"]["brushlabels"] == ["helmet"]
    assert (region["original_width"], region["original_height"]) == (WIDTH, HEIGHT)
    assert prediction["model_version"] == litemedsam.model_version
    assert 0 < prediction["score"] <= 1
    # The label config accepts it as Label Studio would validate a prediction.
    assert LabelInterface(_config("BrushLabels")).validate_prediction(prediction, return_errors=True) == []
    mask = brush.decode_mask(region["value"]["rle"], WIDTH, HEIGHT)
    assert mask.iou(reference(ASTRONAUT_SIZE, HELMET)) >= 0.72  # threshold as in test_sam_engine


def test_a_smart_rectangle_gives_the_same_object(litemedsam: SamEngine, astronaut) -> None:
    prediction = handle(
        litemedsam, TASK, {"result": [_box(270, 340, 512, 512)]}, *_info(litemedsam, astronaut)
    )
    mask = brush.decode_mask(prediction["result"][0]["value"]["rle"], WIDTH, HEIGHT)
    assert mask.iou(reference(ASTRONAUT_SIZE, HELMET)) >= 0.72


def test_a_rotated_rectangle_prompts_with_its_bounds(litemedsam: SamEngine, astronaut) -> None:
    # Turned 90 degrees clockwise about its top-left corner, (x, y, w, h) covers x-h..x by y..y+w: this one
    # (x 512, y 340, w 172, h 242) covers the helmet box 270..512 by 340..512.
    rotated = _box(512, 340, 512 + 172, 340 + 242, rotation=90)
    prediction = handle(litemedsam, TASK, {"result": [rotated]}, *_info(litemedsam, astronaut))
    mask = brush.decode_mask(prediction["result"][0]["value"]["rle"], WIDTH, HEIGHT)
    assert mask.iou(reference(ASTRONAUT_SIZE, HELMET)) >= 0.72


def test_polygon_control_gets_a_polygon(litemedsam: SamEngine, astronaut) -> None:
    info = _info(litemedsam, astronaut, mask_tag="PolygonLabels")
    [region] = handle(litemedsam, TASK, {"result": [_click(400, 420)]}, *info)["result"]
    assert region["type"] == "polygonlabels"
    assert region["value"]["polygonlabels"] == ["helmet"]
    mask = polygons.ls_to_mask(region["value"]["points"], WIDTH, HEIGHT)
    assert mask.iou(reference(ASTRONAUT_SIZE, HELMET)) >= 0.7


def test_clicks_outside_the_image_are_clamped_to_its_border(litemedsam: SamEngine, astronaut) -> None:
    # A click past the bottom-right corner lands on the helmet's clasp at the corner.
    prediction = handle(litemedsam, TASK, {"result": [_click(600, 700)]}, *_info(litemedsam, astronaut))
    mask = brush.decode_mask(prediction["result"][0]["value"]["rle"], WIDTH, HEIGHT)
    assert mask.dense()[HEIGHT - 1, WIDTH - 1]


def test_missing_is_positive_counts_as_a_positive_click(litemedsam: SamEngine, astronaut) -> None:
    prediction = handle(
        litemedsam, TASK, {"result": [_click(400, 420, positive=None)]}, *_info(litemedsam, astronaut)
    )
    assert len(prediction["result"]) == 1


def test_zero_area_box_gives_an_empty_result_with_the_reason(litemedsam: SamEngine, astronaut) -> None:
    prediction = handle(
        litemedsam, TASK, {"result": [_box(100, 100, 100, 300)]}, *_info(litemedsam, astronaut)
    )
    assert prediction["result"] == []
    assert "no area" in prediction["reason"]
    outside = handle(litemedsam, TASK, {"result": [_box(600, 100, 700, 300)]}, *_info(litemedsam, astronaut))
    assert outside["result"] == [] and "no area" in outside["reason"]


def test_only_negative_clicks_give_an_empty_result(litemedsam: SamEngine, astronaut) -> None:
    prediction = handle(
        litemedsam, TASK, {"result": [_click(400, 420, positive=False)]}, *_info(litemedsam, astronaut)
    )
    assert prediction["result"] == []
    assert "negative" in prediction["reason"]


def test_unknown_label_names_task_and_region(litemedsam: SamEngine, astronaut) -> None:
    with pytest.raises(SegassistError, match="'flag' is not a label of the brushlabels control") as caught:
        handle(litemedsam, TASK, {"result": [_click(400, 420, label="flag")]}, *_info(litemedsam, astronaut))
    assert (caught.value.task_id, caught.value.region_id) == (7, "k400")


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({}, "non-empty list"),
        ({"result": []}, "non-empty list"),
        ({"result": [{"type": "choices", "value": {}}]}, "keypointlabels or rectanglelabels"),
        ({"result": [{"type": "keypointlabels", "value": {"keypointlabels": ["helmet"]}}]}, "no usable"),
        ({"result": [{"type": "keypointlabels", "value": {"x": 5, "y": 5}}]}, "no label"),
    ],
)
def test_malformed_contexts_are_refused(
    litemedsam: SamEngine, astronaut, context: dict, message: str
) -> None:
    with pytest.raises(SegassistError, match=message) as caught:
        handle(litemedsam, TASK, context, *_info(litemedsam, astronaut))
    assert caught.value.task_id == 7


def test_config_without_a_mask_control_is_refused(litemedsam: SamEngine, astronaut) -> None:
    xml = """<View><Image name="image" value="$image"/>
      <KeyPointLabels name="click" toName="image" smart="true"><Label value="helmet"/></KeyPointLabels>
    </View>"""
    info = _with_image(parse_label_config(xml, litemedsam.categories, {}), astronaut)
    with pytest.raises(SegassistError, match="no BrushLabels, BitmaskLabels or PolygonLabels"):
        handle(litemedsam, TASK, {"result": [_click(400, 420)]}, *info)


def test_an_engine_without_prompts_is_refused(litemedsam: SamEngine, astronaut) -> None:
    class AutomaticOnly(Engine):
        model_version = "automatic-only"
        categories = litemedsam.categories
        modes = ("instance",)

        def predict(self, images, mode):
            return [[] for _ in images]

    with pytest.raises(SegassistError, match="answers no interactive prompts"):
        handle(AutomaticOnly(), TASK, {"result": [_click(400, 420)]}, *_info(litemedsam, astronaut))
