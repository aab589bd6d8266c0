"""The transformers engine on a tiny Mask2Former config saved with save_pretrained and loaded back through
`load`; transformers' own processor run on the same model is the oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from label_studio_sdk.label_interface import LabelInterface
from transformers import (
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    Mask2FormerImageProcessor,
    SwinConfig,
)

from converters.errors import SegassistError
from ml_backend.app import create_app
from ml_backend.engines import transformers_engine
from ml_backend.settings import Settings
from tests.backend_support import MediaServer, label_config, ls_task, png_bytes, predict_body, sample_image

CPU = torch.device("cpu")
NAMES = {0: "cat", 1: "dog", 2: "sky", 3: "grass"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    backbone = SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        image_size=64,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=64,
        num_queries=12,
        id2label=NAMES,
        label2id={name: index for index, name in NAMES.items()},
    )
    folder = tmp_path_factory.mktemp("mask2former")
    model = Mask2FormerForUniversalSegmentation(config)
    with torch.no_grad():
        # Confident, real-looking class scores: transformers' panoptic step weighs mask probabilities by them
        # before thresholding at 0.5, so random scores (~0.3) would leave no segment. No "no object" class.
        model.class_predictor.weight *= 100
        model.class_predictor.bias[-1] = -100
    model.save_pretrained(folder)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(folder)
    return folder


IMAGES = [sample_image(50, 70, seed=3), sample_image(60, 40, seed=4)]


def _oracle(folder):
    model = Mask2FormerForUniversalSegmentation.from_pretrained(folder).eval()
    processor = Mask2FormerImageProcessor.from_pretrained(folder)
    with torch.inference_mode():
        outputs = model(**processor(images=IMAGES, return_tensors="pt"))
    return processor, outputs, [image.shape[:2] for image in IMAGES]


def test_engine_loads_from_a_save_pretrained_folder(model_dir) -> None:
    engine = transformers_engine.load(str(model_dir), CPU)
    assert engine.modes == ("panoptic", "instance", "semantic")
    assert [(c.id, c.name) for c in engine.categories] == sorted(NAMES.items())
    assert engine.model_version.startswith("transformers-")


def test_semantic_and_instance_outputs_equal_transformers_post_processing(model_dir) -> None:
    engine = transformers_engine.load(str(model_dir), CPU, threshold=0.0)
    processor, outputs, sizes = _oracle(model_dir)
    semantic = processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
    for segments, expected in zip(engine.predict(IMAGES, "semantic"), semantic, strict=True):
        painted = np.full(expected.shape, -1)
        for segment in segments:
            segment.mask.paste_into(painted, segment.category_id)
        assert (painted == expected.numpy()).mean() > 0.999
    instances = processor.post_process_instance_segmentation(outputs, threshold=0.0, target_sizes=sizes)
    for segments, expected in zip(engine.predict(IMAGES, "instance"), instances, strict=True):
        shown = [info for info in expected["segments_info"] if (expected["segmentation"] == info["id"]).any()]
        assert len(segments) == len(shown) > 0
        for segment, info in zip(segments, shown, strict=True):
            assert segment.category_id == info["label_id"] and segment.score == pytest.approx(info["score"])
            overlap = (segment.mask.dense() == (expected["segmentation"] == info["id"]).numpy()).mean()
            assert overlap > 0.999


def test_panoptic_segments_are_exclusive_and_pass_label_studio_validation(model_dir) -> None:
    engine = transformers_engine.load(str(model_dir), CPU, threshold=0.0, overlap_threshold=0.0)
    for segments, image in zip(engine.predict(IMAGES, "panoptic"), IMAGES, strict=True):
        assert segments
        taken = np.zeros(image.shape[:2], dtype=bool)
        for segment in segments:
            assert not (taken & segment.mask.dense()).any()
            taken |= segment.mask.dense()
    server = MediaServer()
    try:
        server.routes["/data/upload/1/a.png"] = (200, {}, png_bytes(IMAGES[0]))
        app = create_app(
            Settings(engine="transformers", label_studio_url=server.url, score_threshold=0.0), engine
        )
        config = label_config(labels=list(NAMES.values()))
        response = app.test_client().post(
            "/predict", json=predict_body([ls_task(1, "/data/upload/1/a.png")], config)
        )
        [prediction] = response.json["results"]
        assert prediction["result"]
        assert LabelInterface(config).validate_prediction(prediction, return_errors=True) == []
    finally:
        server.close()


def test_missing_or_foreign_models_are_named_errors(tmp_path) -> None:
    with pytest.raises(SegassistError, match="segassist weights download nobody/no-such-model"):
        transformers_engine.load("nobody/no-such-model", CPU)
    SwinConfig().save_pretrained(tmp_path)
    with pytest.raises(SegassistError, match="is a swin model"):
        transformers_engine.load(str(tmp_path), CPU)
