"""The prediction service without HTTP, as the batch command drives it: items in, one result per
item in order, segments and Label Studio predictions, failures kept to their item. Real torchvision
architectures (random weights); label-studio-sdk's validator and RLE decoder are the oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from label_studio_sdk.converter.brush import decode_rle
from label_studio_sdk.label_interface import LabelInterface

from converters.errors import SegassistError
from ml_backend.engines.registry import load_engine
from ml_backend.media import TemporaryMediaError
from ml_backend.service import STAGES, PredictionService, new_timings
from ml_backend.settings import Settings
from tests.backend_support import label_config, sample_image

IMAGES = [sample_image(64 + 8 * n, 80, seed=n) for n in range(4)]


@pytest.fixture(scope="module")
def service(random_torchvision_engine) -> PredictionService:
    settings = Settings(engine="torchvision", mode="instance", score_threshold=0.0, batch_size=2)
    return PredictionService(settings, random_torchvision_engine)


def _by_score(segments: list) -> list:
    return sorted(segments, key=lambda segment: -segment.score)


def test_images_in_give_the_engines_segments_in_order_with_names_for_labels(service) -> None:
    timings = new_timings()
    results = list(service.predict(range(len(IMAGES)), IMAGES.__getitem__, timings=timings))
    expected = service.engine.predict(IMAGES, "instance")
    names = {category.id: category.name for category in service.engine.categories}
    assert [result.index for result in results] == [result.item for result in results] == [0, 1, 2, 3]
    for result, segments in zip(results, expected, strict=True):
        assert result.error is None and result.prediction is None and result.overlap is None
        assert len(result.segments) == len(segments) > 0
        for shaped, segment in zip(result.segments, _by_score(segments), strict=True):
            assert shaped.label == names[segment.category_id]
            assert np.array_equal(shaped.segment.mask.dense(), segment.mask.dense())
    assert set(timings) == set(STAGES) and timings["model"] > 0 and timings["json"] == 0


def test_with_a_label_config_each_result_holds_the_label_studio_prediction(service) -> None:
    config = label_config()
    info = service.label_config(config)
    [result] = service.predict(["a"], lambda item: IMAGES[0], info)
    assert result.prediction["model_version"] == service.model_version
    assert LabelInterface(config).validate_prediction(result.prediction, return_errors=True) == []
    assert result.prediction_json.startswith(b'{"result":[')
    for region, shaped in zip(result.prediction["result"], result.segments, strict=True):
        assert region["value"]["brushlabels"] == [shaped.label]
        alpha = decode_rle(region["value"]["rle"]).reshape(*IMAGES[0].shape[:2], 4)[..., 3]
        assert np.array_equal(alpha > 0, shaped.segment.mask.dense())


def test_failures_stay_with_their_item_in_order_and_say_whether_to_ask_again(service) -> None:
    def load(item: str) -> np.ndarray:
        if item == "gone":
            raise SegassistError("the image download answered HTTP 404", task_id=item)
        if item == "busy":
            raise TemporaryMediaError("the image download answered HTTP 503", task_id=item)
        if item == "bug":
            raise KeyError("unexpected")
        return IMAGES[int(item)]

    items = ["gone", "0", "busy", "1", "bug", "2"]
    results = list(service.predict(items, load, service.label_config(label_config())))
    assert [result.item for result in results] == items
    assert [result.error is None for result in results] == [False, True, False, True, False, True]
    gone, busy, bug = results[0], results[2], results[4]
    assert "HTTP 404" in str(gone.error) and not gone.retry and gone.prediction["result"] == []
    assert gone.prediction_json == service.empty_prediction_json
    assert "HTTP 503" in str(busy.error) and busy.retry and busy.prediction is None
    assert "KeyError" in str(bug.error) and "file bug" in str(bug.error) and bug.retry
    assert all(result.prediction["result"] for result in results[1::2])


def test_an_engine_fault_on_one_image_leaves_the_others_predicted(service) -> None:
    # A 4-channel array is a real fault of the real engine (normalisation is per RGB channel): a RuntimeError,
    # not a SegassistError, raised inside the CPU workers while the neighbouring images are in flight.
    poisoned = np.zeros((64, 80, 4), dtype=np.uint8)
    images = [IMAGES[0], IMAGES[1], poisoned, IMAGES[2], IMAGES[3]]
    results = list(service.predict(range(len(images)), images.__getitem__))
    assert [result.error is None for result in results] == [True, True, False, True, True]
    assert results[2].retry and "the model failed" in str(results[2].error)
    expected = service.engine.predict([image for image in images if image.shape[2] == 3], "instance")
    predicted = [result for result in results if result.error is None]
    for result, segments in zip(predicted, expected, strict=True):
        assert [s.segment.score for s in result.segments] == [s.score for s in _by_score(segments)]


def test_stopping_early_cancels_the_rest_and_frees_the_engine(service) -> None:
    loaded: list[int] = []

    def load(item: int) -> np.ndarray:
        loaded.append(item)
        return IMAGES[item % len(IMAGES)]

    stream = service.predict(itertools.count(), load)
    first = next(stream)
    stream.close()
    assert first.index == 0 and first.segments
    # An endless input was read only a few images ahead of the model, and the engine is free again.
    assert len(loaded) <= 4 * service.batch_size + 4
    assert [result.index for result in service.predict([0], load)] == [0]


def test_panoptic_results_carry_the_exclusivity_report(random_torchvision_engine) -> None:
    settings = Settings(engine="torchvision", mode="panoptic", score_threshold=0.0)
    service = PredictionService(settings, random_torchvision_engine)
    [result] = service.predict([0], IMAGES.__getitem__)
    assert result.overlap is not None and result.overlap.segments_kept == len(result.segments)
    canvas = np.zeros(IMAGES[0].shape[:2], dtype=bool)
    for shaped in result.segments:
        dense = shaped.segment.mask.dense()
        assert not (canvas & dense).any()
        canvas |= dense


def test_the_sam_cache_size_comes_from_the_settings() -> None:
    settings = Settings.from_env({"SEGASSIST_SAM_CACHE_MB": "64"})
    # What PredictionService.from_settings passes to the registry.
    engine = load_engine("sam", settings.model, torch.device("cpu"), sam_cache_mb=settings.sam_cache_mb)
    assert engine.cache.budget_bytes == 64 * 2**20
