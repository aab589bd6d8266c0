"""SAM checkpoints from a path: a random-weight vit_b from segment-anything's registry, saved, then loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry

from converters.errors import SegassistError
from ml_backend.engines.base import Prompt
from ml_backend.engines.sam import SamEngine, load, load_checkpoint


@pytest.fixture(scope="module")
def vit_b_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    state = sam_model_registry["vit_b"]().state_dict()
    path = tmp_path_factory.mktemp("weights") / "sam_vit_b_random.pth"
    torch.save(state, path)
    return path, state


def test_model_type_is_read_from_the_weights(vit_b_checkpoint) -> None:
    path, state = vit_b_checkpoint
    engine = load_checkpoint(path, None, torch.device("cpu"))
    assert isinstance(engine, SamEngine) and not engine.box_only
    assert engine.model_version.startswith("sam-vit_b-")
    loaded = engine.sam.state_dict()
    assert torch.equal(loaded["mask_decoder.iou_token.weight"], state["mask_decoder.iou_token.weight"])
    assert torch.equal(loaded["image_encoder.pos_embed"], state["image_encoder.pos_embed"])


def test_a_checkpoint_of_another_size_is_refused(vit_b_checkpoint) -> None:
    path, _ = vit_b_checkpoint
    with pytest.raises(SegassistError, match="not a SAM vit_l checkpoint") as caught:
        load(f"vit_l:{path}", torch.device("cpu"))
    assert caught.value.file == str(path)


def test_missing_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SegassistError, match="not found"):
        load_checkpoint(tmp_path / "absent.pth", "vit_b", torch.device("cpu"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SegassistError, match="junk.pth"):
        load(str(junk), torch.device("cpu"))


# Clicks and boxes on a 48 x 64 noise image: one click (SAM offers three masks, the best is kept), clicks
# with a negative one, a box, and a box with a click.
PROMPTS = [
    Prompt(points=((20, 30),), point_labels=(1,)),
    Prompt(points=((5, 5), (20, 30)), point_labels=(0, 1)),
    Prompt(box=(10, 10, 40, 30)),
    Prompt(points=((25, 20),), point_labels=(1,), box=(10, 10, 40, 30)),
]


@pytest.fixture(scope="module")
def engine_and_oracle(vit_b_checkpoint) -> tuple[SamEngine, SamPredictor, np.ndarray]:
    """The engine loaded from the saved checkpoint, and segment-anything's own predictor on a second model
    built from the same weights, both on the same image: two 1024-px ViT-B embeddings on CPU (~20 s each)."""
    torch.set_num_threads(1)
    path, state = vit_b_checkpoint
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    engine = load(f"vit_b:{path}", torch.device("cpu"))
    sam = sam_model_registry["vit_b"]()
    sam.load_state_dict(state)
    predictor = SamPredictor(sam.eval())
    with torch.inference_mode():
        predictor.set_image(image)
    return engine, predictor, image


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS, ids=["click", "clicks", "box", "box-and-click"])
def test_prompts_give_exactly_what_sam_predictor_gives(engine_and_oracle, prompt: Prompt) -> None:
    engine, predictor, image = engine_and_oracle
    mask, score = engine.segment_prompt(image, "noise", prompt)
    multimask = prompt.box is None and len(prompt.points) == 1  # SAM's advice: three masks for one click
    with torch.inference_mode():
        masks, scores, _ = predictor.predict(
            point_coords=np.asarray(prompt.points, dtype=np.float64) if prompt.points else None,
            point_labels=np.asarray(prompt.point_labels) if prompt.points else None,
            box=np.asarray(prompt.box, dtype=np.float64) if prompt.box is not None else None,
            multimask_output=multimask,
        )
    assert len(masks) == (3 if multimask else 1)
    best = int(np.argmax(scores))
    assert np.array_equal(mask.dense(), masks[best])
    assert 0 < mask.area < mask.dense().size  # random weights still give a mask worth comparing
    assert score == pytest.approx(float(scores[best]), abs=1e-5)
    # The multimask choice: the mask kept is that one of the three and no other.
    assert [np.array_equal(mask.dense(), candidate) for candidate in masks].count(True) == 1


@pytest.mark.slow
def test_the_embedding_is_the_predictor_s_and_is_cached(engine_and_oracle) -> None:
    engine, predictor, image = engine_and_oracle
    misses = engine.cache.misses
    first = engine.embedding(image, "cache-check")
    assert torch.equal(first.features, predictor.features)
    assert engine.embedding(image, "cache-check") is first
    assert engine.cache.misses == misses + 1


@pytest.mark.slow
def test_automatic_mode_is_sam_s_automatic_mask_generator(vit_b_checkpoint, engine_and_oracle) -> None:
    # A 4 x 4 point grid and no thresholds, so that random weights still give proposals to compare (two
    # more embeddings: the generator computes its own).
    path, _ = vit_b_checkpoint
    _, predictor, image = engine_and_oracle
    settings = {"proposal_points_per_side": 4, "min_proposal_iou": 0.0, "min_proposal_stability": 0.0}
    engine = load(f"vit_b:{path}", torch.device("cpu"), **settings)
    [segments] = engine.predict([image], "instance")
    generator = SamAutomaticMaskGenerator(
        predictor.model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    with torch.inference_mode():
        records = [record for record in generator.generate(image) if record["segmentation"].any()]
    assert len(segments) == len(records) > 0
    for segment, record in zip(segments, records, strict=True):
        assert np.array_equal(segment.mask.dense(), record["segmentation"])
        assert segment.score == pytest.approx(record["predicted_iou"], abs=1e-5)
