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

from sam2.build_sam import build_sam2  # noqa: E402

from ml_backend.engines.sam2_engine import CONFIGS, Sam2Engine  # noqa: E402  (needs sam2)

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


@pytest.mark.slow
def test_clicks_and_boxes_reach_sam2_and_the_features_are_cached(checkpoint) -> None:
    # One 1024-px hiera-tiny embedding on CPU (~10 s): the whole prompt path with random weights.
    torch.set_num_threads(1)
    path, _ = checkpoint
    engine = load_engine("sam", f"{MODEL}:{path}", torch.device("cpu"))
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    mask, score = engine.segment_prompt(image, "noise", Prompt(points=((20, 30),), point_labels=(1,)))
    assert mask.shape == (48, 64) and np.isfinite(score)
    boxed, _ = engine.segment_prompt(image, "noise", Prompt(box=(10, 10, 40, 30)))
    assert boxed.shape == (48, 64)
    assert (engine.cache.misses, engine.cache.hits) == (1, 1)
    embedding = engine.embedding(image, "noise")
    assert [level.shape[1] for level in embedding.high_res_features] == [32, 64]
