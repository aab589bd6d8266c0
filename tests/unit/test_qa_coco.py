"""COCO instance QA on real COCO ground truth: clean data passes, each planted fault is found and placed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from converters.qa.common import first_self_intersection
from tests.unit.qa_helpers import (
    codes,
    duplicate_first,
    findings,
    hf_polygons,
    reported,
    with_code,
    write_json,
)

IMAGE = 142238  # 640 x 427
NEW_ID = 990001


@pytest.fixture
def sample(realdata: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """The real panopticapi sample in COCO detection format (compressed RLE), with its JPEGs."""
    source = realdata / "panopticapi_sample"
    images = tmp_path / "images"
    shutil.copytree(source / "input_images", images)
    data = json.loads((source / "panoptic_coco_detection_format.json").read_text())
    return tmp_path / "instances.json", images, data


def _first(data: dict) -> dict:
    return next(a for a in data["annotations"] if a["image_id"] == IMAGE)


def _add(data: dict, **fields: Any) -> Any:
    data["annotations"].append(
        {
            "id": NEW_ID,
            "image_id": IMAGE,
            "category_id": 1,
            "iscrowd": 0,
            "area": 400,
            "bbox": [10, 10, 20, 20],
        }
        | fields
    )
    return NEW_ID


def _duplicate_annotation(images: Path, data: dict) -> Any:
    data["annotations"].append(dict(_first(data), image_id=439180))
    return _first(data)["id"]


def _undecodable(images: Path, data: dict) -> Any:
    return _add(data, segmentation={"counts": [5, 10], "size": [427, 640]}, iscrowd=1)


def _rle_size(images: Path, data: dict) -> Any:
    _first(data)["segmentation"]["size"] = [428, 640]
    return _first(data)["id"]


def _empty(images: Path, data: dict) -> Any:
    return _add(data, segmentation={"counts": [427 * 640], "size": [427, 640]}, area=0)


def _too_few_points(images: Path, data: dict) -> Any:
    return _add(data, segmentation=[[10, 10, 30, 30]])


def _odd(images: Path, data: dict) -> Any:
    return _add(data, segmentation=[[10, 10, 30, 10, 30, 30, 10]])


def _bow_tie(images: Path, data: dict) -> Any:
    return _add(data, segmentation=[[10, 10, 30, 30, 30, 10, 10, 30]])


def _outside(images: Path, data: dict) -> Any:
    return _add(data, segmentation=[[-15, 10, 30, 10, 30, 30, 10, 30]])


def _overlap(images: Path, data: dict) -> Any:
    data["annotations"].append(dict(_first(data), id=NEW_ID))
    return _first(data)["id"]


def _area(images: Path, data: dict) -> Any:
    _first(data)["area"] *= 3
    return _first(data)["id"]


def _bbox(images: Path, data: dict) -> Any:
    _first(data)["bbox"][2] += 3
    return _first(data)["id"]


def _bbox_invalid(images: Path, data: dict) -> Any:
    _first(data)["bbox"] = [1, 2, 3]
    return _first(data)["id"]


def _iscrowd(images: Path, data: dict) -> Any:
    _first(data)["iscrowd"] = "false"
    return _first(data)["id"]


def _category_missing(images: Path, data: dict) -> Any:
    _first(data)["category_id"] = 4242
    return _first(data)["id"]


def _category_zero(images: Path, data: dict) -> Any:
    data["categories"].append({"id": 0, "name": "background"})
    return None


def _image_ref(images: Path, data: dict) -> Any:
    annotation = _first(data)
    annotation["image_id"] = 31337
    return annotation["id"]


def _structure(images: Path, data: dict) -> Any:
    data["categories"] = {"not": "a list"}
    return None


def _tiny(images: Path, data: dict) -> Any:
    # Two pixels at the top-left corner, column-major: 0 zeros, 2 ones, the rest zeros.
    return _add(
        data, segmentation={"counts": [0, 2, 427 * 640 - 2], "size": [427, 640]}, area=2, bbox=[0, 0, 1, 2]
    )


def _file_missing(images: Path, data: dict) -> Any:
    (images / "000000142238.jpg").unlink()
    return None


def _unreadable(images: Path, data: dict) -> Any:
    (images / "000000142238.jpg").write_bytes(b"not a jpeg")
    return None


def _exif_rotated(images: Path, data: dict) -> Any:
    """The JPEG says 'rotate 90°' in EXIF: a browser shows it 427 x 640, the annotation says 640 x 427."""
    path = images / "000000142238.jpg"
    image = Image.open(path)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif)
    return None


PLANTS: dict[str, Callable[[Path, dict], Any]] = {
    "DUPLICATE_ANNOTATION_ID": _duplicate_annotation,
    "MASK_UNDECODABLE": _undecodable,
    "MASK_SIZE_MISMATCH": _rle_size,
    "SEGMENT_EMPTY": _empty,
    "POLYGON_TOO_FEW_POINTS": _too_few_points,
    "POLYGON_ODD_COORDINATES": _odd,
    "POLYGON_SELF_INTERSECTION": _bow_tie,
    "POLYGON_OUT_OF_IMAGE": _outside,
    "SEGMENTS_OVERLAP": _overlap,
    "AREA_MISMATCH": _area,
    "BBOX_MISMATCH": _bbox,
    "BBOX_INVALID": _bbox_invalid,
    "ISCROWD_INVALID": _iscrowd,
    "CATEGORY_REF_MISSING": _category_missing,
    "CATEGORY_ID_ZERO": _category_zero,
    "DUPLICATE_IMAGE_ID": duplicate_first("images"),
    "DUPLICATE_CATEGORY_ID": duplicate_first("categories"),
    "IMAGE_REF_MISSING": _image_ref,
    "JSON_STRUCTURE": _structure,
    "SEGMENT_TINY": _tiny,
    "IMAGE_FILE_MISSING": _file_missing,
    "IMAGE_UNREADABLE": _unreadable,
    "IMAGE_SIZE_MISMATCH": _exif_rotated,
}


def test_real_coco_ground_truth_has_no_findings(realdata: Path, tmp_path: Path) -> None:
    """No check fires on two real clean datasets: RLE ground truth (checked for a panoptic target) and
    polygons, whose areas differ from the pixel counts by up to ~0.4%, within the tolerance."""
    rle = realdata / "panopticapi_sample" / "panoptic_coco_detection_format.json"
    polygons = write_json(tmp_path / "instances.json", hf_polygons(realdata))
    assert findings(rle, images_dir=realdata / "panopticapi_sample" / "input_images", target="panoptic") == []
    assert findings(polygons, images_dir=realdata / "hf_transformers_coco") == []


@pytest.mark.parametrize("code", sorted(PLANTS))
def test_planted_fault_is_found(code: str, sample) -> None:
    path, images, data = sample
    annotation_id = PLANTS[code](images, data)
    write_json(path, data)
    found = reported(findings(path, images_dir=images, target="panoptic"), code)
    if annotation_id is not None:
        assert annotation_id in {f.annotation_id for f in found}


def test_exif_mismatch_names_both_sizes(sample) -> None:
    path, images, data = sample
    _exif_rotated(images, data)
    write_json(path, data)
    (found,) = with_code(findings(path, images_dir=images), "IMAGE_SIZE_MISMATCH")
    assert (found.image_id, found.file_name) == (IMAGE, "000000142238.jpg")
    assert found.numbers == {
        "annotated_width": 640,
        "annotated_height": 427,
        "file_width": 427,
        "file_height": 640,
    }
    assert "EXIF" in found.message


def test_overlapping_real_polygons_are_an_error_only_for_panoptic(realdata: Path, tmp_path: Path) -> None:
    path = write_json(tmp_path / "instances.json", hf_polygons(realdata))
    assert "SEGMENTS_OVERLAP" not in codes(findings(path))
    overlaps = with_code(findings(path, target="panoptic"), "SEGMENTS_OVERLAP")
    # The bed (category 65) lies under both cats; every pair is counted once with its shared pixels.
    assert overlaps and all(f.numbers["pixels"] > 0 for f in overlaps)
    pairs = {frozenset((f.annotation_id, f.numbers["other_annotation_id"])) for f in overlaps}
    assert len(pairs) == len(overlaps)


def test_datumaro_instance_bbox_fault_is_flagged(realdata: Path) -> None:
    """Datumaro's crowd RLE covers two full columns (bbox [0, 0, 2, 10]) but declares [0, 0, 1, 9]."""
    path = realdata / "datumaro_coco" / "coco_instances" / "annotations" / "instances_val.json"
    (found,) = with_code(findings(path), "BBOX_MISMATCH")
    assert found.annotation_id == 2
    assert found.numbers == {"declared_bbox": [0.0, 0.0, 1.0, 9.0], "bbox": [0, 0, 2, 10]}


def test_string_iscrowd_in_coco_annotator_export_is_flagged(realdata: Path) -> None:
    path = realdata / "labelstudio" / "sdk_tests" / "test_import_coco" / "coco_import_input.json"
    assert {f.annotation_id for f in with_code(findings(path), "ISCROWD_INVALID")} == {0, 1000}


@pytest.mark.parametrize(
    ("ring", "expected"),
    [
        ([(0, 0), (4, 0), (4, 4), (0, 4)], None),
        ([(0, 0), (4, 4), (4, 0), (0, 4)], (0, 2)),
        ([(0, 0), (4, 0), (4, 0), (4, 4), (0, 4)], None),  # a repeated point is not a crossing
        ([(0, 0), (6, 0), (6, 6), (3, 6), (3, -2), (0, 6)], (0, 3)),
    ],
)
def test_self_intersection(ring: list[tuple[int, int]], expected: tuple[int, int] | None) -> None:
    assert first_self_intersection(np.array(ring, dtype=float)) == expected
