"""Shared data for the SAM tests: reference regions drawn by hand on scikit-image's bundled photos, and the
Label Studio smart-tool prompt regions (clicks and boxes) that ask for them.

Each outline was traced once by looking at a 4x enlargement of the image with a 10-pixel grid (pixel
coordinates x, y; never taken from a model's output). Tracing is accurate to about 2 to 3 pixels along the
outline, which is what the IoU thresholds in the tests allow for, together with the model's own error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from converters import Mask
from converters.polygons import coco_to_mask
from ml_backend.engines.base import Prompt

COFFEE_SIZE = (400, 600)  # skimage.data.coffee(): height, width
ASTRONAUT_SIZE = (512, 512)  # skimage.data.astronaut()

# The teaspoon on the right of the saucer: its handle top above the saucer rim, then (after the part hidden
# behind the cup) the neck and the bowl.
SPOON_HANDLE = [(399, 68), (412, 66), (423, 72), (423, 85), (417, 105), (412, 125), (408, 145), (404, 150),
                (401, 130), (402, 100), (398, 80)]  # fmt: skip
SPOON_BOWL = [
    (386, 198), (390, 200), (386, 225), (387, 240), (400, 250), (405, 262), (406, 282), (402, 300),
    (395, 315), (380, 324), (360, 324), (342, 315), (330, 300), (326, 282), (329, 270), (340, 257),
    (357, 247), (372, 237), (377, 225), (382, 210),
]  # fmt: skip
# The saucer with everything on it (cup and spoon): its outer outline, running over the cup's rim at the top.
SAUCER_WITH_CUP = [
    (77, 200), (80, 250), (100, 290), (130, 325), (170, 355), (220, 375), (280, 385), (340, 382), (400, 365),
    (445, 335), (470, 290), (480, 240), (475, 190), (455, 145), (425, 105), (405, 60), (395, 40), (375, 28),
    (340, 20), (290, 17), (240, 20), (205, 30), (185, 42), (175, 60), (172, 75), (145, 82), (110, 105),
    (90, 150),
]  # fmt: skip
# The black helmet held at the bottom right of astronaut(), cut by the image's right and bottom borders.
HELMET = [(275, 512), (277, 470), (280, 445), (287, 420), (297, 398), (312, 377), (330, 362), (350, 352),
          (370, 346), (400, 344), (432, 350), (460, 366), (482, 390), (495, 417), (498, 450), (505, 460),
          (512, 465), (512, 512)]  # fmt: skip


def reference(size: tuple[int, int], *outlines: list[tuple[int, int]]) -> Mask:
    """The mask of hand-drawn outlines on an image of `size` (height, width)."""
    height, width = size
    return coco_to_mask(
        [[coord for point in outline for coord in point] for outline in outlines], height, width
    )


def keypoint_region(
    x: float,
    y: float,
    size: tuple[int, int],
    *,
    label: str = "object",
    region_id: str = "kp1",
    positive: bool | None = True,
) -> dict[str, Any]:
    """A smart KeyPointLabels click (control "click") at pixel (x, y) on an image of `size` (height, width).

    `positive` None leaves `is_positive` out, as a client that predates Alt-clicks does.
    """
    height, width = size
    region = {
        "id": region_id,
        "from_name": "click",
        "to_name": "image",
        "type": "keypointlabels",
        "origin": "manual",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"x": x * 100 / width, "y": y * 100 / height, "width": 0.3, "keypointlabels": [label]},
    }
    if positive is not None:
        region["is_positive"] = positive
    return region


def rectangle_region(
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    size: tuple[int, int],
    *,
    label: str = "object",
    region_id: str = "rc1",
    rotation: float = 0,
) -> dict[str, Any]:
    """A smart RectangleLabels box (control "box") from pixel (x0, y0) to (x1, y1) on an image of `size`."""
    height, width = size
    return {
        "id": region_id,
        "from_name": "box",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": x0 * 100 / width,
            "y": y0 * 100 / height,
            "width": (x1 - x0) * 100 / width,
            "height": (y1 - y0) * 100 / height,
            "rotation": rotation,
            "rectanglelabels": [label],
        },
    }


# Clicks and boxes on a 48 x 64 noise image, for comparing an engine with its library's own predictor: one
# click (SAM and SAM 2 offer three masks, the best is kept), clicks with a negative one, a box, and a box with
# a click.
ORACLE_PROMPTS = [
    Prompt(points=((20, 30),), point_labels=(1,)),
    Prompt(points=((5, 5), (20, 30)), point_labels=(0, 1)),
    Prompt(box=(10, 10, 40, 30)),
    Prompt(points=((25, 20),), point_labels=(1,), box=(10, 10, 40, 30)),
]
ORACLE_PROMPT_IDS = ["click", "clicks", "box", "box-and-click"]


def assert_engine_gives_what_predictor_gives(
    engine: Any, predictor: Any, image: np.ndarray, prompt: Prompt, coordinate_dtype: type
) -> None:
    """The engine's mask and score for `prompt` are those of the library's predictor (SamPredictor or
    SAM2ImagePredictor, which take coordinates as `coordinate_dtype`): on one click, the best of its three."""
    mask, score = engine.segment_prompt(image, "noise", prompt)
    multimask = prompt.box is None and len(prompt.points) == 1  # three masks for one click, as SAM advises
    with torch.inference_mode():
        masks, scores, _ = predictor.predict(
            point_coords=np.asarray(prompt.points, dtype=coordinate_dtype) if prompt.points else None,
            point_labels=np.asarray(prompt.point_labels) if prompt.points else None,
            box=np.asarray(prompt.box, dtype=coordinate_dtype) if prompt.box is not None else None,
            multimask_output=multimask,
        )
    masks = np.asarray(masks) > 0  # SAM gives booleans, SAM 2 floats
    assert len(masks) == (3 if multimask else 1)
    best = int(np.argmax(scores))
    assert np.array_equal(mask.dense(), masks[best])
    assert 0 < mask.area < mask.dense().size  # random weights still give a mask worth comparing
    assert score == pytest.approx(float(scores[best]), abs=1e-5)
    # The multimask choice: the mask kept is that one of the three and no other.
    assert [np.array_equal(mask.dense(), candidate) for candidate in masks].count(True) == 1
