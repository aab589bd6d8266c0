"""Exact round trips between the four formats on the real fixtures, read back with independent code
(pycocotools, Pillow + numpy, the label-studio-sdk brush decoder)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from label_studio_sdk.converter import brush as sdk_brush
from PIL import Image
from pycocotools.coco import COCO

from converters import SegassistError
from converters.convert import convert, read
from converters.formats.label_map import rgb_to_ids


def _panoptic_ids(png: Path) -> np.ndarray:
    """A panoptic PNG's segment ids (R + 256 G + 256² B), decoded with Pillow, not the reader's OpenCV."""
    return rgb_to_ids(np.asarray(Image.open(png).convert("RGB")))


def pixel_key(indices: np.ndarray) -> str:
    return hashlib.sha1(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()


def panoptic_segments(json_path: Path, png_dir: Path | None = None) -> dict[str, list[tuple[int, int, str]]]:
    """Per PNG name (image ids may be renumbered): sorted (category, iscrowd, pixel hash) of every segment,
    read with Pillow and numpy only."""
    data = json.loads(json_path.read_text())
    png_dir = png_dir or json_path.with_suffix("")
    out = {}
    for annotation in data["annotations"]:
        ids = _panoptic_ids(png_dir / annotation["file_name"]).ravel()
        out[annotation["file_name"]] = sorted(
            (info["category_id"], info["iscrowd"], pixel_key(np.flatnonzero(ids == info["id"])))
            for info in annotation["segments_info"]
        )
    return out


def assert_pq_compute_preconditions(json_path: Path) -> None:
    """What panopticapi's pq_compute needs of a prediction/ground truth (and COCO's format rules)."""
    data = json.loads(json_path.read_text())
    categories = {c["id"]: c for c in data["categories"]}
    assert all({"isthing", "color"} <= set(c) for c in categories.values())
    images = {image["id"]: image for image in data["images"]}
    assert len(data["annotations"]) == len(images)
    for annotation in data["annotations"]:
        image = images[annotation["image_id"]]
        with Image.open(json_path.with_suffix("") / annotation["file_name"]) as png:
            assert png.mode == "RGB" and png.size == (image["width"], image["height"])
        ids = _panoptic_ids(json_path.with_suffix("") / annotation["file_name"])
        present, counts = np.unique(ids, return_counts=True)
        pixels = dict(zip(present.tolist(), counts.tolist(), strict=True))
        pixels.pop(0, None)
        listed = [info["id"] for info in annotation["segments_info"]]
        assert 0 not in listed and len(set(listed)) == len(listed)
        assert set(listed) == set(pixels)
        stuff_seen = set()
        for info in annotation["segments_info"]:
            assert info["category_id"] in categories and info["iscrowd"] in (0, 1)
            assert info["area"] == pixels[info["id"]]
            rows, cols = np.nonzero(ids == info["id"])
            assert info["bbox"] == [
                cols.min(),
                rows.min(),
                cols.max() - cols.min() + 1,
                rows.max() - rows.min() + 1,
            ]
            if not categories[info["category_id"]]["isthing"]:
                assert info["category_id"] not in stuff_seen  # one segment per stuff category
                stuff_seen.add(info["category_id"])


def coco_masks(json_path: Path) -> dict[int, list[tuple[int, int, str]]]:
    """Per image, sorted (category, iscrowd, pixel hash) of every annotation, decoded by pycocotools."""
    coco = COCO(str(json_path))
    out: dict[int, list] = {image_id: [] for image_id in coco.getImgIds()}
    for annotation in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(annotation)
        assert annotation["area"] == int(mask.sum())
        out[annotation["image_id"]].append(
            (annotation["category_id"], int(annotation["iscrowd"]), pixel_key(np.flatnonzero(mask)))
        )
    return {image_id: sorted(entries) for image_id, entries in out.items()}


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if ".tmp-" in path.name)


@pytest.fixture(scope="module")
def panopticapi(realdata):
    return realdata / "panopticapi_sample"


@pytest.fixture
def hf_panoptic(realdata, tmp_path):
    """The transformers COCO fixture's segments_info wrapped as a panoptic JSON (PNGs stay in realdata)."""
    folder = realdata / "hf_transformers_coco"
    categories = json.loads((realdata / "panopticapi_sample/panoptic_coco_categories.json").read_text())
    document = {
        "images": [{"id": 39769, "file_name": "000000039769.png", "width": 640, "height": 480}],
        "annotations": [
            {
                "image_id": 39769,
                "file_name": "000000039769.png",
                "segments_info": json.loads((folder / "coco_panoptic_annotations.txt").read_text()),
            }
        ],
        "categories": categories,
    }
    path = tmp_path / "hf_panoptic.json"
    path.write_text(json.dumps(document))
    return path, folder / "coco_panoptic"


def test_panoptic_to_labelstudio_to_panoptic_is_exact_on_panopticapi_sample(panopticapi, tmp_path):
    source = panopticapi / "panoptic_examples.json"
    convert("coco-panoptic", "labelstudio", source, tmp_path / "tasks.json")
    convert(
        "labelstudio",
        "coco-panoptic",
        tmp_path / "tasks.json",
        tmp_path / "back.json",
        categories_file=panopticapi / "panoptic_coco_categories.json",
    )
    assert_pq_compute_preconditions(tmp_path / "back.json")
    # Label Studio has no iscrowd: compare categories and pixels.
    expected = {k: sorted((c, p) for c, _, p in v) for k, v in panoptic_segments(source).items()}
    got = {k: sorted((c, p) for c, _, p in v) for k, v in panoptic_segments(tmp_path / "back.json").items()}
    assert got == expected and sum(map(len, got.values())) == 50


def test_panoptic_to_labelstudio_to_panoptic_is_exact_on_hf_fixture(hf_panoptic, realdata, tmp_path):
    path, png_dir = hf_panoptic
    convert("coco-panoptic", "labelstudio", path, tmp_path / "tasks.json", png_dir=png_dir)
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert [r["type"] for r in tasks[0]["annotations"][0]["result"]] == ["brushlabels"] * 6
    convert(
        "labelstudio",
        "coco-panoptic",
        tmp_path / "tasks.json",
        tmp_path / "back.json",
        categories_file=realdata / "panopticapi_sample/panoptic_coco_categories.json",
    )
    assert_pq_compute_preconditions(tmp_path / "back.json")
    assert panoptic_segments(tmp_path / "back.json") == panoptic_segments(path, png_dir)


def test_labelstudio_brush_to_coco_rle_to_labelstudio_gives_the_same_mask(realdata, tmp_path):
    export = realdata / "labelstudio/derived/image_segmentation_export_with_dims.json"
    alpha = np.asarray(Image.open(realdata / "labelstudio/derived/image_segmentation_alpha_2242x2802.png"))
    convert("labelstudio", "coco", export, tmp_path / "coco.json", report=tmp_path / "report.json")
    coco = COCO(str(tmp_path / "coco.json"))
    [annotation] = coco.loadAnns(coco.getAnnIds())
    mask = coco.annToMask(annotation).astype(bool)
    np.testing.assert_array_equal(mask, alpha >= 128)
    rows, cols = np.nonzero(alpha >= 128)
    expected_bbox = [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
    assert annotation["area"] == 253348 and annotation["bbox"] == expected_bbox
    assert coco.loadCats(annotation["category_id"])[0]["name"] == "Planet"
    assert json.loads((tmp_path / "report.json").read_text())["segments"] == 1

    convert("coco", "labelstudio", tmp_path / "coco.json", tmp_path / "tasks.json", write_predictions=True)
    [task] = json.loads((tmp_path / "tasks.json").read_text())
    [result] = task["predictions"][0]["result"]
    assert result["value"]["brushlabels"] == ["Planet"]
    decoded = sdk_brush.decode_rle(result["value"]["rle"]).reshape(2802, 2242, 4)[:, :, 3]
    np.testing.assert_array_equal(decoded > 0, alpha >= 128)


def test_coco_instance_to_panoptic_to_instance_is_exact_without_overlaps(panopticapi, tmp_path):
    source = panopticapi / "panoptic_coco_detection_format.json"
    categories = panopticapi / "panoptic_coco_categories.json"
    convert("coco", "coco-panoptic", source, tmp_path / "pan.json", categories_file=categories)
    assert_pq_compute_preconditions(tmp_path / "pan.json")
    # The panoptic PNGs we wrote hold exactly the ground-truth partition.
    expected = panoptic_segments(panopticapi / "panoptic_examples.json")
    assert panoptic_segments(tmp_path / "pan.json") == expected
    convert("coco-panoptic", "coco", tmp_path / "pan.json", tmp_path / "inst.json")
    assert coco_masks(tmp_path / "inst.json") == coco_masks(source)


def test_coco_polygon_output_has_area_of_the_written_mask(panopticapi, tmp_path):
    convert(
        "coco-panoptic",
        "coco",
        panopticapi / "panoptic_examples.json",
        tmp_path / "poly.json",
        segmentation="polygon",
    )
    data = json.loads((tmp_path / "poly.json").read_text())
    crowd = [a for a in data["annotations"] if a["iscrowd"]]
    assert len(crowd) == 3 and all(isinstance(a["segmentation"], dict) for a in crowd)
    assert any(isinstance(a["segmentation"], list) for a in data["annotations"])
    coco_masks(tmp_path / "poly.json")  # asserts area == pycocotools pixel count for every annotation


def test_overlapping_real_instances_refused_by_default_and_resolved_on_request(realdata, tmp_path):
    annotations = json.loads((realdata / "hf_transformers_coco/coco_annotations.txt").read_text())
    document = {
        "images": [{"id": 39769, "file_name": "000000039769.jpg", "width": 640, "height": 480}],
        "annotations": annotations,
        "categories": json.loads((realdata / "panopticapi_sample/panoptic_coco_categories.json").read_text()),
    }
    source = tmp_path / "instances.json"
    source.write_text(json.dumps(document))
    out = tmp_path / "out"
    with pytest.raises(SegassistError) as caught:
        convert("coco", "coco-panoptic", source, out / "pan.json")
    message = str(caught.value)
    assert "instances.json" in message and "image 39769" in message
    assert "overlapping segment pair" in message and "region 1108446" in message
    assert not (out / "pan.json").exists() and not (out / "pan").exists() and leftovers(out) == []

    report = convert("coco", "coco-panoptic", source, out / "pan.json", overlap="area", report=out / "r.json")
    assert_pq_compute_preconditions(out / "pan.json")
    assert report.pixels_moved > 0
    written = json.loads((out / "r.json").read_text())
    assert written["pixels_moved"] == report.pixels_moved
    assert written["changes"][0]["image_id"] == 39769 and written["changes"][0]["overlap"]["policy"] == "area"
    # Smaller on top reproduces COCO's own panoptic ground truth for this image: every thing keeps exactly the
    # pixels and box it has there (the bed, category 65, is stuff "blanket" 93 in COCO panoptic).
    written_info = json.loads((out / "pan.json").read_text())["annotations"][0]["segments_info"]
    ground_truth = json.loads((realdata / "hf_transformers_coco/coco_panoptic_annotations.txt").read_text())
    ours = sorted((i["category_id"], i["area"], i["bbox"]) for i in written_info if i["category_id"] != 65)
    assert ours == sorted(
        (i["category_id"], i["area"], i["bbox"]) for i in ground_truth if i["category_id"] != 93
    )
    assert report.pixels_moved == 294153  # 291,840 multiply-covered pixels, counted once per loser


def test_inconsistent_panoptic_input_names_file_and_image_and_can_be_skipped(realdata, tmp_path):
    source = realdata / "datumaro_coco/coco_panoptic/annotations/panoptic_train.json"
    with pytest.raises(SegassistError) as caught:
        convert("coco-panoptic", "coco", source, tmp_path / "out.json")
    assert "a.png" in str(caught.value) and "image 5" in str(caught.value) and "5x5" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    report = convert("coco-panoptic", "coco", source, tmp_path / "out.json", on_error="skip")
    assert report.images == 0 and report.skipped[0]["image_id"] == 5
    assert "10x5" in report.skipped[0]["error"]
    assert json.loads((tmp_path / "out.json").read_text())["images"] == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("grey", "must be 8-bit RGB, got mode L"),
        ("16-bit", "cannot read the panoptic PNG: OpenCV cannot decode it as 8-bit colour"),
        ("not a PNG", "cannot read the panoptic PNG"),
        ("missing", "the panoptic PNG does not exist"),
    ],
)
def test_unusable_panoptic_pngs_are_named_and_nothing_is_written(panopticapi, tmp_path, damage, message):
    source = tmp_path / "in" / "panoptic_examples.json"
    shutil.copytree(panopticapi / "panoptic_examples", source.with_suffix(""))
    shutil.copy(panopticapi / "panoptic_examples.json", source)
    name = json.loads(source.read_text())["annotations"][0]["file_name"]
    png = source.with_suffix("") / name
    rgb = np.asarray(Image.open(png).convert("RGB"))
    if damage == "grey":
        Image.fromarray(rgb[..., 0]).save(png)
    elif damage == "16-bit":
        # Pillow calls a 16-bit RGB PNG "RGB" but would silently keep only the high byte of each id channel.
        assert cv2.imwrite(str(png), rgb[..., ::-1].astype(np.uint16) * 257)
        assert Image.open(png).mode == "RGB"
    elif damage == "not a PNG":
        png.write_bytes(b"not a PNG")
    else:
        png.unlink()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SegassistError) as caught:
        convert("coco-panoptic", "coco", source, out / "instances.json")
    assert message in str(caught.value) and name in str(caught.value)
    assert list(out.iterdir()) == []


def test_tolerant_coco_reading_of_uncompressed_rle_and_extra_fields(realdata, tmp_path):
    source = realdata / "datumaro_coco/coco_instances/annotations/instances_val.json"
    convert("coco", "coco", source, tmp_path / "out.json")
    masks = coco_masks(tmp_path / "out.json")
    assert [(category, crowd) for category, crowd, _ in masks[40]] == [(1, 0), (2, 1)]
    data = json.loads((tmp_path / "out.json").read_text())
    assert sorted(a["area"] for a in data["annotations"]) == [2, 20]


def test_workers_give_byte_identical_output(panopticapi, tmp_path):
    source = panopticapi / "panoptic_coco_detection_format.json"
    categories = panopticapi / "panoptic_coco_categories.json"
    for workers in (1, 2):
        convert(
            "coco",
            "coco-panoptic",
            source,
            tmp_path / f"w{workers}.json",
            categories_file=categories,
            workers=workers,
        )
    assert (tmp_path / "w1.json").read_text() == (tmp_path / "w2.json").read_text()
    for png in sorted((tmp_path / "w1").iterdir()):
        assert png.read_bytes() == (tmp_path / "w2" / png.name).read_bytes()


def test_semantic_output_paints_each_pixel_with_its_class(panopticapi, tmp_path):
    source = panopticapi / "panoptic_examples.json"
    convert("coco-panoptic", "semantic", source, tmp_path / "sem")
    mapping = json.loads((tmp_path / "sem/labelmap.json").read_text())
    assert mapping["void"] == 0 and mapping["dtype"] == "uint8" and len(mapping["classes"]) == 133
    value_of = {c["id"]: c["value"] for c in mapping["classes"]}
    data = json.loads(source.read_text())
    for annotation in data["annotations"]:
        ids = _panoptic_ids(source.with_suffix("") / annotation["file_name"])
        expected = np.zeros(ids.shape, dtype=np.uint8)
        for info in annotation["segments_info"]:
            expected[ids == info["id"]] = value_of[info["category_id"]]
        [entry] = [e for e in mapping["images"] if e["id"] == annotation["image_id"]]
        label_map = np.asarray(Image.open(tmp_path / "sem" / entry["label_map"]))
        np.testing.assert_array_equal(label_map, expected)
    # And back: one segment per class present.
    convert("semantic", "coco-panoptic", tmp_path / "sem", tmp_path / "pan.json")
    assert_pq_compute_preconditions(tmp_path / "pan.json")


def test_coco_annotator_quirks_read_and_survive_a_labelstudio_round_trip(realdata, tmp_path):
    # COCO-Annotator export: iscrowd "false" as a string, colours as "#rrggbb", extra fields, 24-MP images.
    source = realdata / "labelstudio/sdk_tests/test_import_coco/coco_import_input.json"
    convert("coco", "coco", source, tmp_path / "clean.json")
    clean = json.loads((tmp_path / "clean.json").read_text())
    assert [a["iscrowd"] for a in clean["annotations"]] == [0, 0]
    assert all(len(c["color"]) == 3 for c in clean["categories"])
    convert("coco", "labelstudio", tmp_path / "clean.json", tmp_path / "tasks.json")
    convert("labelstudio", "coco", tmp_path / "tasks.json", tmp_path / "back.json", categories_file=source)
    # Ids are renumbered (tasks carry none); file names, categories, crowd flags and pixels survive.
    by_name = {i["file_name"]: i["id"] for i in json.loads((tmp_path / "back.json").read_text())["images"]}
    original = {i["file_name"]: i["id"] for i in clean["images"]}
    expected = coco_masks(tmp_path / "clean.json")
    got = coco_masks(tmp_path / "back.json")
    assert {name: got[by_name[name]] for name in by_name} == {
        name: expected[original[name]] for name in by_name
    }
    assert sum(map(len, got.values())) == 2


def test_labelstudio_polygon_output_reports_what_polygons_lose(panopticapi, tmp_path):
    source = panopticapi / "panoptic_examples.json"
    report = convert("coco-panoptic", "labelstudio", source, tmp_path / "tasks.json", segmentation="polygon")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    results = [r for task in tasks for r in task["annotations"][0]["result"]]
    assert len(results) == 50 and {r["type"] for r in results} == {"polygonlabels"}
    losses = {  # region ids are panoptic segment ids, unique within an image only
        (c["image_id"], entry["region_id"]): entry["pixels_changed"]
        for c in report.changes
        for entry in c["polygon_loss"]
    }
    assert losses and all(pixels > 0 for pixels in losses.values())
    # Reading the polygons back gives masks that differ from the originals by exactly the reported pixels.
    convert("labelstudio", "coco", tmp_path / "tasks.json", tmp_path / "back.json")
    back = COCO(str(tmp_path / "back.json"))
    original = json.loads(source.read_text())
    expected = []  # (region id, pixels) in the order the tasks and their results were written
    for annotation in original["annotations"]:
        ids = _panoptic_ids(source.with_suffix("") / annotation["file_name"])
        image_id = annotation["image_id"]
        expected += [((image_id, str(info["id"])), ids == info["id"]) for info in annotation["segments_info"]]
    for annotation, (key, pixels) in zip(back.loadAnns(back.getAnnIds()), expected, strict=True):
        differing = int(np.count_nonzero(back.annToMask(annotation).astype(bool) ^ pixels))
        assert differing == losses.get(key, 0)


def test_reading_a_file_as_the_wrong_coco_flavour_says_which_to_use(panopticapi, tmp_path):
    with pytest.raises(SegassistError, match="--from coco-panoptic"):
        convert("coco", "coco", panopticapi / "panoptic_examples.json", tmp_path / "x.json")
    with pytest.raises(SegassistError, match="no segments_info"):
        convert(
            "coco-panoptic", "coco", panopticapi / "panoptic_coco_detection_format.json", tmp_path / "x.json"
        )
    assert list(tmp_path.iterdir()) == []


def test_read_gives_the_model_streamed(panopticapi):
    dataset = read("coco-panoptic", panopticapi / "panoptic_examples.json")
    assert len(dataset.categories) == 133 and dataset.category(1).name == "person"
    images = list(dataset.iter_images())
    assert [image.id for image in images] == [142238, 439180]
    assert sum(len(image.segments) for image in images) == 50
    assert all(segment.mask.area for image in images for segment in image.segments)
    assert list(dataset.iter_images()) == []  # one-shot: nothing is held after iteration
