"""Hugging Face transformers engine: a Mask2Former universal segmentation model gives semantic, instance and
panoptic output from one model through the image processor's post_process_* methods. (OneFormer also needs a
text tokenizer for its task token; it is not supported yet.)

`--model` is a local folder written by `save_pretrained` (model and image processor) or a hub id already in
the Hugging Face cache (`segassist weights download ORG/NAME`); nothing is downloaded at run time. Model
configs do not mark stuff classes, so every class is a thing (panoptic stuff is not merged per class).
Pre-processing, the forward and post-processing run on the device; only the final segment-id maps come back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from converters import Category, Segment
from converters.errors import SegassistError
from converters.formats.label_map import masks_from_label_map
from ml_backend.engines.base import Engine
from ml_backend.engines.torch_utils import inference, split_on_oom

DEFAULT_MODEL = "facebook/mask2former-swin-tiny-coco-panoptic"
SUPPORTED_TYPES = ("mask2former",)


class TransformersEngine(Engine):
    modes = ("panoptic", "instance", "semantic")

    def __init__(
        self,
        model: torch.nn.Module,
        processor: object,
        name: str,
        device: torch.device,
        threshold: float = 0.5,
        overlap_threshold: float = 0.8,
    ) -> None:
        self.device = device
        # transformers' defaults: the query score below which segments are dropped, and the fraction of a
        # query's mask that must survive the per-pixel argmax for it to stay a segment.
        self._threshold = threshold
        self._overlap_threshold = overlap_threshold
        self._model = model
        self._processor = processor
        names = {int(index): str(label) for index, label in model.config.id2label.items()}
        # Model configs do not say which classes are stuff: every class is a thing, none is fused.
        self.categories = [Category(id=i, name=names[i], isthing=True) for i in sorted(names)]
        revision = getattr(model.config, "_commit_hash", None) or "local"
        self.model_version = f"transformers-{name.rstrip('/').split('/')[-1]}@{str(revision)[:10]}"

    def predict(self, images: Sequence[np.ndarray], mode: str) -> list[list[Segment]]:
        if mode not in self.modes:
            raise SegassistError(f"unknown mode {mode!r}")
        return split_on_oom(lambda chunk: self._predict(chunk, mode), images)

    def _predict(self, images: Sequence[np.ndarray], mode: str) -> list[list[Segment]]:
        sizes = [image.shape[:2] for image in images]
        with inference(self.device):
            # uint8 (3, H, W) on the device: the processor resizes and normalises there.
            tensors = [torch.from_numpy(image).to(self.device).permute(2, 0, 1) for image in images]
            inputs = self._processor(images=tensors, return_tensors="pt", device=self.device)
            inputs = {key: value.to(self.device) for key, value in inputs.items()}
            outputs = self._model(**inputs)
            if mode == "semantic":
                maps = self._processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
                return [self._semantic_segments(label_map) for label_map in maps]
            if mode == "instance":
                results = self._processor.post_process_instance_segmentation(
                    outputs,
                    threshold=self._threshold,
                    overlap_mask_area_threshold=self._overlap_threshold,
                    target_sizes=sizes,
                )
            else:
                results = self._processor.post_process_panoptic_segmentation(
                    outputs,
                    threshold=self._threshold,
                    overlap_mask_area_threshold=self._overlap_threshold,
                    label_ids_to_fuse=set(),
                    target_sizes=sizes,
                )
        return [self._segments(result) for result in results]

    @staticmethod
    def _semantic_segments(label_map: torch.Tensor) -> list[Segment]:
        masks = masks_from_label_map(label_map.to(torch.int32).cpu().numpy(), void=None)
        return [Segment(mask=mask, category_id=label) for label, mask in sorted(masks.items())]

    @staticmethod
    def _segments(result: dict) -> list[Segment]:
        """Segments from a segment-id map and its segments_info (ids absent from the map have no pixels)."""
        masks = masks_from_label_map(result["segmentation"].to(torch.int32).cpu().numpy(), void=None)
        return [
            Segment(mask=masks[info["id"]], category_id=int(info["label_id"]), score=float(info["score"]))
            for info in result["segments_info"]
            if info["id"] in masks
        ]


def load_default(device: torch.device) -> TransformersEngine:
    return load(DEFAULT_MODEL, device)


def load(model: str, device: torch.device, **options: object) -> TransformersEngine:
    """The engine from a save_pretrained folder or a cached hub id; `options` go to TransformersEngine."""
    try:
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForUniversalSegmentation
    except ImportError:
        raise SegassistError("the transformers engine needs: pip install 'segassist[transformers]'") from None
    try:
        config = AutoConfig.from_pretrained(model, local_files_only=True)
        if config.model_type not in SUPPORTED_TYPES:
            raise SegassistError(
                f"{model} is a {config.model_type} model; "
                f"the transformers engine runs {', '.join(SUPPORTED_TYPES)}"
            )
        processor = AutoImageProcessor.from_pretrained(model, local_files_only=True)
        # transformers' own loader reads safetensors (no pickled code) or refuses unsafe .bin files.
        network = AutoModelForUniversalSegmentation.from_pretrained(model, local_files_only=True)
    except OSError as error:
        raise SegassistError(
            f"cannot load transformers model {model!r} offline: {str(error).splitlines()[0]} "
            f"(give a save_pretrained folder, or run `segassist weights download {model}` with internet)",
            file=model,
        ) from None
    return TransformersEngine(network.eval().to(device), processor, model, device, **options)
