"""SAM 2 image models (PyPI `sam2`, the optional `sam2` extra) behind the same interface as the SAM engine.

Clicks and boxes go straight to `SAM2ImagePredictor`; automatic mode is `SAM2AutomaticMaskGenerator`. Image
embeddings share the SAM engine's cache. SAM2ImagePredictor keeps one image's features on itself, so each
prompt gets a fresh predictor (cheap: no weights are copied) whose features come from the cache; that is the
one place this module sets the predictor's private attributes, the same ones its own `set_image` sets.

Install: `pip install hydra-core iopath`, then `SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps
sam2` (PyPI has only its source; an isolated build would install a second torch to build it). The CUDA
extension it then lacks serves only the optional mask clean-up, which the image predictor leaves off.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2.build_sam import build_sam2
from sam2.modeling.sam2_base import SAM2Base
from sam2.sam2_image_predictor import SAM2ImagePredictor

from converters import Category, Mask, Segment
from converters.errors import SegassistError
from ml_backend.engines.base import InteractiveEngine, Prompt
from ml_backend.engines.sam import (
    Embedding,
    EmbeddingCache,
    cache_budget_bytes,
    check_image,
    check_prompt,
    proposal_segments,
)
from ml_backend.engines.torch_utils import inference, load_state_dict, weights_path

# Model names as `--model NAME:/path/checkpoint.pt`, each with its config inside the sam2 package.
CONFIGS = {
    f"{generation}_hiera_{size}": f"configs/{generation}/{generation}_hiera_{size}.yaml"
    for generation in ("sam2", "sam2.1")
    for size in ("t", "s", "b+", "l")
}


class Sam2Engine(InteractiveEngine):
    """Interactive prompts and automatic proposals from one SAM 2 image model."""

    modes = ("instance",)

    def __init__(
        self,
        model: SAM2Base,
        *,
        name: str,
        device: torch.device,
        proposal_label: str = "object",
        non_overlapping: bool = False,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.model_version = f"sam2-{name}"
        self.categories = [Category(id=1, name=proposal_label, isthing=True)]
        self.non_overlapping = non_overlapping
        self.cache = cache if cache is not None else EmbeddingCache(cache_budget_bytes())

    def embedding(self, image: np.ndarray, image_key: str) -> Embedding:
        """The image's features, from the cache when this model has seen `image_key` before."""
        check_image(image)
        return self.cache.get((image_key, self.model_version), lambda: self._embed(image))

    def _embed(self, image: np.ndarray) -> Embedding:
        predictor = SAM2ImagePredictor(self.model)
        with inference(self.device):
            predictor.set_image(image)
        features = predictor._features
        side = self.model.image_size
        return Embedding(
            features["image_embed"].float(),
            (side, side),
            tuple(image.shape[:2]),
            tuple(level.float() for level in features["high_res_feats"]),
        )

    def segment_prompt(self, image: np.ndarray, image_key: str, prompt: Prompt) -> tuple[Mask, float]:
        """The mask for clicks and/or a box in image pixels, with SAM 2's predicted IoU."""
        check_prompt(prompt)
        embedding = self.embedding(image, image_key)
        predictor = SAM2ImagePredictor(self.model)
        predictor._features = {
            "image_embed": embedding.features,
            "high_res_feats": list(embedding.high_res_features),
        }
        predictor._orig_hw = [embedding.original_size]
        predictor._is_image_set = True
        # One click is ambiguous (part or whole): SAM 2 offers three masks and the best is kept.
        multimask = prompt.box is None and len(prompt.points) == 1
        with inference(self.device):
            masks, scores, _ = predictor.predict(
                point_coords=np.asarray(prompt.points, dtype=np.float32) if prompt.points else None,
                point_labels=np.asarray(prompt.point_labels, dtype=np.int32) if prompt.points else None,
                box=np.asarray(prompt.box, dtype=np.float32) if prompt.box is not None else None,
                multimask_output=multimask,
            )
        best = int(np.argmax(scores))
        return Mask.from_dense(masks[best] > 0), float(scores[best])

    def predict(self, images: Sequence[np.ndarray], mode: str) -> list[list[Segment]]:
        """Class-agnostic proposals per image, all under the engine's one category."""
        if mode not in self.modes:
            raise SegassistError(f"the SAM 2 engine makes instance proposals only, not {mode!r}")
        generator = SAM2AutomaticMaskGenerator(self.model, output_mode="binary_mask")
        results = []
        for image in images:
            check_image(image)
            with inference(self.device):
                records = generator.generate(image)
            masks = [(Mask.from_dense(record["segmentation"]), record["predicted_iou"]) for record in records]
            results.append(proposal_segments(masks, self.categories, self.non_overlapping))
        return results


def load_checkpoint(config: str, path: str | Path, device: torch.device, **settings: object) -> Sam2Engine:
    """A SAM 2 model by config name (a key of CONFIGS) with its weights from `path`."""
    if config not in CONFIGS:
        raise SegassistError(f"unknown SAM 2 model {config!r}; choose one of {', '.join(CONFIGS)}")
    path = weights_path(str(path), "")
    state, digest = load_state_dict(path)
    model = build_sam2(CONFIGS[config], ckpt_path=None, device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise SegassistError(f"not a {config} checkpoint: {error}", file=str(path)) from None
    return Sam2Engine(model, name=f"{config}-{digest}", device=device, **settings)
