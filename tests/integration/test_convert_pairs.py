"""The format pairs no other test converted (issue 19, item 17), each checked pixel for pixel against the
source with decoders that are not ours: Pillow for PNGs, pycocotools for COCO, label-studio-sdk for brush."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from label_studio_sdk.converter import brush as sdk_brush
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from converters.convert import convert
from tests.integration.test_convert_roundtrips import _panoptic_ids, panoptic_segments


@pytest.fixture(scope="module")
def panopticapi(realdata: Path) -> Path:
    return realdata / "panopticapi_sample"


@pytest.fixture(scope="module")
def semantic(
    panopticapi: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[int, np.ndarray]]:
    """panopticapi's two images as a semantic folder, and per image id the category of every pixel (0: void),
    made from the panoptic source with Pillow."""
    folder = tmp_path_factory.mktemp("semantic") / "maps"
    source = panopticapi / "panoptic_examples.json"
    convert("coco-panoptic", "semantic", source, folder)
    expected = {}
    for annotation in json.loads(source.read_text())["annotations"]:
        ids = _panoptic_ids(source.with_suffix("") / annotation["file_name"])
        categories = np.zeros(ids.shape, dtype=np.int64)
        for info in annotation["segments_info"]:
            categories[ids == info["id"]] = info["category_id"]
        expected[annotation["image_id"]] = categories
    return folder, expected


def semantic_categories(folder: Path) -> dict[int, np.ndarray]:
    """Per image id, the category of every pixel of a semantic folder (read with Pillow; 0: void)."""
    mapping = json.loads((folder / "labelmap.json").read_text())
    category_of = np.zeros(max(c["value"] for c in mapping["classes"]) + 1, dtype=np.int64)
    for entry in mapping["classes"]:
        category_of[entry["value"]] = entry["id"]
    return {
        image["id"]: category_of[np.asarray(Image.open(folder / image["label_map"]))]
        for image in mapping["images"]
    }


def coco_categories(json_path: Path) -> dict[int, np.ndarray]:
    """Per image id, the category of every pixel of a COCO file whose masks do not overlap (pycocotools)."""
    coco = COCO(str(json_path))
    out = {}
    for image in coco.loadImgs(coco.getImgIds()):
        categories = np.zeros((image["height"], image["width"]), dtype=np.int64)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            mask = coco.annToMask(annotation).astype(bool)
            assert not categories[mask].any(), "masks overlap"
            categories[mask] = annotation["category_id"]
        out[image["id"]] = categories
    return out


def test_semantic_to_coco(semantic, tmp_path) -> None:
    folder, expected = semantic
    convert("semantic", "coco", folder, tmp_path / "coco.json")
    assert coco_categories(tmp_path / "coco.json").keys() == expected.keys()
    for image_id, categories in coco_categories(tmp_path / "coco.json").items():
        np.testing.assert_array_equal(categories, expected[image_id])
    # One annotation per class present in each map.
    annotations = json.loads((tmp_path / "coco.json").read_text())["annotations"]
    assert len(annotations) == sum(len(set(np.unique(c).tolist()) - {0}) for c in expected.values())


def test_semantic_to_labelstudio(semantic, tmp_path) -> None:
    folder, expected = semantic
    convert("semantic", "labelstudio", folder, tmp_path / "tasks.json")
    mapping = json.loads((folder / "labelmap.json").read_text())
    name_to_id = {entry["name"]: entry["id"] for entry in mapping["classes"]}
    file_to_id = {image["file_name"]: image["id"] for image in mapping["images"]}
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert len(tasks) == len(expected)
    for task in tasks:
        categories = expected[file_to_id[task["data"]["image"]]]
        painted = np.zeros(categories.shape, dtype=np.int64)
        for result in task["annotations"][0]["result"]:
            height, width = result["original_height"], result["original_width"]
            alpha = sdk_brush.decode_rle(result["value"]["rle"]).reshape(height, width, 4)[:, :, 3]
            inside = alpha > 0
            assert not painted[inside].any()
            painted[inside] = name_to_id[result["value"]["brushlabels"][0]]
        np.testing.assert_array_equal(painted, categories)


def test_coco_to_semantic(panopticapi, semantic, tmp_path) -> None:
    # panopticapi's own converter wrote this detection-format COCO file from the same panoptic examples.
    source = panopticapi / "panoptic_coco_detection_format.json"
    convert(
        "coco",
        "semantic",
        source,
        tmp_path / "maps",
        categories_file=panopticapi / "panoptic_coco_categories.json",
    )
    written = semantic_categories(tmp_path / "maps")
    from_coco = coco_categories(source)
    assert written.keys() == from_coco.keys()
    for image_id, categories in written.items():
        np.testing.assert_array_equal(categories, from_coco[image_id])
        np.testing.assert_array_equal(categories, semantic[1][image_id])  # and the panoptic source agrees


def test_semantic_to_semantic(semantic, tmp_path) -> None:
    folder, expected = semantic
    convert("semantic", "semantic", folder, tmp_path / "again")
    again = semantic_categories(tmp_path / "again")
    assert again.keys() == expected.keys()
    for image_id, categories in again.items():
        np.testing.assert_array_equal(categories, expected[image_id])
    before = json.loads((folder / "labelmap.json").read_text())
    after = json.loads((tmp_path / "again/labelmap.json").read_text())
    assert after == before


def test_coco_panoptic_to_coco_panoptic(panopticapi, tmp_path) -> None:
    source = panopticapi / "panoptic_examples.json"
    convert("coco-panoptic", "coco-panoptic", source, tmp_path / "pan.json")
    assert panoptic_segments(tmp_path / "pan.json") == panoptic_segments(source)


def test_semantic_to_panoptic_matches_the_source_pixel_for_pixel(semantic, tmp_path) -> None:
    folder, expected = semantic
    convert("semantic", "coco-panoptic", folder, tmp_path / "pan.json")
    data = json.loads((tmp_path / "pan.json").read_text())
    assert len(data["annotations"]) == len(expected)
    for annotation in data["annotations"]:
        ids = _panoptic_ids(tmp_path / "pan" / annotation["file_name"])
        category_of = {0: 0} | {info["id"]: info["category_id"] for info in annotation["segments_info"]}
        categories = np.vectorize(category_of.__getitem__)(ids)
        np.testing.assert_array_equal(categories, expected[annotation["image_id"]])
        # A semantic map holds one segment per class: so does the panoptic output.
        listed = [info["category_id"] for info in annotation["segments_info"]]
        assert len(listed) == len(set(listed))


def test_more_than_255_classes_give_uint16_label_maps(tmp_path) -> None:
    categories = [{"id": index, "name": f"class {index}", "isthing": 0} for index in range(1, 301)]
    (tmp_path / "categories.json").write_text(json.dumps(categories))
    height, width = 12, 20
    truth = np.zeros((height, width), dtype=np.int64)
    truth[0:4, 0:5], truth[4:8, 5:12], truth[8:12, 12:20] = 1, 256, 300
    annotations = []
    for number, category_id in enumerate((1, 256, 300), start=1):
        rle = coco_mask.encode(np.asfortranarray(truth == category_id, dtype=np.uint8))
        rle["counts"] = rle["counts"].decode()
        annotations.append(
            {"id": number, "image_id": 7, "category_id": category_id, "segmentation": rle, "iscrowd": 0}
        )
    document = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": width, "height": height}],
        "annotations": annotations,
        "categories": categories,
    }
    (tmp_path / "coco.json").write_text(json.dumps(document))
    convert("coco", "semantic", tmp_path / "coco.json", tmp_path / "maps")
    mapping = json.loads((tmp_path / "maps/labelmap.json").read_text())
    assert mapping["dtype"] == "uint16"
    stored = cv2.imread(str(tmp_path / "maps/a.png"), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and Image.open(tmp_path / "maps/a.png").mode.startswith("I;16")
    assert set(np.unique(stored).tolist()) == {0, 1, 256, 300}  # values: the categories' places, from 1
    np.testing.assert_array_equal(semantic_categories(tmp_path / "maps")[7], truth)
    # And back to COCO, exactly.
    convert("semantic", "coco", tmp_path / "maps", tmp_path / "back.json")
    np.testing.assert_array_equal(coco_categories(tmp_path / "back.json")[7], truth)
