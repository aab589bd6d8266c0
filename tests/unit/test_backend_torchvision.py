"""The torchvision engine on the real architectures with random weights saved to files and loaded back through
`load`: torchvision's own outputs are the oracle for instances and semantic maps."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import segmentation
from torchvision.transforms._presets import SemanticSegmentation

from converters import Category, Mask, Segment
from converters.errors import SegassistError
from ml_backend.engines import torchvision_engine
from ml_backend.engines.base import PanopticRule
from ml_backend.engines.registry import load_engine
from ml_backend.engines.torch_utils import CpuWorkers, resolve_device, split_on_oom
from ml_backend.postprocess import shape
from ml_backend.service import PredictionService
from ml_backend.settings import Settings
from tests.backend_support import FAST_OPTIONS, load_test_engine, sample_image, save_random_semantic_weights

CPU = torch.device("cpu")


@pytest.fixture
def weights(random_torchvision_weights):
    return random_torchvision_weights


@pytest.fixture
def engine(random_torchvision_engine):
    return random_torchvision_engine


IMAGES = [sample_image(72, 96, seed=1), sample_image(80, 64, seed=2)]


def test_loaded_engine_describes_itself(engine) -> None:
    assert engine.modes == ("panoptic", "instance", "semantic")
    assert engine.model_version.startswith("torchvision-maskrcnn_resnet50_fpn_v2@")
    found = {(category.id, category.name, category.isthing) for category in engine.categories}
    assert (1, "person", True) in found  # the COCO index is kept
    assert (91 + 1, "aeroplane", False) in found  # semantic classes follow
    assert (91 + 15, "person", False) in found
    assert not any(name in ("__background__", "N/A") for _, name, _ in found)
    assert len(found) == 80 + 20
    for model in (engine._instance.module, engine._semantic.module):
        convolutions = [layer for layer in model.modules() if isinstance(layer, torch.nn.Conv2d)]
        assert convolutions
        assert all(layer.weight.is_contiguous(memory_format=torch.channels_last) for layer in convolutions)


def _assert_instances_equal_torchvision_pasted_masks(predicted: list, expected_outputs: list[dict]) -> None:
    for segments, expected, image in zip(predicted, expected_outputs, IMAGES, strict=True):
        dense = [(mask[0] > 0.5).numpy() for mask in expected["masks"]]
        keep = [index for index, mask in enumerate(dense) if mask.any()]
        assert len(segments) == len(keep) > 0
        for segment, index in zip(segments, keep, strict=True):
            assert segment.mask.shape == image.shape[:2]
            assert np.array_equal(segment.mask.dense(), dense[index])
            assert segment.category_id == int(expected["labels"][index])
            assert segment.score == pytest.approx(float(expected["scores"][index]))


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255


def test_instances_equal_torchvision_pasted_masks(engine) -> None:
    predicted = engine.predict(IMAGES, "instance")
    with torch.inference_mode():
        # On the CPU each image has a forward of its own (no padding to a shared batch size).
        reference = [engine._instance.module([_as_tensor(image)])[0] for image in IMAGES]
    _assert_instances_equal_torchvision_pasted_masks(predicted, reference)


def test_the_gpu_paths_batched_forward_equals_torchvisions_batched_forward(engine) -> None:
    # On a GPU the images of a call share one padded forward; `_predict` is that path, run here on the CPU.
    predicted = engine._predict(IMAGES, "instance")
    with torch.inference_mode():
        reference = engine._instance.module([_as_tensor(image) for image in IMAGES])
    _assert_instances_equal_torchvision_pasted_masks(predicted, reference)
    for candidates, image in zip(engine._predict(IMAGES, "panoptic"), IMAGES, strict=True):
        assert_no_overlap(_exclusive(engine, candidates), image)


def _assert_semantic_map_equals_torchvision_preset_and_argmax(engine, image: np.ndarray) -> None:
    """Pixel for pixel: torchvision's SemanticSegmentation preset, the model, bilinear upsampling and the
    argmax; background (class 0) is void, not a segment."""
    [segments] = engine.predict([image], "semantic")
    preset = SemanticSegmentation(resize_size=FAST_OPTIONS["semantic_size"])
    with torch.inference_mode():
        batch = preset(torch.from_numpy(image).permute(2, 0, 1))[None]
        logits = engine._semantic.module(batch)["out"]
        upsampled = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)
        expected = upsampled.argmax(1)[0].numpy()
    offset = len(engine._instance.class_names) if engine._instance else 0
    painted = np.zeros(image.shape[:2], dtype=np.int64)
    for segment in segments:
        assert 0 < segment.score <= 1
        segment.mask.paste_into(painted, segment.category_id - offset)
    assert len(segments) >= 2, "a map with one class would not test the borders"
    assert np.array_equal(painted, expected)


def test_semantic_map_equals_torchvision_preset_and_argmax(tmp_path) -> None:
    path = tmp_path / "deeplab.pth"
    torch.manual_seed(2)
    save_random_semantic_weights("deeplabv3_mobilenet_v3_large", path)
    engine = load_test_engine(None, path)
    for image in (*IMAGES, sample_image(300, 200, seed=4)):
        _assert_semantic_map_equals_torchvision_preset_and_argmax(engine, image)


@pytest.fixture(scope="module")
def default_engine(random_torchvision_weights, tmp_path_factory):
    """The default model pair (DEFAULT_MODEL) with random weights: the session's Mask R-CNN v2 and a
    DeepLabV3-ResNet50 saved here."""
    instance_arch, semantic_arch = torchvision_engine.DEFAULT_MODEL.split(",")
    assert instance_arch == "maskrcnn_resnet50_fpn_v2"  # the architecture of the session's instance weights
    semantic = tmp_path_factory.mktemp("default") / f"{semantic_arch}.pth"
    torch.manual_seed(1)
    save_random_semantic_weights(semantic_arch, semantic)
    return torchvision_engine.load(
        f"{instance_arch}={random_torchvision_weights[0]},{semantic_arch}={semantic}", CPU, **FAST_OPTIONS
    )


@pytest.mark.timeout(600)
def test_the_default_models_semantic_half_deeplabv3_resnet50(default_engine) -> None:
    assert default_engine._semantic.arch == "deeplabv3_resnet50"
    assert default_engine.modes == ("panoptic", "instance", "semantic")
    _assert_semantic_map_equals_torchvision_preset_and_argmax(default_engine, IMAGES[0])
    service = PredictionService(
        Settings(engine="torchvision", mode="panoptic", score_threshold=0.0), default_engine
    )
    for result, image in zip(service.predict(IMAGES, lambda image: image), IMAGES, strict=True):
        segments = [item.segment for item in result.segments]
        assert_no_overlap(segments, image)
        assert any(not engine_category(default_engine, s.category_id).isthing for s in segments)


def assert_no_overlap(segments: list, image: np.ndarray) -> None:
    canvas = np.zeros(image.shape[:2], dtype=np.int32)
    for segment in segments:
        assert not canvas[segment.mask.dense()].any(), "a pixel belongs to two segments"
        segment.mask.paste_into(canvas, 1)


def _exclusive(engine, candidates: list) -> list:
    """Panoptic candidates through the service's one exclusivity step, with the engine's rule."""
    shaped, _ = shape(
        candidates,
        None,
        mode="panoptic",
        categories=engine.categories,
        score_threshold=0.0,
        max_regions=1000,
        panoptic_rule=engine.panoptic_rule,
    )
    return [item.segment for item in shaped]


def test_panoptic_segments_never_overlap(engine) -> None:
    # The engine gives candidates; the service's one exclusivity step makes them a panoptic image.
    service = PredictionService(Settings(engine="torchvision", mode="panoptic", score_threshold=0.0), engine)
    for result, image in zip(service.predict(IMAGES, lambda image: image), IMAGES, strict=True):
        segments = [item.segment for item in result.segments]
        assert_no_overlap(segments, image)
        assert any(not engine_category(engine, s.category_id).isthing for s in segments)
        assert result.overlap.segments_kept == len(segments)


def _described(predicted: list[list]) -> list[list[tuple]]:
    return [[(s.category_id, s.score, s.mask.dense().tobytes()) for s in segments] for segments in predicted]


def test_cpu_workers_give_the_segments_of_one_image_at_a_time_in_order(weights, engine) -> None:
    side_by_side = load_test_engine(*weights, cpu_workers=2)
    images = [*IMAGES, sample_image(64, 64, seed=3)]
    for mode in ("instance", "panoptic"):
        one_at_a_time = [engine.predict([image], mode)[0] for image in images]
        assert _described(side_by_side.predict(images, mode)) == _described(one_at_a_time)


def test_a_single_image_runs_in_the_calling_thread_and_several_in_the_workers(weights, monkeypatch) -> None:
    side_by_side = load_test_engine(*weights, cpu_workers=2)
    threads: list[str] = []
    predict = side_by_side._predict

    def recording(images, mode):
        threads.append(threading.current_thread().name)
        return predict(images, mode)

    monkeypatch.setattr(side_by_side, "_predict", recording)
    [segments] = side_by_side.predict_each(iter(IMAGES[:1]), "instance", 2)
    # Alone, the image keeps every intra-op thread of the request's thread.
    assert threads == [threading.current_thread().name]
    threads.clear()
    assert len(list(side_by_side.predict_each(iter(IMAGES * 2), "instance", 2))) == 2 * len(IMAGES)
    assert threads and all(name.startswith("cpu-forward") for name in threads)


def test_cpu_workers_split_the_threads_and_leave_the_callers_count() -> None:
    torch.set_num_threads(2)
    try:
        workers = CpuWorkers(2, 1)
        assert list(workers.imap(lambda _: torch.get_num_threads(), range(4))) == [1, 1, 1, 1]
        assert torch.get_num_threads() == 2
        with ThreadPoolExecutor(1) as later:  # threads started later (requests) keep the full count
            assert later.submit(torch.get_num_threads).result() == 2
    finally:
        torch.set_num_threads(1)
    assert list(workers.imap(lambda item: item * 10, [3, 1, 2])) == [30, 10, 20]
    with pytest.raises(ZeroDivisionError):
        list(workers.imap(lambda item: 1 // item, [1, 0]))


def test_cpu_workers_read_ahead_a_bounded_amount_and_finish_what_started_when_closed() -> None:
    workers = CpuWorkers(2, 1)
    read: list[int] = []
    finished: list[int] = []

    def items():
        for item in range(100):
            read.append(item)
            yield item

    def run(item: int) -> int:
        time.sleep(0.05 if item == 0 else 0.4)
        finished.append(item)
        return item

    results = workers.imap(run, items())
    assert next(results) == 0
    # Two items per worker were taken ahead of the one waited for: never the whole request.
    assert read == [0, 1, 2, 3]
    results.close()
    # Closing returned only after the forwards already running ended (item 1 at least); the queued ones
    # never ran, then or later.
    at_close = list(finished)
    time.sleep(1)
    assert finished == at_close and 1 in finished and 3 not in finished


def test_cpu_workers_let_a_fast_item_overtake_a_slow_one_but_yield_in_order() -> None:
    workers = CpuWorkers(2, 1)
    order: list[int] = []

    def run(seconds: float) -> float:
        time.sleep(seconds)
        order.append(seconds)
        return seconds

    assert list(workers.imap(run, [0.6, 0.1, 0.1, 0.1])) == [0.6, 0.1, 0.1, 0.1]
    # The second worker went on to the next items while the first was busy with the slow one.
    assert order[:3] == [0.1, 0.1, 0.1]


def engine_category(engine, category_id: int):
    return next(category for category in engine.categories if category.id == category_id)


def _box(top: int, left: int, rows: int, cols: int, score: float, category_id: int) -> Segment:
    dense = np.zeros((10, 10), dtype=bool)
    dense[top : top + rows, left : left + cols] = True
    return Segment(Mask.from_dense(dense), category_id, score=score)


def test_panoptic_fusion_follows_detectron2s_rule(weights) -> None:
    a = _box(0, 0, 4, 4, 0.9, 12)  # 16 px
    b = _box(0, 1, 4, 4, 0.8, 11)  # 12 of 16 px under a: 75 % > 50 % -> skipped
    c = _box(3, 3, 4, 4, 0.7, 13)  # 1 of 16 px under a: kept without it
    d = _box(8, 8, 2, 2, 0.3, 14)  # score .3 < .5 -> dropped
    semantic = np.zeros((10, 10), dtype=bool)
    semantic[:, 5:] = True  # class 101: right half, 50 px of which c takes 8 -> kept
    small = np.zeros((10, 10), dtype=bool)
    small[9, :5] = True  # class 102: 5 px -> under the stuff area threshold
    stuff = [Segment(Mask.from_dense(semantic), 101, score=0.6), Segment(Mask.from_dense(small), 102, 0.6)]
    categories = [Category(i, f"thing{i}") for i in (11, 12, 13, 14)] + [
        Category(i, f"stuff{i}", isthing=False) for i in (101, 102)
    ]
    # The engine's rule, from its detectron2 thresholds; the fusion score threshold is the score threshold.
    rule = load_test_engine(*weights, fusion_overlap_threshold=0.5, stuff_area_threshold=10).panoptic_rule
    assert rule == PanopticRule(min_kept_fraction=0.5, stuff_min_area=10)
    shaped, report = shape(
        [b, a, c, d, *stuff],
        None,
        mode="panoptic",
        categories=categories,
        score_threshold=0.5,
        max_regions=10,
        panoptic_rule=rule,
    )
    segments = [item.segment for item in shaped]
    assert [(s.category_id, s.score) for s in segments] == [(12, 0.9), (13, 0.7), (101, 0.6)]
    assert [s.mask.area for s in segments] == [16, 15, 42]
    canvas = np.zeros((10, 10), dtype=int)
    for segment in segments:
        assert not canvas[segment.mask.dense()].any()
        segment.mask.paste_into(canvas, 1)
    # One report per segment that changed: b and the small stuff class dropped, c and class 101 cut.
    changed = {
        change.category_id: (change.area_before, change.area_after, change.dropped)
        for change in report.changes
    }
    assert {key: value[:2] for key, value in changed.items()} == {
        11: (16, 0),
        13: (16, 15),
        101: (50, 42),
        102: (5, 0),
    }
    assert "min_kept_fraction" in changed[11][2] and "min_area" in changed[102][2]


def test_weights_from_a_file_with_another_class_count_take_names_from_beside_it(tmp_path) -> None:
    path = tmp_path / "three.pth"
    torch.save(
        segmentation.lraspp_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=3
        ).state_dict(),
        path,
    )
    loaded = torchvision_engine.load(f"lraspp_mobilenet_v3_large={path}", CPU, semantic_size=32)
    assert [c.name for c in loaded.categories] == ["class_0", "class_1", "class_2"]
    assert loaded.modes == ("semantic",)
    (tmp_path / "three.json").write_text(json.dumps(["__background__", "road", "sky"]))
    named = torchvision_engine.load(f"lraspp_mobilenet_v3_large={path}", CPU, semantic_size=32)
    assert [(c.id, c.name) for c in named.categories] == [(1, "road"), (2, "sky")]
    with pytest.raises(SegassistError, match="cannot do instance"):
        named.predict([sample_image()], "instance")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_weight_files_are_loaded_safely_and_errors_name_the_file(tmp_path, weights) -> None:
    instance, semantic = weights
    with pytest.raises(SegassistError, match="missing.pth"):
        torchvision_engine.load(f"maskrcnn_resnet50_fpn_v2={tmp_path / 'missing.pth'}", CPU)
    with pytest.raises(SegassistError, match="not a maskrcnn_resnet50_fpn_v2 state dict"):
        torchvision_engine.load(f"maskrcnn_resnet50_fpn_v2={semantic}", CPU)
    hostile = tmp_path / "hostile.pth"
    torch.save({"model": _Exploit()}, hostile)
    with pytest.raises(SegassistError, match="not a loadable weight file"):
        torchvision_engine.load(f"deeplabv3_resnet50={hostile}", CPU)
    with pytest.raises(SegassistError, match="unknown torchvision architecture 'yolo'"):
        torchvision_engine.load("yolo", CPU)
    with pytest.raises(SegassistError, match="two instance architectures"):
        torchvision_engine.load(f"maskrcnn_resnet50_fpn_v2={instance},maskrcnn_resnet50_fpn={instance}", CPU)


def test_without_a_path_weights_come_from_the_torch_hub_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(SegassistError, match="segassist weights download") as caught:
        load_engine("torchvision", "lraspp_mobilenet_v3_large", CPU)
    cached = tmp_path / "checkpoints" / "lraspp_mobilenet_v3_large-d234d4ea.pth"
    assert str(cached) in str(caught.value)
    cached.parent.mkdir()
    torch.save(
        segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict(), cached
    )
    assert load_engine("torchvision", "lraspp_mobilenet_v3_large", CPU).categories[0].name == "aeroplane"


def test_out_of_memory_halves_the_batch_and_keeps_order() -> None:
    calls = []

    def run(chunk):
        calls.append(list(chunk))
        if len(chunk) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return [item * 10 for item in chunk]

    assert split_on_oom(run, [1, 2, 3, 4, 5]) == [10, 20, 30, 40, 50]
    assert calls == [[1, 2, 3, 4, 5], [1, 2], [3, 4, 5], [3], [4, 5]]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        split_on_oom(lambda chunk: run([0, 0, 0]), [1])


def test_device_names() -> None:
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == CPU
    with pytest.raises(SegassistError, match="unsupported device"):
        resolve_device("meta")
    with pytest.raises(SegassistError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(SegassistError, match="CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.parametrize("arch", list(torchvision_engine.ARCHITECTURES))
def test_every_architecture_loads_every_tensor_from_its_weights(tmp_path, arch) -> None:
    # The model is built on the meta device: a tensor its weights do not hold would stay there.
    torch.manual_seed(0)
    built = torchvision_engine.ARCHITECTURES[arch].build(weights=None, weights_backbone=None, num_classes=3)
    path = tmp_path / f"{arch}.pth"
    torch.save(built.state_dict(), path)
    loaded = torchvision_engine._load_model(arch, str(path), CPU, {}).module
    tensors = dict(loaded.named_parameters()) | dict(loaded.named_buffers())
    assert tensors and not [name for name, tensor in tensors.items() if tensor.device.type != "cpu"]
    expected = dict(built.named_parameters()) | dict(built.named_buffers())
    assert tensors.keys() <= expected.keys()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in tensors.items())


def test_half_precision_weights_load_as_float32_and_predict(tmp_path) -> None:
    built = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    path = tmp_path / "half.pth"
    torch.save(built.half().state_dict(), path)
    loaded = torchvision_engine.load(f"lraspp_mobilenet_v3_large={path}", CPU, semantic_size=32)
    assert {p.dtype for p in loaded._semantic.module.parameters()} == {torch.float32}
    assert len(loaded.predict([sample_image()], "semantic")) == 1
