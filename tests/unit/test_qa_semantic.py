"""Semantic label-map QA: label maps built from the real panopticapi sample pass; planted faults are found."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from converters.formats.label_map import rgb_to_ids
from tests.unit.qa_helpers import duplicate_first, findings, reported, with_code, write_json

FIRST = "000000142238.png"


@pytest.fixture
def semantic(realdata: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A semantic folder in the semantic writer's layout: one class-value PNG per image and labelmap.json."""
    sample = realdata / "panopticapi_sample"
    data = json.loads((sample / "panoptic_examples.json").read_text())
    used = sorted({s["category_id"] for a in data["annotations"] for s in a["segments_info"]})
    value_of = {category_id: value for value, category_id in enumerate(used, start=1)}
    folder = tmp_path / "semantic"
    folder.mkdir()
    images = []
    for annotation, image in zip(data["annotations"], data["images"], strict=True):
        ids = rgb_to_ids(np.asarray(Image.open(sample / "panoptic_examples" / annotation["file_name"])))
        label_map = np.zeros(ids.shape, np.uint8)
        for segment in annotation["segments_info"]:
            label_map[ids == segment["id"]] = value_of[segment["category_id"]]
        cv2.imwrite(str(folder / annotation["file_name"]), label_map)
        images.append(
            {
                **{k: image[k] for k in ("id", "file_name", "width", "height")},
                "label_map": annotation["file_name"],
            }
        )
    mapping = {
        "void": 0,
        "dtype": "uint8",
        "classes": [
            {"value": value, "id": category_id, "name": str(category_id)}
            for category_id, value in value_of.items()
        ],
        "images": images,
    }
    return folder, mapping


def _missing(folder: Path, mapping: dict) -> None:
    (folder / FIRST).unlink()


def _rgb(folder: Path, mapping: dict) -> None:
    grey = cv2.imread(str(folder / FIRST), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(folder / FIRST), cv2.merge([grey, grey, grey]))


def _size(folder: Path, mapping: dict) -> None:
    mapping["images"][0]["width"] += 1


def _unknown(folder: Path, mapping: dict) -> None:
    label_map = cv2.imread(str(folder / FIRST), cv2.IMREAD_UNCHANGED)
    label_map[:20, :20] = 200
    cv2.imwrite(str(folder / FIRST), label_map)


def _tiny(folder: Path, mapping: dict) -> None:
    mapping["classes"].append({"value": 99, "id": 999, "name": "speck"})
    label_map = cv2.imread(str(folder / FIRST), cv2.IMREAD_UNCHANGED)
    label_map[0, :3] = 99
    cv2.imwrite(str(folder / FIRST), label_map)


def _structure(folder: Path, mapping: dict) -> None:
    del mapping["images"]


PLANTS: dict[str, Callable[[Path, dict], None]] = {
    "SEM_PNG_MISSING": _missing,
    "SEM_PNG_NOT_SINGLE_CHANNEL": _rgb,
    "SEM_PNG_SIZE_MISMATCH": _size,
    "SEM_UNKNOWN_VALUE": _unknown,
    "DUPLICATE_CATEGORY_ID": duplicate_first("classes"),
    "DUPLICATE_IMAGE_ID": duplicate_first("images"),
    "SEGMENT_TINY": _tiny,
    "JSON_STRUCTURE": _structure,
}


def test_clean_label_maps_have_no_findings(semantic, realdata: Path) -> None:
    """No check fires on the clean label maps, so each planted fault below is what its check reacts to."""
    folder, mapping = semantic
    write_json(folder / "labelmap.json", mapping)
    assert findings(folder, images_dir=realdata / "panopticapi_sample" / "input_images") == []


@pytest.mark.parametrize("code", sorted(PLANTS))
def test_planted_fault_is_found(code: str, semantic) -> None:
    folder, mapping = semantic
    PLANTS[code](folder, mapping)
    write_json(folder / "labelmap.json", mapping)
    reported(findings(folder), code)


def test_unknown_value_names_value_and_pixels(semantic) -> None:
    folder, mapping = semantic
    _unknown(folder, mapping)
    write_json(folder / "labelmap.json", mapping)
    (found,) = with_code(findings(folder), "SEM_UNKNOWN_VALUE")
    assert (found.image_id, found.numbers) == (142238, {"value": 200, "area": 400})
