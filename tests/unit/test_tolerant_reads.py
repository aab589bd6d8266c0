"""The readers' tolerant reads, which QA judges: the model (cropped masks with their origin) next to the facts
the input declares, kept as written, with pycocotools and the Label Studio SDK as oracles."""

from __future__ import annotations

import numpy as np
from label_studio_sdk.converter.brush import decode_rle
from pycocotools import mask as mask_utils

from converters.formats.coco import read_image_tolerantly
from converters.formats.labelstudio import read_task_tolerantly
from converters.lsconfig import parse_label_config
from tests.unit.qa_helpers import LS_CONFIG, LS_HEIGHT, LS_WIDTH, alpha_box, bitmask_region, brush_region


def test_label_studio_read_keeps_unknown_labels_and_the_rle_facts_beside_a_cropped_mask() -> None:
    alpha = alpha_box(5, 6, 20, 30)
    alpha[5, 6:30] = 100  # a soft top edge, below the default threshold
    brush = brush_region("b1", alpha, label="Zebra")
    task = {
        "id": 7,
        "data": {"image": "/data/upload/1/seven.png"},
        "annotations": [{"id": 70, "result": [brush, bitmask_region("m1", alpha_box(30, 2, 40, 20), "Dog")]}],
    }
    read = read_task_tolerantly("export.json", 0, task, 128, parse_label_config(LS_CONFIG))

    assert (read.task_id, read.file_name) == (7, "seven.png")
    (entry,) = read.entries
    first, second = entry.regions
    assert first.facts.label == "Zebra"
    assert [(m.kind, m.label) for m in first.facts.mismatches] == [("label", "Zebra")]
    assert second.facts.mismatches == ()
    assert first.facts.rle_values == LS_WIDTH * LS_HEIGHT * 4
    np.testing.assert_array_equal(first.facts.alpha_histogram, np.bincount(alpha.ravel(), minlength=256))
    oracle = decode_rle(brush["value"]["rle"]).reshape(LS_HEIGHT, LS_WIDTH, 4)[..., 3] >= 128
    mask = first.segment.mask
    np.testing.assert_array_equal(mask.dense(), oracle)
    assert mask.bits.shape == (19 - 6 + 1, 30 - 6)  # cropped to the region's box, not the image
    origin = first.segment.origin
    assert (origin.task_id, origin.annotation_id, origin.region_id) == (7, 70, "b1")
    assert second.segment.mask.area == int(np.count_nonzero(alpha_box(30, 2, 40, 20)))


def test_coco_read_keeps_declared_facts_and_decodes_only_what_fits_the_image() -> None:
    height, width = 40, 50
    dense = np.zeros((height, width), np.uint8)
    dense[10:20, 5:25] = 1
    rle = mask_utils.encode(np.asfortranarray(dense))
    rle = {"size": rle["size"], "counts": rle["counts"].decode()}
    good_part = [5.0, 5.0, 30.0, 5.0, 30.0, 25.0, 5.0, 25.0]
    annotations = [
        {"id": 1, "category_id": 3, "segmentation": rle, "area": 5, "bbox": [0, 0, 1, 1], "iscrowd": "no"},
        {"id": 2, "category_id": 3, "segmentation": {"size": [height + 1, width], "counts": rle["counts"]}},
        {"id": 3, "category_id": 9, "segmentation": [[1.0, 2.0, 3.0], good_part]},
    ]
    entry = {"id": 4, "file_name": "four.jpg", "width": width, "height": height}
    read = read_image_tolerantly(entry, list(enumerate(annotations)), "instances.json")

    first, second, third = read.annotations
    assert (first.facts.area, first.facts.bbox, first.facts.iscrowd) == (5, [0, 0, 1, 1], "no")
    assert first.facts.rle_size == [height, width] and first.facts.is_rle
    assert first.segment.mask.area == int(mask_utils.area(rle))
    assert list(first.segment.mask.bbox) == mask_utils.toBbox(rle).tolist()
    # An RLE of another size is not decoded, and that is no decoding error: QA names the size.
    assert (
        second.segment is None
        and second.decode_error is None
        and second.facts.rle_size == [height + 1, width]
    )
    # The malformed part is left out of the mask and kept in the facts.
    oracle = mask_utils.frPyObjects([good_part], height, width)
    assert third.segment.mask.area == int(mask_utils.area(mask_utils.merge(oracle)))
    assert third.facts.polygon_parts == [[1.0, 2.0, 3.0], good_part]
    assert [segment.origin.annotation_id for segment in read.image.segments] == [1, 3]
