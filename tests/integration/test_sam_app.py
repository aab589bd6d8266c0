"""Interactive prompts through the real Flask app's /predict, answered by the embedded LiteMedSAM."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image
from skimage import data

from converters import brush
from ml_backend.app import create_app
from ml_backend.engines.sam import SamEngine
from ml_backend.settings import Settings
from tests.backend_support import predict_body
from tests.unit.sam_references import (
    ASTRONAUT_SIZE,
    COFFEE_SIZE,
    HELMET,
    SPOON_BOWL,
    SPOON_HANDLE,
    keypoint_region,
    rectangle_region,
    reference,
)

CONFIG = """
<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image"><Label value="object"/></BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true"><Label value="object"/></KeyPointLabels>
  <RectangleLabels name="box" toName="image" smart="true"><Label value="object"/></RectangleLabels>
</View>"""


@pytest.fixture(scope="module")
def client(litemedsam: SamEngine, tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    root = tmp_path_factory.mktemp("media")
    Image.fromarray(data.coffee()).save(root / "coffee.png")
    Image.fromarray(data.astronaut()).save(root / "astronaut.png")
    app = create_app(Settings(local_files_document_root=str(root)), engine=litemedsam)
    return app.test_client()


def _task(task_id: int, name: str) -> dict[str, Any]:
    return {
        "id": task_id,
        "data": {"image": f"/data/local-files/?d={name}"},
        "annotations": [],
        "predictions": [],
    }


def _predict(client: FlaskClient, task: dict, regions: list[dict]) -> Any:
    return client.post("/predict", json=predict_body([task], CONFIG, {"result": regions}))


def _only_region(response: Any) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)
    [prediction] = response.get_json()["results"]
    [region] = prediction["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["object"]
    return region


def test_keypoint_on_the_helmet(client: FlaskClient) -> None:
    region = _only_region(
        _predict(client, _task(1, "astronaut.png"), [keypoint_region(400, 420, ASTRONAUT_SIZE)])
    )
    height, width = ASTRONAUT_SIZE
    mask = brush.decode_mask(region["value"]["rle"], width, height)
    assert mask.iou(reference(ASTRONAUT_SIZE, HELMET)) >= 0.72  # as in test_sam_engine


def test_rectangle_around_the_spoon_and_the_cached_second_prompt(
    client: FlaskClient, litemedsam: SamEngine
) -> None:
    task = _task(2, "coffee.png")
    misses = litemedsam.cache.misses
    region = _only_region(_predict(client, task, [rectangle_region(320, 60, 430, 330, COFFEE_SIZE)]))
    height, width = COFFEE_SIZE
    mask = brush.decode_mask(region["value"]["rle"], width, height)
    assert mask.iou(reference(COFFEE_SIZE, SPOON_HANDLE, SPOON_BOWL)) >= 0.6  # as in test_sam_engine
    assert litemedsam.cache.misses == misses + 1  # the embedding of the box's zoom window
    # The same prompt again on the same task reuses that embedding and gives the same region.
    again = _only_region(_predict(client, task, [rectangle_region(320, 60, 430, 330, COFFEE_SIZE)]))
    assert again["value"]["rle"] == region["value"]["rle"]
    assert litemedsam.cache.misses == misses + 1


def test_unknown_label_is_a_400_naming_task_and_region(client: FlaskClient) -> None:
    response = _predict(
        client, _task(3, "astronaut.png"), [keypoint_region(400, 420, ASTRONAUT_SIZE, label="cat")]
    )
    assert response.status_code == 400
    detail = response.get_data(as_text=True)
    assert "task 3" in detail and "region kp1" in detail and "'cat'" in detail


def test_zero_area_box_gives_an_empty_suggestion(client: FlaskClient) -> None:
    response = _predict(client, _task(4, "coffee.png"), [rectangle_region(100, 100, 100, 200, COFFEE_SIZE)])
    assert response.status_code == 200
    [prediction] = response.get_json()["results"]
    assert prediction["result"] == []


def test_missing_image_is_a_400_naming_the_task(client: FlaskClient) -> None:
    response = _predict(client, _task(5, "nowhere.png"), [keypoint_region(10, 10, COFFEE_SIZE)])
    assert response.status_code == 400
    assert "task 5" in response.get_data(as_text=True)
