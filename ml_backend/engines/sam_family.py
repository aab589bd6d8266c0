"""What the SAM-family engines share: image embeddings and their cache, the engine base, checks and loading.

`sam` (segment-anything and the embedded LiteMedSAM) and `sam2_engine` (SAM 2) each import this module and
not each other; `registry` picks which of the two loads a `--model` spec.

Image embeddings are cached per (image key, model) in an LRU bounded by a memory budget, with one lock per key
so concurrent prompts on a new image compute its embedding once.
"""

from __future__ import annotations

import abc
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from converters import Category, Mask, Segment
from converters.errors import SegassistError
from converters.overlap import resolve
from ml_backend.engines.base import InteractiveEngine, Prompt
from ml_backend.engines.torch_utils import inference

# Embedding cache budget in MiB when none is given (the backend passes its SEGASSIST_SAM_CACHE_MB setting);
# one embedding (256 x 64 x 64 float32) is 4 MiB (SAM 2: 16 MiB with its high-resolution feature maps).
DEFAULT_CACHE_MB = 256.0


@dataclass(frozen=True)
class Embedding:
    """One image's encoder output and the sizes needed to map prompts in and masks out."""

    features: torch.Tensor
    input_size: tuple[int, int]  # (h, w) of the resized image inside the model's square input
    original_size: tuple[int, int]  # (h, w) of the image as given
    # SAM 2's decoder also reads the encoder's higher-resolution feature maps.
    high_res_features: tuple[torch.Tensor, ...] = ()

    @property
    def nbytes(self) -> int:
        return sum(
            tensor.numel() * tensor.element_size() for tensor in (self.features, *self.high_res_features)
        )


class EmbeddingCache:
    """LRU of image embeddings bounded by total bytes; thread-safe, one computation per key at a time."""

    @classmethod
    def of_megabytes(cls, megabytes: float) -> EmbeddingCache:
        return cls(int(megabytes * 2**20))

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, str], Embedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str], compute: Callable[[], Embedding]) -> Embedding:
        """The cached embedding for `key`, computing it (once, even under concurrent calls) when missing."""
        with self._lock:
            found = self._lookup(key)
            if found is not None:
                return found
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                # Another thread may have computed it while this one waited for the key lock.
                found = self._lookup(key)
                if found is not None:
                    return found
                self.misses += 1
            try:
                embedding = compute()
                with self._lock:
                    self._store(key, embedding)
            finally:
                with self._lock:
                    self._key_locks.pop(key, None)
        return embedding

    def _lookup(self, key: tuple[str, str]) -> Embedding | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return found

    def _store(self, key: tuple[str, str], embedding: Embedding) -> None:
        self._entries[key] = embedding
        self._bytes += embedding.nbytes
        while self._bytes > self.budget_bytes and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes


class SamFamilyEngine(InteractiveEngine):
    """What every SAM-family engine shares: cached image embeddings, prompt and image checks, and automatic
    proposals as Segments of one class-agnostic category. Subclasses embed, decode and propose."""

    modes = ("instance",)
    #: The model family, as error messages name it.
    family = "SAM"

    def __init__(
        self,
        *,
        model_version: str,
        device: torch.device,
        proposal_label: str,
        non_overlapping: bool,
        cache: EmbeddingCache | None,
        min_proposal_iou: float,
        min_proposal_stability: float,
        proposal_nms_iou: float,
        proposal_points_per_side: int,
    ) -> None:
        """Automatic mode keeps masks of predicted IoU >= `min_proposal_iou` and stability score >=
        `min_proposal_stability`, suppresses those whose boxes overlap a better one by `proposal_nms_iou`, and
        prompts a grid of `proposal_points_per_side` squared points (the mask generators' own parameters)."""
        self.model_version = model_version
        self.device = device
        self.categories = [Category(id=1, name=proposal_label, isthing=True)]
        self.non_overlapping = non_overlapping
        self.cache = cache if cache is not None else EmbeddingCache.of_megabytes(DEFAULT_CACHE_MB)
        self.min_proposal_iou = min_proposal_iou
        self.min_proposal_stability = min_proposal_stability
        self.proposal_nms_iou = proposal_nms_iou
        self.proposal_points_per_side = proposal_points_per_side

    def embedding(self, image: np.ndarray, image_key: str) -> Embedding:
        """The image's embedding, from the cache when this model has seen `image_key` before."""
        check_image(image)
        return self.cache.get((image_key, self.model_version), lambda: self._embed(image))

    def segment_prompt(self, image: np.ndarray, image_key: str, prompt: Prompt) -> tuple[Mask, float]:
        """The mask for clicks and/or a box in image pixels, with the model's predicted IoU."""
        check_prompt(prompt)
        check_image(image)
        return self._segment(image, image_key, prompt)

    def predict(self, images: Sequence[np.ndarray], mode: str) -> list[list[Segment]]:
        """Class-agnostic proposals per image, all under the engine's one category."""
        if mode not in self.modes:
            raise SegassistError(f"the {self.family} engine makes instance proposals only, not {mode!r}")
        results = []
        for image in images:
            check_image(image)
            results.append(proposal_segments(self._proposals(image), self.categories, self.non_overlapping))
        return results

    @abc.abstractmethod
    def _embed(self, image: np.ndarray) -> Embedding:
        """Run the image encoder on one (checked) image."""

    @abc.abstractmethod
    def _segment(self, image: np.ndarray, image_key: str, prompt: Prompt) -> tuple[Mask, float]:
        """Answer one (checked) prompt on a (checked) image, its embeddings cached under `image_key`."""

    @abc.abstractmethod
    def _proposals(self, image: np.ndarray) -> list[tuple[Mask, float]]:
        """Automatic-mode masks of one (checked) image with their predicted IoU."""

    def _generated_masks(
        self, generator_class: Any, model: torch.nn.Module, image: np.ndarray
    ) -> list[tuple[Mask, float]]:
        """The masks and predicted IoUs of SAM's or SAM 2's automatic mask generator with this engine's
        proposal settings (both take the same parameter names)."""
        generator = generator_class(
            model,
            points_per_side=self.proposal_points_per_side,
            pred_iou_thresh=self.min_proposal_iou,
            stability_score_thresh=self.min_proposal_stability,
            box_nms_thresh=self.proposal_nms_iou,
            output_mode="binary_mask",
        )
        with inference(self.device):
            records = generator.generate(image)
        return [(Mask.from_dense(record["segmentation"]), record["predicted_iou"]) for record in records]


def proposal_segments(
    masks: Sequence[tuple[Mask, float]], categories: list[Category], non_overlapping: bool
) -> list[Segment]:
    """Automatic-mode masks with their predicted IoU as Segments of the one proposal category.

    `non_overlapping` makes them exclusive: a higher-scored proposal keeps contested pixels.
    """
    segments = [
        Segment(mask=mask, category_id=categories[0].id, score=float(score))
        for mask, score in masks
        if not mask.is_empty
    ]
    if non_overlapping:
        segments, _ = resolve(segments, "score", categories=categories)
    return segments


def content_key(image: np.ndarray) -> str:
    """An image identity from its pixels, for callers that have no URL or path (automatic mode)."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16)
    digest.update(repr(image.shape).encode())
    return f"pixels:{digest.hexdigest()}"


def check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SegassistError(
            f"the image must be an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}"
        )
    if min(image.shape[:2]) < 1:
        raise SegassistError(f"the image is empty: {image.shape[1]}x{image.shape[0]}")


def check_prompt(prompt: Prompt) -> None:
    if len(prompt.points) != len(prompt.point_labels):
        raise SegassistError(f"{len(prompt.points)} clicks but {len(prompt.point_labels)} click labels")
    if not prompt.points and prompt.box is None:
        raise SegassistError("the prompt has neither clicks nor a box")
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        if not (x1 > x0 and y1 > y0):
            raise SegassistError(f"the box {prompt.box} has no area")


# -- loading -------------------------------------------------------------------------------------------------


def is_sam2_spec(model: str) -> bool:
    """Whether a `--model` spec of the sam engine names a SAM 2 model ("sam2.1_hiera_t:/path/to/ckpt.pt")."""
    name, separator, _ = model.partition(":")
    return bool(separator) and name.startswith("sam2")


def load_exactly(model: torch.nn.Module, state: dict[str, torch.Tensor], kind: str, path: Path) -> None:
    """Load every weight of `state` into `model` (strict: no key missing or left over, every shape equal)."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise SegassistError(f"not a {kind} checkpoint: {error}", file=str(path)) from None
