"""Shared helpers for the QA tests: writable copies of the real fixtures, findings by code."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

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


def hf_polygons(realdata: Path) -> dict[str, Any]:
    """The real COCO image 39769 with its six polygon instances (they overlap: the bed is under the cats)."""
    annotations = json.loads((realdata / "hf_transformers_coco" / "coco_annotations.txt").read_text())
    categories = json.loads((realdata / "panopticapi_sample" / "panoptic_coco_categories.json").read_text())
    return {
        "images": [{"id": 39769, "file_name": "000000039769.png", "width": 640, "height": 480}],
        "annotations": annotations,
        "categories": categories,
    }
