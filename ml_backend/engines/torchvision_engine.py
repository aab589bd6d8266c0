"""torchvision engine: Mask R-CNN for instances, DeepLabV3 / FCN / LRASPP for semantic maps, both together
for panoptic output: the instances from the fusion score threshold up and the stuff classes, which the
service's one exclusivity step fuses with detectron2's rule (`panoptic_rule`).

`--model` is a comma-separated list of at most one instance and one semantic architecture, each optionally
`=PATH` to a weight file (a state dict); without a path the weights come from torch's hub cache
(`segassist weights download ARCH` puts them there). The class count is read from the weights; class names
come from torchvision's metadata when the count matches, else from a JSON list beside the weights
(`mrcnn.pth` -> `mrcnn.json`), else `class_N`.

Everything after the forward pass stays on the device: masks are pasted only into their box (never a full-size
array per detection), thresholded and argmaxed there; only final masks are copied to the CPU.

On a GPU the images of a call go through the model as one batch. On the CPU, where a batch is no cheaper per
image than single images, each image has a forward of its own, and the forwards run side by side in worker
threads that split the intra-op threads between them (`CpuWorkers`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import WeightsEnum, detection, segmentation
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks
from torchvision.models.detection.transform import resize_boxes

from converters import Category, Segment
from converters.errors import SegassistError
from converters.formats.label_map import masks_from_label_map
from ml_backend.engines.base import Engine, PanopticRule
from ml_backend.engines.torch_utils import (
    CpuWorkers,
    crops_to_masks,
    inference,
    load_state_dict,
    split_on_oom,
    to_tensor_images,
    weights_path,
)

DEFAULT_MODEL = "maskrcnn_resnet50_fpn_v2,deeplabv3_resnet50"
# Names torchvision gives classes that are never real predictions.
NOT_A_CLASS = ("__background__", "N/A")
# Mask R-CNN constructor options `load` passes through (input size, proposal and detection counts).
DETECTOR_OPTIONS = (
    "min_size",
    "max_size",
    "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_test",
    "box_detections_per_img",
    "box_score_thresh",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Side-by-side CPU forwards when there are intra-op threads to split (why: CpuWorkers).
CPU_WORKERS = 2


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., torch.nn.Module]
    weights: WeightsEnum
    # State-dict key whose first dimension is the number of classes.
    classes_key: str


INSTANCE_ARCHITECTURES = {
    "maskrcnn_resnet50_fpn_v2": Architecture(
        detection.maskrcnn_resnet50_fpn_v2,
        detection.MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
        "roi_heads.box_predictor.cls_score.weight",
    ),
    "maskrcnn_resnet50_fpn": Architecture(
        detection.maskrcnn_resnet50_fpn,
        detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
        "roi_heads.box_predictor.cls_score.weight",
    ),
}
SEMANTIC_ARCHITECTURES = {
    "deeplabv3_resnet50": Architecture(
        segmentation.deeplabv3_resnet50,
        segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
        "classifier.4.weight",
    ),
    "deeplabv3_resnet101": Architecture(
        segmentation.deeplabv3_resnet101,
        segmentation.DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1,
        "classifier.4.weight",
    ),
    "deeplabv3_mobilenet_v3_large": Architecture(
        segmentation.deeplabv3_mobilenet_v3_large,
        segmentation.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
        "classifier.4.weight",
    ),
    "fcn_resnet50": Architecture(
        segmentation.fcn_resnet50,
        segmentation.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
        "classifier.4.weight",
    ),
    "fcn_resnet101": Architecture(
        segmentation.fcn_resnet101,
        segmentation.FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1,
        "classifier.4.weight",
    ),
    "lraspp_mobilenet_v3_large": Architecture(
        segmentation.lraspp_mobilenet_v3_large,
        segmentation.LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
        "classifier.low_classifier.weight",
    ),
}
ARCHITECTURES = INSTANCE_ARCHITECTURES | SEMANTIC_ARCHITECTURES


@dataclass
class LoadedModel:
    arch: str
    module: torch.nn.Module
    class_names: list[str]
    digest: str


class TorchvisionEngine(Engine):
    def __init__(
        self,
        *,
        instance: LoadedModel | None,
        semantic: LoadedModel | None,
        device: torch.device,
        semantic_size: int = 520,
        mask_threshold: float = 0.5,
        fusion_score_threshold: float = 0.5,
        fusion_overlap_threshold: float = 0.5,
        stuff_area_threshold: int = 4096,
        cpu_workers: int = 0,
    ) -> None:
        """`cpu_workers`: forwards run side by side on the CPU, sharing torch's intra-op threads
        (0: CPU_WORKERS, at most one per intra-op thread)."""
        if instance is None and semantic is None:
            raise SegassistError("the torchvision engine needs an instance or a semantic model")
        self.device = device
        self._instance = instance
        self._semantic = semantic
        self._semantic_size = semantic_size
        self._mask_threshold = mask_threshold
        # detectron2's combine_semantic_and_instance_outputs, with its defaults: instances in score order from
        # `fusion_score_threshold` up, each dropped when more than `fusion_overlap_threshold` of it is taken,
        # then each stuff class on the pixels left if it covers `stuff_area_threshold`.
        self._fusion_score_threshold = fusion_score_threshold
        self.panoptic_rule = PanopticRule(
            min_kept_fraction=1 - fusion_overlap_threshold, stuff_min_area=stuff_area_threshold
        )
        models = [m for m in (instance, semantic) if m is not None]
        self.model_version = "torchvision-" + "+".join(f"{m.arch}@{m.digest}" for m in models)
        self.modes = tuple(
            mode
            for mode, present in (
                ("panoptic", instance is not None and semantic is not None),
                ("instance", instance is not None),
                ("semantic", semantic is not None),
            )
            if present
        )
        # Category ids: instance classes keep their index; semantic classes follow them (None: void class).
        offset = len(instance.class_names) if instance else 0
        self._stuff_categories = [
            None if name in NOT_A_CLASS else offset + index
            for index, name in enumerate(semantic.class_names if semantic else ())
        ]
        # In panoptic output a semantic class that the instance model also has is left to the instance model.
        thing_names = set(instance.class_names) if instance else set()
        self._fusion_stuff = [
            None if category_id is None or semantic.class_names[index] in thing_names else category_id
            for index, category_id in enumerate(self._stuff_categories)
        ]
        self.categories = [
            Category(id=index, name=name, isthing=True)
            for index, name in enumerate(instance.class_names if instance else ())
            if name not in NOT_A_CLASS
        ] + [
            Category(id=category_id, name=semantic.class_names[index], isthing=False)
            for index, category_id in enumerate(self._stuff_categories)
            if category_id is not None
        ]
        self._mean = torch.tensor(IMAGENET_MEAN, device=device)[:, None, None]
        self._std = torch.tensor(IMAGENET_STD, device=device)[:, None, None]
        self.cpu_pool: CpuWorkers | None = None
        if device.type == "cpu":
            threads = torch.get_num_threads()
            workers = cpu_workers or min(CPU_WORKERS, threads)
            if workers > 1:
                self.cpu_pool = CpuWorkers(workers, max(1, threads // workers))

    def predict(self, images: Sequence[np.ndarray], mode: str) -> list[list[Segment]]:
        self._check_mode(mode)
        if self.device.type == "cpu":
            return list(self._predict_on_cpu(images, mode))
        return split_on_oom(lambda chunk: self._predict(chunk, mode), images)

    def predict_each(
        self, images: Iterable[np.ndarray], mode: str, batch_size: int
    ) -> Iterator[list[Segment]]:
        if self.device.type != "cpu":
            yield from super().predict_each(images, mode, batch_size)
            return
        self._check_mode(mode)
        yield from self._predict_on_cpu(images, mode)

    def _check_mode(self, mode: str) -> None:
        if mode not in self.modes:
            raise SegassistError(
                f"the torchvision engine ({self.model_version}) cannot do {mode}; it does {self.modes}"
            )

    def _predict_on_cpu(self, images: Iterable[np.ndarray], mode: str) -> Iterator[list[Segment]]:
        """A forward per image, side by side in the CPU workers when there are two images or more: the whole
        request is one queue, so a worker never waits for a slower neighbour. A single image runs in the
        calling thread, on every intra-op thread."""

        def predict_one(image: np.ndarray) -> list[Segment]:
            return self._predict([image], mode)[0]

        remaining = iter(images)
        first = list(itertools.islice(remaining, 2))
        images = itertools.chain(first, remaining)
        if self.cpu_pool is None or len(first) < 2:
            return map(predict_one, images)
        return self.cpu_pool.imap(predict_one, images)

    def _predict(self, images: Sequence[np.ndarray], mode: str) -> list[list[Segment]]:
        with inference(self.device):
            batch = to_tensor_images(images, self.device)
            if mode == "instance":
                return [
                    self._instances(*pasted, image)
                    for pasted, image in zip(self._detect(batch), batch, strict=True)
                ]
            if mode == "semantic":
                return [
                    self._semantic_segments(*result, self._stuff_categories)
                    for result in self._segment(batch)
                ]
            return [
                [
                    segment
                    for segment in self._instances(*pasted, image)
                    if segment.score >= self._fusion_score_threshold
                ]
                + self._semantic_segments(*semantic, self._fusion_stuff)
                for pasted, semantic, image in zip(
                    self._detect(batch), self._segment(batch), batch, strict=True
                )
            ]

    # -- instance model --------------------------------------------------------------------------------------

    def _detect(self, batch: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, list, list]]:
        """Per image: scores, labels, bool mask crops and their (top, left) origins, in score order."""
        model = self._instance.module
        original_sizes = [tuple(image.shape[-2:]) for image in batch]
        images, _ = model.transform(batch)
        features = model.backbone(images.tensors)
        proposals, _ = model.rpn(images, features)
        detections, _ = model.roi_heads(features, proposals, images.image_sizes)
        out = []
        for found, resized, original in zip(detections, images.image_sizes, original_sizes, strict=True):
            boxes = resize_boxes(found["boxes"].float(), resized, original)
            crops, origins = self._paste(found["masks"].float(), boxes, *original)
            out.append((found["scores"].float(), found["labels"], crops, origins))
        return out

    def _paste(
        self, masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int
    ) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """torchvision's paste_masks_in_image, but each mask only into its own box, then thresholded."""
        padded, scale = expand_masks(masks, padding=1)
        crops, origins = [], []
        for mask, (x0, y0, x1, y1) in zip(
            padded, expand_boxes(boxes, scale).to(torch.int64).tolist(), strict=True
        ):
            box_w, box_h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
            resized = F.interpolate(mask[None], size=(box_h, box_w), mode="bilinear", align_corners=False)[
                0, 0
            ]
            top, left = max(y0, 0), max(x0, 0)
            bottom, right = max(min(y1 + 1, height), top), max(min(x1 + 1, width), left)
            crops.append(resized[top - y0 : bottom - y0, left - x0 : right - x0] > self._mask_threshold)
            origins.append((top, left))
        return crops, origins

    def _instances(self, scores, labels, crops, origins, image: torch.Tensor) -> list[Segment]:
        height, width = image.shape[-2:]
        masks = crops_to_masks(crops, origins, height, width)
        return [
            Segment(mask=mask, category_id=label, score=score)
            for mask, label, score in zip(masks, labels.tolist(), scores.tolist(), strict=True)
            if not mask.is_empty
        ]

    # -- semantic model --------------------------------------------------------------------------------------

    def _segment(self, batch: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image: the class map (H, W) and the winning class's probability (H, W), at full resolution."""
        resized = []
        for image in batch:
            # torchvision's SemanticSegmentation preset: the short side to semantic_size, antialiased, on the
            # uint8 image, so the result is rounded to whole levels (resizing the float image instead
            # shifts inputs by up to 0.009 after normalisation and flips labels along class borders).
            height, width = image.shape[-2:]
            short, long = sorted((height, width))
            scaled = (self._semantic_size, int(self._semantic_size * long / short))
            size = scaled if height <= width else scaled[::-1]
            levels = (image[None] * 255).round_()
            small = F.interpolate(levels, size, mode="bilinear", align_corners=False, antialias=True)
            resized.append((small[0].round_().clamp_(0, 255) / 255 - self._mean) / self._std)
        # Pad to one batch (bottom/right), as torchvision's detection transform does.
        rows, cols = max(r.shape[1] for r in resized), max(r.shape[2] for r in resized)
        padded = resized[0].new_zeros((len(resized), 3, rows, cols))
        for index, image in enumerate(resized):
            padded[index, :, : image.shape[1], : image.shape[2]] = image
        logits = self._semantic.module(padded)["out"]
        out = []
        for index, (image, small) in enumerate(zip(batch, resized, strict=True)):
            crop = logits[index : index + 1, :, : small.shape[1], : small.shape[2]].float()
            full = F.interpolate(crop, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
            probability, labels = full.softmax(dim=1)[0].max(dim=0)
            out.append((labels, probability))
        return out

    def _semantic_segments(
        self, labels: torch.Tensor, probability: torch.Tensor, categories: Sequence[int | None]
    ) -> list[Segment]:
        """A segment per class present, scored by its mean probability; `categories[c]` is the category id of
        semantic class c, None for classes left out."""
        classes = len(categories)
        flat = labels.reshape(-1)
        counts = torch.bincount(flat, minlength=classes)
        sums = torch.bincount(flat, weights=probability.reshape(-1), minlength=classes)
        mean_probability = (sums / counts.clamp(min=1)).tolist()
        masks = masks_from_label_map(labels.to(torch.int32).cpu().numpy(), void=None)
        return [
            Segment(mask=mask, category_id=categories[label], score=mean_probability[label])
            for label, mask in sorted(masks.items())
            if categories[label] is not None
        ]


# -- loading -------------------------------------------------------------------------------------------------


def load_default(device: torch.device) -> TorchvisionEngine:
    return load(DEFAULT_MODEL, device)


def load(model: str, device: torch.device, **options: object) -> TorchvisionEngine:
    """Build the engine from `--model` ("ARCH[=PATH][,ARCH[=PATH]]"). `options`: DETECTOR_OPTIONS for
    Mask R-CNN, else TorchvisionEngine keywords (thresholds, semantic_size); tests use them for speed."""
    instance = semantic = None
    detector_options = {key: options.pop(key) for key in DETECTOR_OPTIONS if key in options}
    for item in filter(None, (part.strip() for part in model.split(","))):
        arch, _, path = item.partition("=")
        if arch not in ARCHITECTURES:
            raise SegassistError(
                f"unknown torchvision architecture {arch!r} in --model {model!r}; "
                f"known: {', '.join(ARCHITECTURES)} (give a weight file as ARCH=PATH)"
            )
        if arch in INSTANCE_ARCHITECTURES:
            if instance is not None:
                raise SegassistError(f"--model {model!r} names two instance architectures")
            instance = _load_model(arch, path or None, device, detector_options)
        else:
            if semantic is not None:
                raise SegassistError(f"--model {model!r} names two semantic architectures")
            semantic = _load_model(arch, path or None, device, {})
    return TorchvisionEngine(instance=instance, semantic=semantic, device=device, **options)


def _load_model(arch: str, path: str | None, device: torch.device, build_options: dict) -> LoadedModel:
    spec = ARCHITECTURES[arch]
    file = weights_path(path, spec.weights.url)
    state, digest = load_state_dict(file)
    if spec.classes_key not in state:
        raise SegassistError(
            f"the weights are not a {arch} state dict (no {spec.classes_key})", file=str(file)
        )
    num_classes = int(state[spec.classes_key].shape[0])
    if arch in SEMANTIC_ARCHITECTURES and any(key.startswith("aux_classifier.") for key in state):
        # The auxiliary head only helps training: drop it instead of running it.
        state = {key: value for key, value in state.items() if not key.startswith("aux_classifier.")}
    # Built on the meta device and given the file's tensors: no random initialisation that the weights then
    # overwrite (0.05-0.3 s of each start, with Mask R-CNN v2 the most). Every tensor of these architectures
    # is in their state dicts, so none stays on the meta device (checked by the tests for each one). Assigned
    # tensors keep their dtype: half-precision files are made float32, as copying into the model made them.
    with torch.device("meta"):
        module = spec.build(weights=None, weights_backbone=None, num_classes=num_classes, **build_options)
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    try:
        module.load_state_dict(state, assign=True)
    except RuntimeError as error:
        raise SegassistError(
            f"the weights do not fit {arch}: {str(error).splitlines()[0]}", file=str(file)
        ) from None
    # Channels-last: oneDNN's and cuDNN's preferred convolution layout, sparing a layout reorder around every
    # convolution (a faster CPU forward: benchmarks/backend.py, figures in BENCHMARKS.md).
    module.eval().to(device, memory_format=torch.channels_last)
    return LoadedModel(
        arch=arch, module=module, class_names=_class_names(spec, file, num_classes), digest=digest
    )


def _class_names(spec: Architecture, file: Path, num_classes: int) -> list[str]:
    beside = file.with_suffix(".json")
    if beside.is_file():
        try:
            names = json.loads(beside.read_text())
        except ValueError as error:
            raise SegassistError(f"class names do not parse: {error}", file=str(beside)) from None
        if not (
            isinstance(names, list) and len(names) == num_classes and all(isinstance(n, str) for n in names)
        ):
            raise SegassistError(f"expected a JSON list of {num_classes} class names", file=str(beside))
        return names
    known = list(spec.weights.meta["categories"])
    return known if len(known) == num_classes else [f"class_{index}" for index in range(num_classes)]
