"""Semantic label-map checks: the mapping file (`labelmap.json`, as the semantic writer makes it), then each
label map as the semantic reader's tolerant read gives it.

Each PNG is read once; np.bincount over its values gives every class's pixel count in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from converters.formats.label_map import masks_from_label_map
from converters.formats.semantic import (
    MAPPING_FILE,
    VOID,
    LabelMapRead,
    dataset_folder,
    read_label_map_tolerantly,
    read_mapping,
)
from converters.io import inside
from converters.qa.common import Recorder, check_image_file, duplicates, find_image, is_int
from converters.qa.core import ItemReport, QAOptions, Run
from converters.qa.findings import Finding
from converters.qa.overlay import Overlay, pictures


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


def start(path: Path, options: QAOptions) -> Run:
    """Read the mapping file once through the semantic reader; its findings and one job per label map."""
    sem_options = SemanticOptions(images_dir=options.images_dir, min_area=options.min_area)
    findings, jobs = check_dataset(path, sem_options)
    return Run(findings, jobs, partial(check_item, options=sem_options), unit="label maps", total=len(jobs))


def check_dataset(path: Path, options: SemanticOptions) -> tuple[list[Finding], list[LabelMapJob]]:
    """Checks of the mapping file; returns the findings and one job per label map."""
    folder = dataset_folder(path)
    mapping_path = folder / MAPPING_FILE
    mapping = read_mapping(folder)
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
        label_map = inside(folder, image["label_map"], file=str(mapping_path), image_id=image.get("id"))
        jobs.append(LabelMapJob(label_map, image, values, void))
    return rec.findings, jobs


def check_item(
    job: LabelMapJob, options: SemanticOptions, draw: bool = False, repair: bool = False
) -> ItemReport:
    """Check one label map (what workers run)."""
    read = read_label_map_tolerantly(job.image, job.png_path)
    findings, label_map = judge(read, job.values, job.void, options)
    image = read.image
    report = ItemReport(("image", str(image.id)), findings, file_name=image.file_name)
    if draw and findings and label_map is not None:
        named = {f.numbers.get("value", f.segment_id) for f in findings}
        report.pictures = pictures(
            Overlay(
                *label_map.shape,
                labels=label_map,
                outlined=[mask for value, mask in masks_from_label_map(label_map).items() if value in named],
                background=find_image(options.images_dir, image.file_name),
            )
        )
    return report


def judge(
    read: LabelMapRead, values: frozenset[int], void: int, options: SemanticOptions
) -> tuple[list[Finding], np.ndarray | None]:
    """The findings of one label map as the semantic reader read it, and the map when it could be read as
    one."""
    image, png_path = read.image, read.png_path
    rec = Recorder(file=str(png_path), image_id=image.id, file_name=image.file_name)
    width, height = image.width, image.height
    check_image_file(rec, options.images_dir, image.file_name or "", width, height)
    if read.missing:
        rec.add("SEM_PNG_MISSING", f"{png_path.name} does not exist")
        return rec.findings, None
    label_map = read.label_map
    if label_map is None or label_map.ndim != 2 or label_map.dtype not in (np.uint8, np.uint16):
        shape = "unreadable" if label_map is None else f"{label_map.dtype} with shape {label_map.shape}"
        rec.add("SEM_PNG_NOT_SINGLE_CHANNEL", f"{png_path.name} is {shape}")
        return rec.findings, None
    if label_map.shape != (height, width):
        rec.add(
            "SEM_PNG_SIZE_MISMATCH",
            f"{png_path.name} is {label_map.shape[1]}x{label_map.shape[0]}; "
            f"the image entry says {width}x{height}",
        )
    counts = np.bincount(label_map.ravel())
    for value in np.flatnonzero(counts).tolist():
        area = int(counts[value])
        if value == void:
            continue
        if value not in values:
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
    return rec.findings, label_map
