"""converters.formats.ls_regions: one Label Studio result ⇄ one Segment, checked against the SDK's codec."""

from __future__ import annotations

import json

import numpy as np
import pytest
from label_studio_sdk.converter import brush as sdk_brush
from PIL import Image

from converters import Mask, Origin, SegassistError, Segment
from converters.formats.ls_regions import is_region, result_label, result_to_segment, segment_to_result

W, H = 40, 30


def disc_with_hole() -> Mask:
    yy, xx = np.mgrid[:H, :W]
    r2 = (yy - 15) ** 2 + (xx - 20) ** 2
    return Mask.from_dense((r2 <= 100) & (r2 > 9))


@pytest.fixture(scope="module")
def real_brush(realdata):
    task = json.loads(
        (realdata / "labelstudio/derived/image_segmentation_export_with_dims.json").read_text()
    )[0]
    meta = json.loads((realdata / "labelstudio/derived/image_segmentation_decoded_meta.json").read_text())
    alpha = np.asarray(Image.open(realdata / "labelstudio/derived/image_segmentation_alpha_2242x2802.png"))
    return task["annotations"][0]["result"][0], meta, alpha


def test_real_brush_region_decodes_to_the_published_alpha(real_brush):
    result, meta, alpha = real_brush
    segment = result_to_segment(result, category_id=3, origin=Origin(file="x.json", task_id=1))
    assert segment.mask == Mask.from_dense(alpha >= 128)
    assert segment.mask.area == 253348
    assert result_to_segment(result, category_id=3, alpha_threshold=1).mask.area == 260411
    assert (segment.category_id, segment.origin.region_id, segment.origin.task_id) == (3, result["id"], 1)
    assert result_label(result) == "Planet"


def test_brush_result_is_what_the_sdk_decodes():
    mask = disc_with_hole()
    result = segment_to_result(
        Segment(mask, 1, score=0.75),
        from_name="tag",
        to_name="image",
        control_type="brushlabels",
        label="Cat",
    )
    assert result["type"] == "brushlabels" and result["value"]["brushlabels"] == ["Cat"]
    assert result["value"]["format"] == "rle"
    assert (result["original_width"], result["original_height"], result["image_rotation"]) == (W, H, 0)
    assert result["score"] == 0.75
    decoded = sdk_brush.decode_rle(result["value"]["rle"]).reshape(H, W, 4)[:, :, 3]
    np.testing.assert_array_equal(decoded > 0, mask.dense())
    assert result_to_segment(result, category_id=1).mask == mask


def test_sdk_brush_rle_reads_back_exactly():
    mask = disc_with_hole()
    result = {
        "id": "abc",
        "type": "brushlabels",
        "original_width": W,
        "original_height": H,
        "value": {
            "format": "rle",
            "rle": sdk_brush.mask2rle(mask.dense().astype(np.uint8) * 255),
            "brushlabels": ["x"],
        },
    }
    assert result_to_segment(result, category_id=1).mask == mask


def test_bitmask_round_trip_keeps_the_hole():
    mask = disc_with_hole()
    result = segment_to_result(
        Segment(mask, 1), from_name="bm", to_name="image", control_type="bitmasklabels", label="Cat"
    )
    assert result["value"]["imageDataURL"].startswith("data:image/png;base64,")
    back = result_to_segment(result, category_id=1)
    assert back.mask == mask and back.score is None


def test_polygon_result_writes_the_largest_part_in_percent():
    dense = np.zeros((H, W), dtype=bool)
    dense[5:25, 4:20] = True  # 320 px
    dense[2:4, 30:32] = True  # a 4 px speck, dropped by a one-ring polygon
    result = segment_to_result(
        Segment(Mask.from_dense(dense), 1),
        from_name="p",
        to_name="i",
        control_type="polygonlabels",
        label="Dog",
    )
    assert result["value"]["closed"] is True and result["value"]["polygonlabels"] == ["Dog"]
    xs = [x for x, _ in result["value"]["points"]]
    assert min(xs) == pytest.approx(4 * 100 / W) and max(xs) == pytest.approx(20 * 100 / W)
    back = result_to_segment(result, category_id=1).mask
    assert back.bbox == (4, 5, 16, 20) and back.area == 320


def test_polygon_and_rotated_rectangle_results_in_percent():
    polygon = {
        "id": "p1",
        "type": "polygonlabels",
        "original_width": 400,
        "original_height": 300,
        "value": {"points": [[10, 10], [30, 10], [30, 40], [10, 40]], "polygonlabels": ["Dog"]},
    }
    mask = result_to_segment(polygon, category_id=2).mask
    assert mask.bbox == (40, 30, 80, 90)
    rectangle = {
        "id": "r1",
        "type": "rectanglelabels",
        "original_width": 400,
        "original_height": 300,
        "value": {"x": 50, "y": 50, "width": 20, "height": 10, "rotation": 30, "rectanglelabels": ["Box"]},
    }
    x, y, w, h = result_to_segment(rectangle, category_id=1).mask.bbox
    # The true envelope of that box rotated clockwise about its top-left corner: [185, 150, 84.28, 65.98].
    assert abs(x - 185) <= 1 and y == 150 and abs(w - 84.28) <= 2 and abs(h - 65.98) <= 2


def test_brush_plus_labels_reads_value_labels():
    mask = disc_with_hole()
    result = segment_to_result(
        Segment(mask, 1), from_name="b", to_name="i", control_type="brushlabels", label="x"
    )
    result["type"] = "brush"
    result["value"] = {"format": "rle", "rle": result["value"]["rle"], "labels": ["Planet"]}
    assert is_region(result) and result_label(result) == "Planet"
    assert result_to_segment(result, category_id=1).mask == mask


def test_missing_size_uses_the_image_size_or_names_the_region():
    result = segment_to_result(
        Segment(disc_with_hole(), 1), from_name="b", to_name="i", control_type="brushlabels", label="x"
    )
    del result["original_width"], result["original_height"]
    assert result_to_segment(result, category_id=1, image_size=(W, H)).mask == disc_with_hole()
    result["id"] = "reg-9"
    with pytest.raises(SegassistError) as caught:
        result_to_segment(result, category_id=1, origin=Origin(file="export.json", task_id=12))
    assert "file export.json" in str(caught.value) and "task 12" in str(caught.value)
    assert "region reg-9" in str(caught.value) and "original_width" in str(caught.value)


def test_broken_regions_raise_errors_naming_the_region():
    corrupt = {
        "id": "bad1",
        "type": "brushlabels",
        "original_width": W,
        "original_height": H,
        "value": {"format": "rle", "rle": [0, 0, 0], "brushlabels": ["x"]},
    }
    with pytest.raises(SegassistError, match="region bad1"):
        result_to_segment(corrupt, category_id=1)
    no_points = {
        "id": "bad2",
        "type": "polygonlabels",
        "original_width": W,
        "original_height": H,
        "value": {},
    }
    with pytest.raises(SegassistError, match="region bad2"):
        result_to_segment(no_points, category_id=1)
    with pytest.raises(SegassistError, match="has no label"):
        result_label({"id": "bad3", "type": "brushlabels", "value": {}})
    assert not is_region({"type": "relation"}) and not is_region({"type": "choices"})


def test_region_ids_are_kept_or_derived_deterministically():
    mask = disc_with_hole()
    kwargs = {"from_name": "b", "to_name": "i", "control_type": "brushlabels", "label": "x"}
    first = segment_to_result(Segment(mask, 1), **kwargs)["id"]
    assert first == segment_to_result(Segment(mask, 1), **kwargs)["id"]
    assert first != segment_to_result(Segment(mask, 2), **kwargs)["id"]
    assert segment_to_result(Segment(mask, 1, origin=Origin(region_id=17)), **kwargs)["id"] == "17"
    assert segment_to_result(Segment(mask, 1), region_id="given", **kwargs)["id"] == "given"
