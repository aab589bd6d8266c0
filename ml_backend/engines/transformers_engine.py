"""Hugging Face transformers engine: a Mask2Former or OneFormer universal segmentation model gives semantic,
instance and panoptic output from one model through the processor's post_process_* methods.

`--model` is a local folder written by `save_pretrained` (model and processor) or a hub id already in the
Hugging Face cache (`segassist weights download ORG/NAME`); nothing is downloaded at run time.

OneFormer is conditioned on the task: its processor tokenizes "the task is <mode>" (so the folder needs the
tokenizer files) and its class info file says which classes are things; stuff classes are then merged into
one panoptic segment per class. Mask2Former configs do not mark stuff classes: there every class is a thing.
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
SUPPORTED_TYPES = ("mask2former", "oneformer")


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
        # OneFormer's class info lists the things; Mask2Former has none, so there every class is a thing.
        metadata = getattr(getattr(processor, "image_processor", None), "metadata", None) or {}
        things = set(metadata.get("thing_ids", names))
        self.categories = [Category(id=i, name=names[i], isthing=i in things) for i in sorted(names)]
        self._stuff = {category.id for category in self.categories if not category.isthing}
        self._task_conditioned = model.config.model_type == "oneformer"
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
            task = {"task_inputs": [mode] * len(images)} if self._task_conditioned else {}
            inputs = self._processor(images=tensors, return_tensors="pt", device=self.device, **task)
            inputs = {key: value.to(self.device) for key, value in inputs.items()}
            outputs = self._model(**inputs)
            if mode == "semantic":
                maps = self._processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
                return [self._semantic_segments(label_map) for label_map in maps]
            if mode == "instance":
                # OneFormer's post-processing keeps only things when told the task was panoptic.
                task_type = {"task_type": "instance"} if self._task_conditioned else {}
                results = self._processor.post_process_instance_segmentation(
                    outputs,
                    threshold=self._threshold,
                    overlap_mask_area_threshold=self._overlap_threshold,
                    target_sizes=sizes,
                    **task_type,
                )
            else:
                # Stuff is merged here, not by label_ids_to_fuse: after reusing a fused id, transformers
                # numbers the next segment from that id and can give it a thing's id.
                results = self._processor.post_process_panoptic_segmentation(
                    outputs,
                    threshold=self._threshold,
                    overlap_mask_area_threshold=self._overlap_threshold,
                    label_ids_to_fuse=set(),
                    target_sizes=sizes,
                )
                return [self._merge_stuff(self._segments(result)) for result in results]
        return [self._segments(result) for result in results]

    @staticmethod
    def _semantic_segments(label_map: torch.Tensor) -> list[Segment]:
        masks = masks_from_label_map(label_map.to(torch.int32).cpu().numpy(), void=None)
        return [Segment(mask=mask, category_id=label) for label, mask in sorted(masks.items())]

    def _merge_stuff(self, segments: list[Segment]) -> list[Segment]:
        """One segment per stuff class, at its first segment's place."""
        by_class: dict[int, list[Segment]] = {}
        for segment in segments:
            if segment.category_id in self._stuff:
                by_class.setdefault(segment.category_id, []).append(segment)
        merged = []
        for segment in segments:
            parts = by_class.get(segment.category_id)
            if parts is None:
                merged.append(segment)
            elif parts[0] is segment:
                merged.append(Segment.union(parts))
        return merged

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
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoModelForUniversalSegmentation,
            AutoProcessor,
        )
    except ImportError:
        raise SegassistError("the transformers engine needs: pip install 'segassist[transformers]'") from None
    try:
        config = AutoConfig.from_pretrained(model, local_files_only=True)
        if config.model_type not in SUPPORTED_TYPES:
            raise SegassistError(
                f"{model} is a {config.model_type} model; "
                f"the transformers engine runs {', '.join(SUPPORTED_TYPES)}"
            )
        if config.model_type == "oneformer":
            processor = AutoProcessor.from_pretrained(model, local_files_only=True)
            if getattr(processor.image_processor, "metadata", None) is None:
                raise SegassistError(
                    f"{model}: OneFormer's processor config names no class_info_file "
                    "(which classes are things); add it to the processor config",
                    file=model,
                )
        else:
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
