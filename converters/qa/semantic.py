"""Semantic label-map checks: the mapping file (`labelmap.json`, as the semantic writer makes it), each PNG.

Each PNG is read once; np.bincount over its values gives every class's pixel count in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from converters.formats.semantic import MAPPING_FILE, VOID
from converters.qa.common import Recorder, check_image_file, duplicates, is_int, load_json
from converters.qa.findings import Finding


@dataclass(frozen=True)
class SemanticOptions:
    images_dir: Path | None = None
    min_area: int = 0


@dataclass
class LabelMapJob:
    png_path: Path
    image: dict[str, Any]
    values: frozenset[int]
    void: int


def dataset_folder(path: Path) -> Path:
    """The semantic dataset's folder, given the folder itself or its mapping file."""
    return path.parent if path.is_file() else path


def check_dataset(path: Path, options: SemanticOptions) -> tuple[list[Finding], list[LabelMapJob]]:
    """Checks of the mapping file; returns the findings and one job per label map."""
    folder = dataset_folder(path)
    mapping_path = folder / MAPPING_FILE
    mapping = load_json(mapping_path)
    rec = Recorder(file=str(mapping_path))
    if not isinstance(mapping, dict) or not isinstance(mapping.get("classes"), list):
        rec.add(
            "JSON_STRUCTURE", f"{MAPPING_FILE} must be an object with a 'classes' list and an 'images' list"
        )
        return rec.findings, []
    images = mapping.get("images")
    if not isinstance(images, list):
        rec.add("JSON_STRUCTURE", f"{MAPPING_FILE} has no 'images' list")
        images = []
    classes = [entry for entry in mapping["classes"] if isinstance(entry, dict)]
    for key in ("value", "id"):
        for duplicate in duplicates(entry.get(key) for entry in classes):
            rec.add("DUPLICATE_CATEGORY_ID", f"class {key} {duplicate} is listed more than once")
    for duplicate in duplicates(image.get("id") for image in images if isinstance(image, dict)):
        rec.at(image_id=duplicate).add("DUPLICATE_IMAGE_ID", f"image id {duplicate} is listed more than once")
    void = mapping.get("void", VOID)
    values = frozenset(entry["value"] for entry in classes if is_int(entry.get("value")))
    jobs = []
    for image in images:
        if not isinstance(image, dict) or not isinstance(image.get("label_map"), str):
            rec.add("JSON_STRUCTURE", f"image entry {image!r:.80} has no label_map name")
            continue
        jobs.append(LabelMapJob(folder / image["label_map"], image, values, void))
    return rec.findings, jobs


def check_label_map(job: LabelMapJob, options: SemanticOptions) -> list[Finding]:
    image = job.image
    rec = Recorder(file=str(job.png_path), image_id=image.get("id"), file_name=image.get("file_name"))
    width, height = image.get("width"), image.get("height")
    check_image_file(rec, options.images_dir, image.get("file_name", ""), width, height)
    if not job.png_path.is_file():
        rec.add("SEM_PNG_MISSING", f"{job.png_path.name} does not exist")
        return rec.findings
    label_map = cv2.imread(str(job.png_path), cv2.IMREAD_UNCHANGED)
    if label_map is None or label_map.ndim != 2 or label_map.dtype not in (np.uint8, np.uint16):
        shape = "unreadable" if label_map is None else f"{label_map.dtype} with shape {label_map.shape}"
        rec.add("SEM_PNG_NOT_SINGLE_CHANNEL", f"{job.png_path.name} is {shape}")
        return rec.findings
    if label_map.shape != (height, width):
        rec.add(
            "SEM_PNG_SIZE_MISMATCH",
            f"{job.png_path.name} is {label_map.shape[1]}x{label_map.shape[0]}; "
            f"the image entry says {width}x{height}",
        )
    counts = np.bincount(label_map.ravel())
    for value in np.flatnonzero(counts).tolist():
        area = int(counts[value])
        if value == job.void:
            continue
        if value not in job.values:
            rec.add(
                "SEM_UNKNOWN_VALUE",
                f"value {value} covers {area} px but is not a class",
                value=value,
                area=area,
            )
        elif area < options.min_area:
            rec.at(segment_id=value).add(
                "SEGMENT_TINY", f"class value {value} covers only {area} px", area=area
            )
    return rec.findings
