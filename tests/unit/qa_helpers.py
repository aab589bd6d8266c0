"""Shared helpers for the QA tests: writable copies of the real fixtures, a small clean Label Studio export,
findings by code."""

from __future__ import annotations

import base64
import copy
import io
import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from label_studio_sdk.converter.brush import mask2rle
from PIL import Image

from converters.qa import QAOptions, check
from converters.qa.findings import Finding


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def copy_panoptic_sample(realdata: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A writable copy of the real panopticapi sample: (panoptic JSON, images folder)."""
    sample = realdata / "panopticapi_sample"
    target = tmp_path / "pan"
    shutil.copytree(sample / "panoptic_examples", target / "panoptic_examples")
    shutil.copytree(sample / "input_images", target / "images")
    shutil.copy(sample / "panoptic_examples.json", target / "panoptic_examples.json")
    return target / "panoptic_examples.json", target / "images"


def findings(path: Path, **options: Any) -> list[Finding]:
    return check(path, QAOptions(**options)).findings


def codes(found: list[Finding]) -> Counter[str]:
    return Counter(finding.code for finding in found)


def with_code(found: list[Finding], code: str) -> list[Finding]:
    return [finding for finding in found if finding.code == code]


def reported(found: list[Finding], code: str) -> list[Finding]:
    """The findings with `code`, of which there must be at least one."""
    hits = with_code(found, code)
    assert hits, f"{code} not reported"
    return hits


def hf_polygons(realdata: Path) -> dict[str, Any]:
    """The real COCO image 39769 with its six polygon instances (they overlap: the bed is under the cats)."""
    annotations = json.loads((realdata / "hf_transformers_coco" / "coco_annotations.txt").read_text())
    categories = json.loads((realdata / "panopticapi_sample" / "panoptic_coco_categories.json").read_text())
    return {
        "images": [{"id": 39769, "file_name": "000000039769.png", "width": 640, "height": 480}],
        "annotations": annotations,
        "categories": categories,
    }


def duplicate_first(key: str) -> Callable[[Path, dict[str, Any]], None]:
    """A plant that lists the first entry of `data[key]` twice (the DUPLICATE_*_ID checks of every format
    whose JSON holds id lists: COCO, COCO panoptic, semantic labelmap.json)."""

    def plant(_: Path, data: dict[str, Any]) -> None:
        data[key].append(dict(data[key][0]))

    return plant


def hf_polygons_with_an_empty_mask(realdata: Path) -> dict[str, Any]:
    """`hf_polygons` plus annotation 5, an RLE that covers no pixel (SEGMENT_EMPTY)."""
    data = hf_polygons(realdata)
    data["annotations"].append(
        {
            "id": 5,
            "image_id": 39769,
            "category_id": 1,
            "iscrowd": 0,
            "area": 0,
            "bbox": [0, 0, 1, 1],
            "segmentation": {"counts": [640 * 480], "size": [480, 640]},
        }
    )
    return data


# -- a small Label Studio export -------------------------------------------------------------------------

LS_WIDTH, LS_HEIGHT = 64, 48
LS_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"><Label value="Cat"/><Label value="Dog"/></BrushLabels>
  <PolygonLabels name="poly" toName="image"><Label value="Cat"/><Label value="Dog"/></PolygonLabels>
  <BitmaskLabels name="bitmask" toName="image"><Label value="Cat"/><Label value="Dog"/></BitmaskLabels>
</View>"""


def alpha_box(top: int, left: int, bottom: int, right: int, value: int = 255) -> np.ndarray:
    """An alpha plane of the export's image size with one filled rectangle."""
    alpha = np.zeros((LS_HEIGHT, LS_WIDTH), np.uint8)
    alpha[top:bottom, left:right] = value
    return alpha


def _region(region_id: str, kind: str, value: dict[str, Any], label: str) -> dict[str, Any]:
    name = {"brushlabels": "brush", "polygonlabels": "poly", "bitmasklabels": "bitmask"}[kind]
    return {
        "id": region_id,
        "type": kind,
        "from_name": name,
        "to_name": "image",
        "original_width": LS_WIDTH,
        "original_height": LS_HEIGHT,
        "image_rotation": 0,
        "value": {**value, kind: [label]},
    }


def brush_region(region_id: str, alpha: np.ndarray, label: str = "Cat") -> dict[str, Any]:
    """A brush region encoded by the SDK's own encoder."""
    return _region(region_id, "brushlabels", {"format": "rle", "rle": mask2rle(alpha)}, label)


def polygon_region(region_id: str, points: list[list[float]], label: str = "Dog") -> dict[str, Any]:
    return _region(region_id, "polygonlabels", {"points": points, "closed": True}, label)


def bitmask_region(region_id: str, alpha: np.ndarray, label: str = "Dog") -> dict[str, Any]:
    rgba = np.zeros((*alpha.shape, 4), np.uint8)
    rgba[..., 3] = alpha
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return _region(region_id, "bitmasklabels", {"imageDataURL": url}, label)


def clean_tasks() -> list[dict[str, Any]]:
    """Task 1: two annotators who agree; task 2: one annotation. No region overlaps another."""
    regions = [
        brush_region("b1", alpha_box(5, 5, 20, 25)),
        polygon_region("p1", [[50, 50], [90, 50], [90, 90], [50, 90]]),
        bitmask_region("m1", alpha_box(30, 2, 40, 20)),
    ]
    return [
        {
            "id": 1,
            "data": {"image": "/data/upload/1/one.png"},
            "annotations": [
                {"id": 11, "was_cancelled": False, "result": copy.deepcopy(regions)},
                {"id": 12, "was_cancelled": False, "result": copy.deepcopy(regions)},
            ],
            "predictions": [],
        },
        {
            "id": 2,
            "data": {"image": "/data/local-files/?d=pics/two.png"},
            "annotations": [{"id": 21, "result": [brush_region("b2", alpha_box(0, 0, 10, 10), "Dog")]}],
        },
    ]
