"""Panoptic datasets for the eval tests, read and written with Pillow and numpy (not the code under test), and
the perturbations the tests apply to a real one."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tests.conftest import REALDATA

PANOPTIC_SAMPLE = REALDATA / "panopticapi_sample" / "panoptic_examples.json"
DETECTION_SAMPLE = REALDATA / "panopticapi_sample" / "panoptic_coco_detection_format.json"


@dataclass
class PanImage:
    entry: dict  # the COCO `images` entry
    ids: np.ndarray  # (h, w) int64 segment ids, 0 = void
    segments: list[dict] = field(default_factory=list)  # segments_info entries (id, category_id, iscrowd)

    def segment(self, segment_id: int) -> dict:
        return next(info for info in self.segments if info["id"] == segment_id)

    def next_id(self) -> int:
        return max([info["id"] for info in self.segments] + [int(self.ids.max())]) + 1


@dataclass
class PanDataset:
    categories: list[dict]
    images: list[PanImage]

    def copy(self) -> PanDataset:
        return copy.deepcopy(self)

    def category(self, category_id: int) -> dict:
        return next(c for c in self.categories if c["id"] == category_id)


def read_panoptic(path: Path) -> PanDataset:
    data = json.loads(Path(path).read_text())
    folder = Path(path).with_suffix("")
    entries = {entry["id"]: entry for entry in data["images"]}
    images = []
    for annotation in data["annotations"]:
        rgb = np.asarray(Image.open(folder / annotation["file_name"]).convert("RGB")).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
        segments = [
            {"id": s["id"], "category_id": s["category_id"], "iscrowd": s.get("iscrowd", 0)}
            for s in annotation["segments_info"]
        ]
        images.append(PanImage(dict(entries[annotation["image_id"]]), ids, segments))
    return PanDataset(data["categories"], images)


def write_panoptic(dataset: PanDataset, path: Path) -> Path:
    """COCO panoptic JSON + PNG folder; areas and boxes from the pixels (as the format requires)."""
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    annotations = []
    for image in dataset.images:
        name = Path(image.entry["file_name"]).with_suffix(".png").name
        rgb = np.stack([image.ids % 256, image.ids // 256 % 256, image.ids // 65536], axis=-1).astype(
            np.uint8
        )
        Image.fromarray(rgb).save(folder / name)
        infos = []
        for info in image.segments:
            ys, xs = np.nonzero(image.ids == info["id"])
            box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            infos.append({**info, "area": int(ys.size), "bbox": box})
        annotations.append({"image_id": image.entry["id"], "file_name": name, "segments_info": infos})
    data = {
        "images": [image.entry for image in dataset.images],
        "annotations": annotations,
        "categories": dataset.categories,
    }
    path.write_text(json.dumps(data))
    return path


# -- perturbations (each returns a changed copy) -------------------------------------------------------------


def eroded(dataset: PanDataset, pixels: int) -> PanDataset:
    """Every segment shrunk by `pixels`; the pixels removed become void."""
    out = dataset.copy()
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    for image in out.images:
        new = np.zeros_like(image.ids)
        for info in image.segments:
            mask = cv2.erode((image.ids == info["id"]).astype(np.uint8), kernel)
            new[mask > 0] = info["id"]
        image.ids = new
        image.segments = [info for info in image.segments if (new == info["id"]).any()]
    return out


def dropped(dataset: PanDataset, every: int) -> PanDataset:
    """Every `every`-th segment of each image removed (its pixels become void)."""
    out = dataset.copy()
    for image in out.images:
        for info in image.segments[::every]:
            image.ids[image.ids == info["id"]] = 0
        image.segments = [info for i, info in enumerate(image.segments) if i % every]
    return out


def relabelled(dataset: PanDataset, every: int) -> PanDataset:
    """Every `every`-th segment given another category of the same kind (thing or stuff)."""
    out = dataset.copy()
    for image in out.images:
        for info in image.segments[::every]:
            isthing = out.category(info["category_id"])["isthing"]
            others = [
                c["id"] for c in out.categories if c["isthing"] == isthing and c["id"] != info["category_id"]
            ]
            info["category_id"] = others[(info["id"] * 7) % len(others)]
    return out


def split(dataset: PanDataset, every: int, things_only: bool = False) -> PanDataset:
    """Every `every`-th segment (thing, with `things_only`) cut in two at the middle of its box (the left half
    keeps the id)."""
    out = dataset.copy()
    for image in out.images:
        for info in list(image.segments[::every]):
            if things_only and not out.category(info["category_id"])["isthing"]:
                continue
            ys, xs = np.nonzero(image.ids == info["id"])
            right = xs > (xs.min() + xs.max()) / 2
            if right.all() or not right.any():
                continue
            new_id = image.next_id()
            image.ids[ys[right], xs[right]] = new_id
            image.segments.append({**info, "id": new_id})
    return out


def merged(dataset: PanDataset) -> PanDataset:
    """In each image, all segments of each thing category joined into the first one."""
    out = dataset.copy()
    for image in out.images:
        first: dict[int, int] = {}
        kept = []
        for info in image.segments:
            if out.category(info["category_id"])["isthing"] and info["category_id"] in first:
                image.ids[image.ids == info["id"]] = first[info["category_id"]]
            else:
                first.setdefault(info["category_id"], info["id"])
                kept.append(info)
        image.segments = kept
    return out


def with_crowd(dataset: PanDataset, every: int) -> PanDataset:
    """Every `every`-th thing segment marked iscrowd."""
    out = dataset.copy()
    for image in out.images:
        things = [info for info in image.segments if out.category(info["category_id"])["isthing"]]
        for info in things[::every]:
            info["iscrowd"] = 1
    return out
