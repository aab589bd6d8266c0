"""SAM checkpoints from a path: a random-weight vit_b from segment-anything's registry, saved, then loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import sam_model_registry

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


@pytest.mark.slow
def test_clicks_go_straight_to_sam_and_the_embedding_is_cached(vit_b_checkpoint) -> None:
    # One 1024-px ViT-B embedding on CPU (~20 s): the whole point-prompt path with random weights.
    torch.set_num_threads(1)
    path, _ = vit_b_checkpoint
    engine = load(f"vit_b:{path}", torch.device("cpu"))
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    mask, score = engine.segment_prompt(image, "noise", Prompt(points=((20, 30),), point_labels=(1,)))
    assert mask.shape == (48, 64)
    assert np.isfinite(score)
    again, _ = engine.segment_prompt(image, "noise", Prompt(points=((5, 5), (20, 30)), point_labels=(0, 1)))
    assert again.shape == (48, 64)
    assert (engine.cache.misses, engine.cache.hits) == (1, 1)
