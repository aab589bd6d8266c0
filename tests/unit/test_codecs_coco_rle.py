"""COCO RLE against pycocotools and the real COCO fixtures; bad input and fuzzing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from converters import coco_rle
from converters.errors import SegassistError
from tests.unit.codecs_strategies import placed_masks

SETTINGS = settings(deadline=None, max_examples=150)


@SETTINGS
@given(placed_masks(max_margin=5))
def test_encode_matches_pycocotools_and_round_trips(mask):
    height, width = mask.shape
    reference = coco_mask.encode(np.asfortranarray(mask.dense().astype(np.uint8)))
    encoded = coco_rle.encode(mask)
    assert encoded == {"size": [height, width], "counts": reference["counts"].decode("ascii")}
    assert coco_rle.decode(encoded, height, width) == mask
    assert coco_rle.decode(reference) == mask  # bytes counts, as pycocotools gives them
    uncompressed = coco_rle.encode_uncompressed(mask)
    assert sum(uncompressed["counts"]) == height * width
    assert all(count > 0 for count in uncompressed["counts"][1:])
    assert coco_rle.decode(uncompressed) == mask


def test_real_coco_rle_annotations(realdata):
    data = json.loads((realdata / "panopticapi_sample/panoptic_coco_detection_format.json").read_text())
    sizes = {image["id"]: (image["height"], image["width"]) for image in data["images"]}
    for annotation in data["annotations"]:
        height, width = sizes[annotation["image_id"]]
        rle = annotation["segmentation"]
        mask = coco_rle.decode(rle, height, width)
        assert np.array_equal(mask.dense(), coco_mask.decode(rle).astype(bool))
        assert mask.area == annotation["area"]
        assert list(mask.bbox) == annotation["bbox"]
        assert coco_rle.encode(mask) == rle


def test_real_uncompressed_crowd(realdata):
    data = json.loads((realdata / "datumaro_coco/coco_instances/annotations/instances_val.json").read_text())
    crowd = next(a for a in data["annotations"] if isinstance(a["segmentation"], dict))
    mask = coco_rle.decode(crowd["segmentation"], 10, 5)
    assert mask.dense().T.ravel().tolist() == [True] * 20 + [False] * 30  # column-major
    assert coco_rle.encode_uncompressed(mask) == crowd["segmentation"]


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [3, 4], "counts": [5, 7]}, "disagrees with the image"),
        ({"size": [2, 2], "counts": [1, 2]}, "cover 3 pixels"),
        ({"size": [2, 2], "counts": [1, -1, 4]}, "non-negative"),
        ({"size": [2, 2], "counts": [1.0, 3]}, "non-negative integers"),
        ({"size": [2, 2], "counts": "9999"}, "cover 45 pixels"),
        ({"size": [2, 2], "counts": "0ooooooo0"}, "too large"),
        ({"size": [2, 2], "counts": "1@3"}, "non-negative"),
        ({"size": [2, 2], "counts": "0P"}, "truncated"),
        ({"size": [2, 2], "counts": "0 1"}, "alphabet"),
        ({"size": [2, 2], "counts": "0é"}, "alphabet"),
        ({"size": [2, 2], "counts": None}, "string or a list"),
        ({"size": [2], "counts": [4]}, "size must be"),
        ({"size": "2x2", "counts": [4]}, "size must be"),
        ({"counts": [4]}, "size must be"),
        ([4], "must be a dict"),
    ],
)
def test_bad_input_raises(rle, message):
    with pytest.raises(SegassistError, match=message):
        coco_rle.decode(rle, 2, 2)


@settings(deadline=None, max_examples=500)
@given(st.integers(0, 6), st.integers(0, 6), st.binary(max_size=24) | st.text(max_size=24))
def test_fuzzed_counts_give_a_mask_or_segassist_error(height, width, counts):
    rle = {"size": [height, width], "counts": counts}
    try:
        mask = coco_rle.decode(rle)
    except SegassistError:
        return
    # Whatever decodes must decode the same in pycocotools.
    reference = coco_mask.decode({"size": [height, width], "counts": rle["counts"]})
    assert np.array_equal(mask.dense(), reference.astype(bool))
