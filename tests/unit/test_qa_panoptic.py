"""COCO panoptic QA on the real panopticapi sample: clean data passes, each planted fault is found."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from converters.formats.label_map import ids_to_rgb, rgb_to_ids
from converters.qa.panoptic import id_stats
from tests.unit.qa_helpers import (
    codes,
    copy_panoptic_sample,
    duplicate_first,
    findings,
    reported,
    with_code,
    write_json,
)

FIRST_PNG = "000000142238.png"
FIRST_IMAGE = 142238
PERSON = 3937500  # a thing segment (person) of image 142238
STUFF = 2330219  # a stuff segment (category 184) of image 142238


@pytest.fixture
def sample(realdata: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    json_path, images = copy_panoptic_sample(realdata, tmp_path)
    return json_path, images, json.loads(json_path.read_text())


def _segment(data: dict[str, Any], segment_id: int) -> dict[str, Any]:
    return next(s for s in data["annotations"][0]["segments_info"] if s["id"] == segment_id)


def _ids(json_path: Path) -> np.ndarray:
    return rgb_to_ids(np.asarray(Image.open(json_path.with_suffix("") / FIRST_PNG)))


def _save_ids(json_path: Path, ids: np.ndarray) -> None:
    Image.fromarray(ids_to_rgb(ids)).save(json_path.with_suffix("") / FIRST_PNG)


# Each plant mutates the clean copy (JSON dict and/or PNG) and returns the segment id the finding must name
# (None when the finding is not about one segment).
def _drop_from_json(path: Path, data: dict) -> Any:
    data["annotations"][0]["segments_info"].remove(_segment(data, PERSON))
    return PERSON


def _add_to_json(path: Path, data: dict) -> Any:
    data["annotations"][0]["segments_info"].append(
        {"id": 777, "category_id": 1, "iscrowd": 0, "area": 10, "bbox": [0, 0, 2, 5]}
    )
    return 777


def _id_zero(path: Path, data: dict) -> Any:
    _segment(data, PERSON)["id"] = 0
    ids = _ids(path)
    ids[ids == PERSON] = 0
    _save_ids(path, ids)
    return 0


def _duplicate_id(path: Path, data: dict) -> Any:
    data["annotations"][0]["segments_info"].append(dict(_segment(data, PERSON), category_id=2))
    return PERSON


def _stuff_split(path: Path, data: dict) -> Any:
    ids = _ids(path)
    rows = np.arange(ids.shape[0])[:, None]
    ids[(ids == STUFF) & (rows < 100)] = 99
    _save_ids(path, ids)
    stuff = _segment(data, STUFF)
    for segment_id, selection in ((STUFF, ids == STUFF), (99, ids == 99)):
        ys, xs = np.nonzero(selection)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        entry = dict(stuff, id=segment_id, area=int(selection.sum()), bbox=box)
        if segment_id == STUFF:
            stuff.update(entry)
        else:
            data["annotations"][0]["segments_info"].append(entry)
    return None


def _crowd_on_stuff(path: Path, data: dict) -> Any:
    _segment(data, STUFF)["iscrowd"] = 1
    return STUFF


def _isthing_missing(path: Path, data: dict) -> Any:
    del data["categories"][0]["isthing"]
    return None


def _as_mode(mode: str) -> Callable[[Path, dict], Any]:
    def plant(path: Path, data: dict) -> Any:
        png = path.with_suffix("") / FIRST_PNG
        image = Image.open(png)
        converted = image.convert("L").convert("I;16") if mode == "I;16" else image.convert(mode)
        converted.save(png)
        return None

    return plant


def _alpha(path: Path, data: dict) -> Any:
    png = path.with_suffix("") / FIRST_PNG
    rgba = np.asarray(Image.open(png).convert("RGBA")).copy()
    rgba[:5, :5, 3] = 0
    Image.fromarray(rgba).save(png)
    return None


def _png_size(path: Path, data: dict) -> Any:
    png = path.with_suffix("") / FIRST_PNG
    Image.open(png).crop((0, 0, 600, 427)).save(png)
    return None


def _png_missing(path: Path, data: dict) -> Any:
    (path.with_suffix("") / FIRST_PNG).unlink()
    return None


def _annotated_twice(path: Path, data: dict) -> Any:
    data["annotations"].append(json.loads(json.dumps(data["annotations"][0])))
    return None


def _not_annotated(path: Path, data: dict) -> Any:
    data["images"].append(dict(data["images"][0], id=5, file_name="other.jpg"))
    return None


def _area_tripled(path: Path, data: dict) -> Any:
    _segment(data, PERSON)["area"] *= 3
    return PERSON


def _bbox_shifted(path: Path, data: dict) -> Any:
    _segment(data, PERSON)["bbox"][0] += 2
    return PERSON


def _bbox_invalid(path: Path, data: dict) -> Any:
    _segment(data, PERSON)["bbox"] = [1, 2, 0, 5]
    return PERSON


def _iscrowd_string(path: Path, data: dict) -> Any:
    _segment(data, PERSON)["iscrowd"] = "false"
    return PERSON


def _unknown_category(path: Path, data: dict) -> Any:
    _segment(data, PERSON)["category_id"] = 4242
    return PERSON


def _category_zero(path: Path, data: dict) -> Any:
    data["categories"].append({"id": 0, "name": "background", "isthing": 0, "color": [0, 0, 0]})
    return None


def _image_ref_missing(path: Path, data: dict) -> Any:
    data["annotations"][0]["image_id"] = 31337
    return None


def _structure(path: Path, data: dict) -> Any:
    data["annotations"][0]["segments_info"] = "nope"
    return None


def _tiny(path: Path, data: dict) -> Any:
    ids = _ids(path)
    ids[0:2, 0:2] = 4242
    _save_ids(path, ids)
    data["annotations"][0]["segments_info"].append(
        {"id": 4242, "category_id": 1, "iscrowd": 0, "area": 4, "bbox": [0, 0, 2, 2]}
    )
    # The pixels came from other segments: keep their JSON true so only the tiny segment is new.
    for segment in data["annotations"][0]["segments_info"]:
        stats = id_stats(ids).as_dict()
        segment["area"], segment["bbox"] = stats[segment["id"]][0], list(stats[segment["id"]][1])
    return 4242


PLANTS: dict[str, Callable[[Path, dict], Any]] = {
    "PAN_PNG_ID_MISSING_IN_JSON": _drop_from_json,
    "PAN_JSON_ID_MISSING_IN_PNG": _add_to_json,
    "PAN_SEGMENT_ID_ZERO": _id_zero,
    "PAN_SEGMENT_ID_DUPLICATE": _duplicate_id,
    "PAN_STUFF_SEVERAL_SEGMENTS": _stuff_split,
    "PAN_CROWD_ON_STUFF": _crowd_on_stuff,
    "PAN_ISTHING_INVALID": _isthing_missing,
    "PAN_PNG_NOT_RGB": _as_mode("P"),
    "PAN_PNG_ALPHA": _alpha,
    "PAN_PNG_SIZE_MISMATCH": _png_size,
    "PAN_PNG_MISSING": _png_missing,
    "PAN_IMAGE_ANNOTATED_TWICE": _annotated_twice,
    "PAN_IMAGE_NOT_ANNOTATED": _not_annotated,
    "AREA_MISMATCH": _area_tripled,
    "BBOX_MISMATCH": _bbox_shifted,
    "BBOX_INVALID": _bbox_invalid,
    "ISCROWD_INVALID": _iscrowd_string,
    "CATEGORY_REF_MISSING": _unknown_category,
    "CATEGORY_ID_ZERO": _category_zero,
    "DUPLICATE_IMAGE_ID": duplicate_first("images"),
    "DUPLICATE_CATEGORY_ID": duplicate_first("categories"),
    "IMAGE_REF_MISSING": _image_ref_missing,
    "JSON_STRUCTURE": _structure,
    "SEGMENT_TINY": _tiny,
}


def test_real_panopticapi_sample_has_no_findings(sample) -> None:
    """No check fires on the clean sample, so each planted fault below is what its check reacts to."""
    json_path, images, _ = sample
    assert findings(json_path, images_dir=images) == []


@pytest.mark.parametrize("code", sorted(PLANTS))
def test_planted_fault_is_found(code: str, sample) -> None:
    json_path, images, data = sample
    segment_id = PLANTS[code](json_path, data)
    write_json(json_path, data)
    found = reported(findings(json_path, images_dir=images), code)
    assert {f.file for f in found} == {str(json_path)}  # the PNG, if any, is in file_name
    if segment_id is not None:
        assert segment_id in {f.segment_id for f in found}
        assert {f.image_id for f in found} == {FIRST_IMAGE}


@pytest.mark.parametrize("mode", ["L", "I;16", "P"])
def test_grey_16bit_and_palette_pngs_are_not_rgb(mode: str, sample) -> None:
    json_path, images, data = sample
    _as_mode(mode)(json_path, data)
    found = with_code(findings(json_path), "PAN_PNG_NOT_RGB")
    assert [f.file_name for f in found] == [FIRST_PNG]
    assert repr(mode) in found[0].message


def test_16_bit_rgb_png_is_not_8_bit_rgb(sample) -> None:
    json_path, _, data = sample
    png = json_path.with_suffix("") / FIRST_PNG
    rgb = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(png), rgb.astype(np.uint16) * 257)
    found = with_code(findings(json_path), "PAN_PNG_NOT_RGB")
    assert [f.file_name for f in found] == [FIRST_PNG]


def test_tripled_area_reports_both_numbers(sample) -> None:
    json_path, _, data = sample
    area = _segment(data, PERSON)["area"]
    _area_tripled(json_path, data)
    write_json(json_path, data)
    (found,) = with_code(findings(json_path), "AREA_MISMATCH")
    assert found.numbers == {"declared_area": 3 * area, "area": area}
    assert found.to_json()["area"] == area


def test_datumaro_panoptic_faults_are_flagged(realdata: Path) -> None:
    """The Datumaro fixture's PNG is 5x5 for a 10x5 image, and its area and bbox disagree with the pixels."""
    train = realdata / "datumaro_coco" / "coco_panoptic" / "annotations" / "panoptic_train.json"
    found = findings(train)
    assert codes(found) == {"PAN_PNG_SIZE_MISMATCH": 1, "AREA_MISMATCH": 1, "BBOX_MISMATCH": 1}
    area = with_code(found, "AREA_MISMATCH")[0]
    assert (area.segment_id, area.numbers["declared_area"], area.numbers["area"]) == (460551, 20, 25)
    val = realdata / "datumaro_coco" / "coco_panoptic" / "annotations" / "panoptic_val.json"
    assert {f.segment_id for f in with_code(findings(val), "BBOX_MISMATCH")} == {7, 20}


def test_hf_transformers_panoptic_passes(realdata: Path, tmp_path: Path) -> None:
    """The real COCO image 39769 panoptic annotation, wrapped into a panoptic JSON, has no error."""
    fixture = realdata / "hf_transformers_coco"
    segments = json.loads((fixture / "coco_panoptic_annotations.txt").read_text())
    categories = json.loads((realdata / "panopticapi_sample" / "panoptic_coco_categories.json").read_text())
    data = {
        "images": [{"id": 39769, "file_name": "000000039769.png", "width": 640, "height": 480}],
        "annotations": [{"image_id": 39769, "file_name": "000000039769.png", "segments_info": segments}],
        "categories": categories,
    }
    path = write_json(tmp_path / "pan.json", data)
    found = findings(path, png_dir=fixture / "coco_panoptic", images_dir=fixture)
    assert found == []


def test_id_stats_match_per_segment_masks(realdata: Path) -> None:
    """The one-pass statistics equal what a full boolean mask per id gives, on both real PNGs."""
    for png in sorted((realdata / "panopticapi_sample" / "panoptic_examples").glob("*.png")):
        ids = rgb_to_ids(np.asarray(Image.open(png)))
        stats = id_stats(ids).as_dict()
        assert set(stats) == set(np.unique(ids).tolist())
        for segment_id, (area, box) in stats.items():
            ys, xs = np.nonzero(ids == segment_id)
            expected = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
            assert (area, box) == (ys.size, expected)
