"""The transformers engine on tiny Mask2Former and OneFormer configs saved with save_pretrained and loaded
back through `load`; transformers' own processors run on the same models are the oracle."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import torch
from label_studio_sdk.label_interface import LabelInterface
from transformers import (
    CLIPTokenizer,
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    Mask2FormerImageProcessor,
    OneFormerConfig,
    OneFormerForUniversalSegmentation,
    OneFormerImageProcessor,
    OneFormerProcessor,
    SwinConfig,
)

from converters.errors import SegassistError
from ml_backend.app import create_app
from ml_backend.engines import transformers_engine
from ml_backend.settings import Settings
from tests.backend_support import MediaServer, label_config, ls_task, png_bytes, predict_body, sample_image

CPU = torch.device("cpu")
NAMES = {0: "cat", 1: "dog", 2: "sky", 3: "grass"}


THINGS = {0, 1}  # cat, dog; sky and grass are stuff
TASK_TOKENS = 24  # "the task is panoptic" letter by letter, with start and end tokens: 21


def _tiny_universal_segmentation() -> dict:
    """The config keywords Mask2Former and OneFormer share, at test size."""
    backbone = SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        image_size=64,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return {
        "backbone_config": backbone,
        "hidden_dim": 32,
        "encoder_feedforward_dim": 64,
        "encoder_layers": 1,
        "decoder_layers": 2,
        "num_attention_heads": 2,
        "dim_feedforward": 64,
        "num_queries": 12,
        "id2label": NAMES,
        "label2id": {name: index for index, name in NAMES.items()},
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = Mask2FormerConfig(**_tiny_universal_segmentation(), feature_size=32, mask_feature_size=32)
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
    _assert_semantic_equal(engine.predict(IMAGES, "semantic"), semantic)
    instances = processor.post_process_instance_segmentation(outputs, threshold=0.0, target_sizes=sizes)
    _assert_instances_equal(engine.predict(IMAGES, "instance"), instances)


def _assert_semantic_equal(predicted: list, label_maps: list) -> None:
    for segments, label_map in zip(predicted, label_maps, strict=True):
        painted = np.full(label_map.shape, -1)
        for segment in segments:
            segment.mask.paste_into(painted, segment.category_id)
        assert np.array_equal(painted, label_map.numpy())


def _assert_instances_equal(predicted: list, results: list) -> None:
    """Segments equal transformers' instance or panoptic results: those with pixels, in order, the same
    pixels, labels and scores."""
    for segments, result in zip(predicted, results, strict=True):
        shown = [info for info in result["segments_info"] if (result["segmentation"] == info["id"]).any()]
        assert len(segments) == len(shown) > 0
        for segment, info in zip(segments, shown, strict=True):
            assert segment.category_id == info["label_id"] and segment.score == pytest.approx(info["score"])
            assert np.array_equal(segment.mask.dense(), (result["segmentation"] == info["id"]).numpy())


def test_panoptic_output_equals_transformers_post_processing_and_passes_label_studio_validation(
    model_dir,
) -> None:
    engine = transformers_engine.load(str(model_dir), CPU, threshold=0.0, overlap_threshold=0.0)
    processor, outputs, sizes = _oracle(model_dir)
    # Mask2Former marks no stuff class, so nothing is fused: transformers' own call with its defaults.
    expected = processor.post_process_panoptic_segmentation(
        outputs, threshold=0.0, overlap_mask_area_threshold=0.0, target_sizes=sizes
    )
    predicted = engine.predict(IMAGES, "panoptic")
    _assert_instances_equal(predicted, expected)
    for segments, image in zip(predicted, IMAGES, strict=True):
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


def test_predict_each_reads_images_one_batch_ahead_and_equals_predict(model_dir) -> None:
    engine = transformers_engine.load(str(model_dir), CPU, threshold=0.0)
    read: list[int] = []

    def images():
        for index, image in enumerate(IMAGES * 3):
            read.append(index)
            yield image

    results = engine.predict_each(images(), "instance", batch_size=2)
    first = next(results)
    assert read == [0, 1, 2, 3]  # the batch handed out and the one predicted meanwhile, not the whole request
    predicted = [first, *results]
    assert read == [0, 1, 2, 3, 4, 5]
    expected = engine.predict(IMAGES, "instance") * 3

    def described(found: list) -> list[tuple]:
        return [(s.category_id, s.score, s.mask.dense().tobytes()) for s in found]

    assert list(map(described, predicted)) == list(map(described, expected))


def test_predict_each_predicts_the_next_batch_while_the_caller_handles_this_one(model_dir) -> None:
    engine = transformers_engine.load(str(model_dir), CPU, threshold=0.0)
    forward = engine.predict
    batches: list[int] = []
    second_started = threading.Event()

    def predict(images, mode):  # the real forward, noting which batch it runs
        batches.append(len(images))
        if len(batches) == 2:
            second_started.set()
        return forward(images, mode)

    engine.predict = predict
    results = engine.predict_each(iter(IMAGES * 2), "instance", batch_size=2)
    next(results)
    # The caller holds the first image's segments and asks for nothing: the second batch runs anyway.
    assert second_started.wait(timeout=120)
    assert len(list(results)) == 3 and batches == [2, 2]


def test_missing_or_foreign_models_are_named_errors(tmp_path) -> None:
    with pytest.raises(SegassistError, match="segassist weights download nobody/no-such-model"):
        transformers_engine.load("nobody/no-such-model", CPU)
    SwinConfig().save_pretrained(tmp_path)
    with pytest.raises(SegassistError, match="is a swin model"):
        transformers_engine.load(str(tmp_path), CPU)


# -- OneFormer -----------------------------------------------------------------------------------------------


def _write_char_level_clip_tokenizer(folder) -> CLIPTokenizer:
    """A real CLIP tokenizer with a character vocabulary and no merges: enough for OneFormer's task
    sentence, which it spells out letter by letter (TASK_TOKENS covers the longest)."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(set("the task is semantic instance panoptic") - {" "}):
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def _oneformer_processor(folder, class_info_file: str | None) -> OneFormerProcessor:
    image_processor = OneFormerImageProcessor(
        size={"shortest_edge": 64, "longest_edge": 96},
        repo_path=str(folder),
        class_info_file=class_info_file,
        num_text=4,
    )
    tokenizer = _write_char_level_clip_tokenizer(folder)
    return OneFormerProcessor(image_processor, tokenizer, max_seq_length=8, task_seq_length=TASK_TOKENS)


@pytest.fixture(scope="module")
def oneformer_dir(tmp_path_factory):
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("oneformer")
    classes = {str(i): {"name": name, "isthing": int(i in THINGS)} for i, name in NAMES.items()}
    (folder / "classes.json").write_text(json.dumps(classes))
    processor = _oneformer_processor(folder, "classes.json")
    config = OneFormerConfig(
        **_tiny_universal_segmentation(),
        task_seq_len=TASK_TOKENS,
        text_encoder_width=32,
        text_encoder_context_length=8,
        text_encoder_num_layers=1,
        text_encoder_vocab_size=len(processor.tokenizer.get_vocab()),
        text_encoder_n_ctx=4,
        conv_dim=32,
        mask_dim=32,
        query_dec_layers=1,
    )
    model = OneFormerForUniversalSegmentation(config)
    with torch.no_grad():
        # Confident class scores, as for Mask2Former above: no query falls under the 0.5 mask weighting.
        model.model.transformer_module.decoder.class_embed.weight *= 100
        model.model.transformer_module.decoder.class_embed.bias[-1] = -100
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _oneformer_oracle(folder, task: str):
    model = OneFormerForUniversalSegmentation.from_pretrained(folder).eval()
    processor = OneFormerProcessor.from_pretrained(folder)
    with torch.inference_mode():
        inputs = processor(images=IMAGES, task_inputs=[task] * len(IMAGES), return_tensors="pt")
        outputs = model(**inputs)
    return processor, outputs, [image.shape[:2] for image in IMAGES]


def test_oneformer_loads_with_its_tokenizer_and_marks_things_from_its_class_info(oneformer_dir) -> None:
    engine = transformers_engine.load(str(oneformer_dir), CPU)
    assert engine.modes == ("panoptic", "instance", "semantic")
    assert [(c.id, c.name, c.isthing) for c in engine.categories] == [
        (i, name, i in THINGS) for i, name in sorted(NAMES.items())
    ]


def test_oneformer_outputs_equal_transformers_post_processing_for_the_modes_task(oneformer_dir) -> None:
    engine = transformers_engine.load(str(oneformer_dir), CPU, threshold=0.0)
    processor, outputs, sizes = _oneformer_oracle(oneformer_dir, "semantic")
    expected = processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
    _assert_semantic_equal(engine.predict(IMAGES, "semantic"), expected)
    # The task sentence conditions the model: told "panoptic", it paints a different semantic map, so the
    # equality above shows the engine sent "semantic".
    processor, other, _ = _oneformer_oracle(oneformer_dir, "panoptic")
    assert not torch.equal(outputs.class_queries_logits, other.class_queries_logits)

    processor, outputs, sizes = _oneformer_oracle(oneformer_dir, "instance")
    instances = processor.post_process_instance_segmentation(
        outputs, threshold=0.0, target_sizes=sizes, task_type="instance"
    )
    _assert_instances_equal(engine.predict(IMAGES, "instance"), instances)


def test_oneformer_panoptic_merges_each_stuff_class_and_never_overlaps(oneformer_dir) -> None:
    engine = transformers_engine.load(str(oneformer_dir), CPU, threshold=0.0, overlap_threshold=0.0)
    processor, outputs, sizes = _oneformer_oracle(oneformer_dir, "panoptic")
    # The oracle without fusion: every query its own segment id (transformers' fusion can reuse ids).
    expected = processor.post_process_panoptic_segmentation(
        outputs, threshold=0.0, overlap_mask_area_threshold=0.0, label_ids_to_fuse=set(), target_sizes=sizes
    )
    merged_some = False
    for segments, result, image in zip(engine.predict(IMAGES, "panoptic"), expected, IMAGES, strict=True):
        taken = np.zeros(image.shape[:2], dtype=bool)
        for segment in segments:
            assert not (taken & segment.mask.dense()).any()
            taken |= segment.mask.dense()
        ids = result["segmentation"].numpy()
        shown = [info for info in result["segments_info"] if (ids == info["id"]).any()]
        things = [info for info in shown if info["label_id"] in THINGS]
        stuff = {info["label_id"] for info in shown} - THINGS
        # Things one to one; each stuff class once, covering all of that class's query segments.
        assert [s.category_id for s in segments if s.category_id in THINGS] == [i["label_id"] for i in things]
        for label in stuff:
            [segment] = [s for s in segments if s.category_id == label]
            members = [info["id"] for info in shown if info["label_id"] == label]
            assert (segment.mask.dense() == np.isin(ids, members)).all()
            merged_some |= len(members) > 1
    assert merged_some, "no stuff class had two query segments: the merge went untested"


def test_oneformer_reads_a_hub_class_info_file_from_the_hugging_face_cache_offline(
    tmp_path, oneformer_dir, monkeypatch
) -> None:
    """Real OneFormer processors name their class info file in another hub repo (shi-labs/oneformer_demo);
    `segassist weights download` caches it, and serving then reads it from the cache without the network."""
    from huggingface_hub import constants

    model = tmp_path / "model"
    shutil.copytree(oneformer_dir, model)
    (model / "classes.json").unlink()
    config = json.loads((model / "processor_config.json").read_text())
    config["image_processor"] |= {"repo_path": "shi-labs/oneformer_demo", "class_info_file": "tiny.json"}
    (model / "processor_config.json").write_text(json.dumps(config))
    repo = tmp_path / "hub" / "datasets--shi-labs--oneformer_demo"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    classes = {str(i): {"name": name, "isthing": int(i == 2)} for i, name in NAMES.items()}
    (repo / "snapshots" / ("0" * 40) / "tiny.json").write_text(json.dumps(classes))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    engine = transformers_engine.load(str(model), CPU)
    assert [c.name for c in engine.categories if c.isthing] == ["sky"]


def test_oneformer_without_class_info_is_a_named_error(tmp_path, oneformer_dir) -> None:
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((oneformer_dir / name).read_bytes())
    _oneformer_processor(tmp_path, None).save_pretrained(tmp_path)
    with pytest.raises(SegassistError, match="class_info_file"):
        transformers_engine.load(str(tmp_path), CPU)
