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
from tests.unit.sam_references import (
    ORACLE_PROMPT_IDS,
    ORACLE_PROMPTS,
    assert_engine_gives_what_predictor_gives,
)


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
@pytest.mark.parametrize("prompt", ORACLE_PROMPTS, ids=ORACLE_PROMPT_IDS)
def test_prompts_give_exactly_what_sam_predictor_gives(engine_and_oracle, prompt: Prompt) -> None:
    assert_engine_gives_what_predictor_gives(*engine_and_oracle, prompt, np.float64)


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
