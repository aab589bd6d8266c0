"""SAM 2 behind the SAM interface: a random-weight hiera-tiny from the sam2 package, saved, then loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from converters.errors import SegassistError
from ml_backend.engines.base import Prompt
from ml_backend.engines.registry import load_engine

pytest.importorskip("sam2", reason="SAM 2 is the optional `sam2` extra (see the README's SAM 2 notes)")

from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator  # noqa: E402
from sam2.build_sam import build_sam2  # noqa: E402
from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402

from ml_backend.engines.sam2_engine import CONFIGS, Sam2Engine  # noqa: E402  (needs sam2)
from tests.unit.sam_references import (  # noqa: E402
    ORACLE_PROMPT_IDS,
    ORACLE_PROMPTS,
    assert_engine_gives_what_predictor_gives,
)

MODEL = "sam2.1_hiera_t"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    state = build_sam2(CONFIGS[MODEL], ckpt_path=None, device="cpu").state_dict()
    path = tmp_path_factory.mktemp("weights") / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": state}, path)  # the layout of the released SAM 2 checkpoints
    return path, state


def test_loads_through_the_sam_engine_s_model_spec(checkpoint) -> None:
    path, state = checkpoint
    engine = load_engine("sam", f"{MODEL}:{path}", torch.device("cpu"))
    assert isinstance(engine, Sam2Engine)
    assert engine.model_version.startswith(f"sam2-{MODEL}-")
    loaded = engine.model.state_dict()
    assert all(
        torch.equal(loaded[key], state[key]) for key in ("no_mem_embed", "sam_mask_decoder.iou_token.weight")
    )


def test_wrong_model_or_name_is_refused(checkpoint) -> None:
    path, _ = checkpoint
    with pytest.raises(SegassistError, match="not a sam2.1_hiera_s checkpoint"):
        load_engine("sam", f"sam2.1_hiera_s:{path}", torch.device("cpu"))
    with pytest.raises(SegassistError, match="unknown SAM 2 model"):
        load_engine("sam", f"sam2_hiera_huge:{path}", torch.device("cpu"))


@pytest.fixture(scope="module")
def engine_and_oracle(checkpoint) -> tuple[Sam2Engine, SAM2ImagePredictor, np.ndarray]:
    """The engine loaded through the model spec, and sam2's own predictor on a second model built from the
    same weights, both on the same image: two 1024-px hiera-tiny embeddings on CPU (~10 s each)."""
    torch.set_num_threads(1)
    path, state = checkpoint
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    engine = load_engine("sam", f"{MODEL}:{path}", torch.device("cpu"))
    model = build_sam2(CONFIGS[MODEL], ckpt_path=None, device="cpu")
    model.load_state_dict(state)
    predictor = SAM2ImagePredictor(model.eval())
    with torch.inference_mode():
        predictor.set_image(image)
    return engine, predictor, image


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ORACLE_PROMPTS, ids=ORACLE_PROMPT_IDS)
def test_prompts_give_exactly_what_sam2_image_predictor_gives(engine_and_oracle, prompt: Prompt) -> None:
    assert_engine_gives_what_predictor_gives(*engine_and_oracle, prompt, np.float32)


@pytest.mark.slow
def test_features_are_the_predictor_s_and_are_cached(engine_and_oracle) -> None:
    engine, predictor, image = engine_and_oracle
    misses = engine.cache.misses
    embedding = engine.embedding(image, "cache-check")
    assert torch.equal(embedding.features, predictor._features["image_embed"])
    assert all(
        torch.equal(ours, theirs)
        for ours, theirs in zip(
            embedding.high_res_features, predictor._features["high_res_feats"], strict=True
        )
    )
    assert engine.embedding(image, "cache-check") is embedding
    assert engine.cache.misses == misses + 1


@pytest.mark.slow
def test_automatic_mode_is_sam2_s_automatic_mask_generator(checkpoint, engine_and_oracle) -> None:
    # A 4 x 4 point grid and no thresholds, so that random weights still give proposals to compare.
    path, _ = checkpoint
    _, predictor, image = engine_and_oracle
    settings = {"proposal_points_per_side": 4, "min_proposal_iou": 0.0, "min_proposal_stability": 0.0}
    engine = Sam2Engine(predictor.model, name="oracle", device=torch.device("cpu"), **settings)
    [segments] = engine.predict([image], "instance")
    generator = SAM2AutomaticMaskGenerator(
        predictor.model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    with torch.inference_mode():
        records = [record for record in generator.generate(image) if record["segmentation"].any()]
    assert len(segments) == len(records) > 0
    for segment, record in zip(segments, records, strict=True):
        assert np.array_equal(segment.mask.dense(), record["segmentation"])
        assert segment.score == pytest.approx(record["predicted_iou"], abs=1e-5)
