"""SAM 2 image models (PyPI `sam2`, the optional `sam2` extra) behind the same interface as the SAM engine.

Clicks and boxes go straight to `SAM2ImagePredictor`; automatic mode is `SAM2AutomaticMaskGenerator`. Image
embeddings live in the SAM family's cache (`sam_family`). SAM2ImagePredictor keeps one image's features on
itself, so each prompt gets a fresh predictor (cheap: no weights are copied) whose features come from the
cache; that is the one place this module sets the predictor's private attributes, the same ones its own
`set_image` sets.

Install: `pip install hydra-core iopath`, then `SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps
sam2` (PyPI has only its source; an isolated build would install a second torch to build it). The CUDA
extension it then lacks serves only the optional mask clean-up, which the image predictor leaves off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2.build_sam import build_sam2
from sam2.modeling.sam2_base import SAM2Base
from sam2.sam2_image_predictor import SAM2ImagePredictor

from converters import Mask
from converters.errors import SegassistError
from ml_backend.engines.base import Prompt
from ml_backend.engines.sam_family import Embedding, EmbeddingCache, SamFamilyEngine, load_exactly
from ml_backend.engines.torch_utils import inference, load_state_dict, weights_path

# Model names as `--model NAME:/path/checkpoint.pt`, each with its config inside the sam2 package.
CONFIGS = {
    f"{generation}_hiera_{size}": f"configs/{generation}/{generation}_hiera_{size}.yaml"
    for generation in ("sam2", "sam2.1")
    for size in ("t", "s", "b+", "l")
}


class Sam2Engine(SamFamilyEngine):
    """Interactive prompts and automatic proposals from one SAM 2 image model."""

    family = "SAM 2"

    def __init__(
        self,
        model: SAM2Base,
        *,
        name: str,
        device: torch.device,
        proposal_label: str = "object",
        non_overlapping: bool = False,
        cache: EmbeddingCache | None = None,
        min_proposal_iou: float = 0.8,
        min_proposal_stability: float = 0.95,
        proposal_nms_iou: float = 0.7,
        proposal_points_per_side: int = 32,
    ) -> None:
        """The proposal thresholds default to SAM2AutomaticMaskGenerator's own."""
        super().__init__(
            model_version=f"sam2-{name}",
            device=device,
            proposal_label=proposal_label,
            non_overlapping=non_overlapping,
            cache=cache,
            min_proposal_iou=min_proposal_iou,
            min_proposal_stability=min_proposal_stability,
            proposal_nms_iou=proposal_nms_iou,
            proposal_points_per_side=proposal_points_per_side,
        )
        self.model = model.to(device).eval()

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

    def _segment(self, image: np.ndarray, image_key: str, prompt: Prompt) -> tuple[Mask, float]:
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

    def _proposals(self, image: np.ndarray) -> list[tuple[Mask, float]]:
        return self._generated_masks(SAM2AutomaticMaskGenerator, self.model, image)


def load(model: str, device: torch.device, **settings: object) -> Sam2Engine:
    """An engine from a `--model` spec "sam2.1_hiera_t:/path/to/checkpoint.pt" (config name, then weights)."""
    config, _, path = model.partition(":")
    return load_checkpoint(config, path, device, **settings)


def load_checkpoint(config: str, path: str | Path, device: torch.device, **settings: object) -> Sam2Engine:
    """A SAM 2 model by config name (a key of CONFIGS) with its weights from `path`."""
    if config not in CONFIGS:
        raise SegassistError(f"unknown SAM 2 model {config!r}; choose one of {', '.join(CONFIGS)}")
    path = weights_path(str(path), "")
    state, digest = load_state_dict(path)
    model = build_sam2(CONFIGS[config], ckpt_path=None, device="cpu")
    load_exactly(model, state, config, path)
    return Sam2Engine(model, name=f"{config}-{digest}", device=device, **settings)
