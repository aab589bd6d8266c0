"""Odd and hostile input files, and what convert says about them and about its own output."""

from __future__ import annotations

import argparse
import codecs
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from converters import SegassistError
from converters.cli import build_parser, main
from converters.convert import convert

LS_EXPORT = "labelstudio/derived/image_segmentation_export_with_dims.json"
COCO_INSTANCES = "datumaro_coco/coco_instances/annotations/instances_val.json"


@pytest.fixture
def two_task_export(realdata: Path, tmp_path: Path) -> bytes:
    """The editor's real export (task 1, a brush region) and a copy of its task as task 2."""
    task = json.loads((realdata / LS_EXPORT).read_text())[0]
    return json.dumps([task, {**task, "id": 2}]).encode()


# -- issue 16, item 11: a truncated Label Studio JSON -----------------------------------------------------


@pytest.mark.parametrize("cut", ["in the second task", "in the first task"])
def test_a_truncated_export_names_the_last_task_and_the_byte(tmp_path, two_task_export, cut) -> None:
    second = two_task_export.index(b'"id": 2') - 20
    end = second + 200 if cut == "in the second task" else 1000
    path = tmp_path / "export.json"
    path.write_bytes(two_task_export[:end])
    with pytest.raises(SegassistError) as caught:
        convert("labelstudio", "coco", path, tmp_path / "out.json")
    after = "1 task (task 1)" if cut == "in the second task" else "0 tasks"
    assert str(caught.value) == (
        f"file {path}: invalid JSON after {after}: "
        f"the file is truncated, it stops at byte {end} inside a value"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json"]


def test_invalid_json_says_where_in_one_line(tmp_path) -> None:
    path = tmp_path / "export.json"
    path.write_text('[{"id": 5, "data": {"image": "a.png"}}, {"id": 6, "data": {"image": "b.png"}, x}]')
    with pytest.raises(SegassistError) as caught:
        convert("labelstudio", "coco", path, tmp_path / "out.json")
    message = str(caught.value)
    assert message.startswith(
        f"file {path}: invalid JSON after 1 task (task 5), before byte 81: lexical error"
    )
    assert "\n" not in message and "right here" not in message and "b.png" in message


# -- issue 16, item 16: convert --help and the segments semantic output reports -----------------------------


def test_every_convert_argument_has_a_help_text() -> None:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    convert_parser = subparsers.choices["convert"]
    missing = [
        action.dest
        for action in convert_parser._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []
    text = " ".join(convert_parser.format_help().split())  # argparse wraps lines
    assert (
        "Label Studio export" in text and "'-' for standard output" in text and "the input's format" in text
    )


def test_semantic_output_reports_one_segment_per_class_per_map(realdata, tmp_path) -> None:
    # COCO 39769: two cats, two remotes, a couch and a bed: 6 instances, 4 classes.
    document = {
        "images": [{"id": 39769, "file_name": "000000039769.jpg", "width": 640, "height": 480}],
        "annotations": json.loads((realdata / "hf_transformers_coco/coco_annotations.txt").read_text()),
        "categories": json.loads((realdata / "panopticapi_sample/panoptic_coco_categories.json").read_text()),
    }
    source = tmp_path / "instances.json"
    source.write_text(json.dumps(document))
    report = convert("coco", "semantic", source, tmp_path / "maps", overlap="area")
    label_map = np.asarray(Image.open(tmp_path / "maps" / "000000039769.png"))
    classes = set(np.unique(label_map).tolist()) - {0}
    assert len(document["annotations"]) > len(classes)
    assert report.segments == len(classes) and f"{len(classes)} segments written" in report.summary()


# -- issue 19, item 15: odd files --------------------------------------------------------------------------


def with_bom(path: Path, target: Path) -> Path:
    target.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    return target


def test_json_with_a_utf8_bom_reads_as_without(realdata, tmp_path, capsys) -> None:
    panopticapi = realdata / "panopticapi_sample"
    coco = with_bom(realdata / COCO_INSTANCES, tmp_path / "coco.json")
    export = with_bom(realdata / LS_EXPORT, tmp_path / "export.json")
    panoptic = with_bom(panopticapi / "panoptic_examples.json", tmp_path / "pan.json")
    (tmp_path / "pan").symlink_to(panopticapi / "panoptic_examples")
    categories = with_bom(panopticapi / "panoptic_coco_categories.json", tmp_path / "categories.json")
    convert("coco-panoptic", "semantic", panopticapi / "panoptic_examples.json", tmp_path / "maps")
    with_bom(tmp_path / "maps/labelmap.json", tmp_path / "maps/labelmap.json")
    for fmt, path, without in (
        ("coco", coco, realdata / COCO_INSTANCES),
        ("labelstudio", export, realdata / LS_EXPORT),
        ("coco-panoptic", panoptic, panopticapi / "panoptic_examples.json"),
    ):
        # The same output as from the file without the mark, and QA detects the same format.
        convert(fmt, "coco", path, tmp_path / "with.json", overlap="order")
        convert(fmt, "coco", without, tmp_path / "without.json", overlap="order")
        assert (tmp_path / "with.json").read_bytes() == (tmp_path / "without.json").read_bytes()
        assert main(["qa", str(path), "--fail-on", "never"]) == 0
        assert f"({fmt})" in capsys.readouterr().out
    convert("semantic", "coco", tmp_path / "maps", tmp_path / "from-maps.json")
    assert main(["qa", str(tmp_path / "maps"), "--fail-on", "never"]) == 0
    assert main(["ls-config", str(categories), "-o", str(tmp_path / "config.xml")]) == 0
    assert 'value="person"' in (tmp_path / "config.xml").read_text()


@pytest.mark.parametrize("fmt", ["labelstudio", "coco", "coco-panoptic"])
def test_an_empty_file_says_so(tmp_path, fmt, capsys) -> None:
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    code = main(["convert", "--from", fmt, "--to", "coco", str(empty), str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"segassist convert: error: file {empty}: ") and "empty" in err
    assert main(["qa", str(empty)]) == 2 and "the file is empty" in capsys.readouterr().err
    assert main(["ls-config", str(empty)]) == 1 and "the file is empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.json"]


def test_an_empty_export_converts_to_an_empty_dataset(tmp_path, capsys) -> None:
    export = tmp_path / "export.json"
    export.write_text("[]")
    report = convert("labelstudio", "coco", export, tmp_path / "coco.json")
    assert report.images == 0 and json.loads((tmp_path / "coco.json").read_text())["images"] == []
    assert main(["qa", str(export)]) == 0 and "0 checked" in capsys.readouterr().out


def test_a_panoptic_json_without_annotations_is_detected_as_panoptic(realdata, tmp_path, capsys) -> None:
    data = json.loads((realdata / "panopticapi_sample/panoptic_examples.json").read_text())
    data["annotations"] = []
    (tmp_path / "pan.json").write_text(json.dumps(data))
    (tmp_path / "pan").mkdir()
    main(["qa", str(tmp_path / "pan.json")])
    assert "(coco-panoptic)" in capsys.readouterr().out


def test_cmyk_la_and_grey_images_give_their_sizes_and_thumbnails(tmp_path, capsys) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("CMYK", (40, 30), (10, 200, 30, 0)).save(images / "cmyk.jpg")
    Image.new("L", (40, 30), 100).save(images / "grey.jpg")
    Image.new("LA", (40, 30), (100, 128)).save(images / "la.png")  # JPEG has no LA mode: a PNG
    names = ["cmyk.jpg", "grey.jpg", "la.png"]
    region = {
        "from_name": "tag",
        "to_name": "image",
        "type": "polygonlabels",
        "value": {"points": [[10, 10], [60, 10], [60, 60]], "polygonlabels": ["cat"]},
    }
    tasks = [
        {
            "id": i,
            "data": {"image": f"/data/upload/1/{name}"},
            "annotations": [{"result": [{**region, "id": f"r{i}"}]}],
        }
        for i, name in enumerate(names, start=1)
    ]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    convert("labelstudio", "coco", tmp_path / "export.json", tmp_path / "coco.json", images=images)
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert [(i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [(n, 40, 30) for n in names]
    for annotation in coco["annotations"]:
        annotation["bbox"] = [0, 0, 1, 1]  # a finding on every image: the HTML report draws each one
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    code = main(
        ["qa", str(tmp_path / "coco.json"), "--images", str(images), "--html", str(tmp_path / "r.html")]
    )
    assert code == 1 and "Traceback" not in capsys.readouterr().err
    assert (tmp_path / "r.html").read_text().count("<img") >= len(names)


@pytest.mark.parametrize("to", ["coco-panoptic", "semantic"])
def test_images_whose_pngs_would_collide_are_refused(tmp_path, to) -> None:
    region = {
        "id": "r",
        "from_name": "tag",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": 20,
        "original_height": 20,
        "value": {"points": [[10, 10], [60, 10], [60, 60]], "polygonlabels": ["cat"]},
    }
    tasks = [
        {"id": i, "data": {"image": f"/data/upload/1/{name}"}, "annotations": [{"result": [region]}]}
        for i, name in enumerate(["a.jpg", "a.png"], start=1)
    ]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    with pytest.raises(SegassistError, match="two images would share the (PNG|label map) 'a.png'") as caught:
        convert("labelstudio", to, tmp_path / "export.json", tmp_path / "out.json")
    assert "task 2" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the category list: No such file or directory"),
        ("{", "cannot read the category list: Expecting"),
        ('{"x": 1}', "a category list is a non-empty JSON list of categories"),
        ("[]", "a category list is a non-empty JSON list of categories"),
        ("[5]", "category #1 (5) cannot be read"),
        ('[{"id": 1}]', "category #1 ({'id': 1}) cannot be read: it has no 'name'"),
        ('[{"id": "x", "name": "a"}]', "category #1"),
        ('[{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]', "category names are not unique"),
        ('[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]', "category ids are not unique"),
    ],
)
def test_ls_config_error_paths_are_one_line(tmp_path, capsys, content, message) -> None:
    categories = tmp_path / "categories.json"
    if content is not None:
        categories.write_text(content)
    code = main(["ls-config", str(categories), "-o", str(tmp_path / "config.xml")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"segassist ls-config: error: file {categories}: ") and message in err
    assert err.count("\n") == 1 and not (tmp_path / "config.xml").exists()


# -- issue 19, item 16: a dataset names only files inside its folder ----------------------------------------


@pytest.fixture(params=["parent", "absolute", "symlink"])
def escape(request, tmp_path) -> tuple[str, Path]:
    """How a name leads out: `..`, an absolute path, or a link inside the folder to a file outside."""
    return request.param, tmp_path


def escaping_name(kind: str, folder: Path, outside: Path) -> str:
    if kind == "parent":
        return "../" * (len(folder.parts) + 1) + str(outside).lstrip("/")
    if kind == "absolute":
        return str(outside)
    (folder / "link.png").symlink_to(outside)
    return "link.png"


def test_a_panoptic_png_outside_the_dataset_is_refused(realdata, escape, capsys) -> None:
    kind, tmp_path = escape
    panopticapi = realdata / "panopticapi_sample"
    shutil.copytree(panopticapi / "panoptic_examples", tmp_path / "pan")
    outside = tmp_path / "secret.png"
    shutil.copy(
        panopticapi / "panoptic_examples/000000142238.png", outside
    )  # readable, so only the rule stops it
    data = json.loads((panopticapi / "panoptic_examples.json").read_text())
    data["annotations"][0]["file_name"] = escaping_name(kind, tmp_path / "pan", outside)
    (tmp_path / "pan.json").write_text(json.dumps(data))
    with pytest.raises(SegassistError, match="leads outside the dataset's folder"):
        convert("coco-panoptic", "coco", tmp_path / "pan.json", tmp_path / "out.json")
    for argv in (
        ["qa", str(tmp_path / "pan.json")],
        ["qa", str(tmp_path / "pan.json"), "--fix", str(tmp_path / "fixed.json")],
    ):
        assert main(argv) == 2 and "leads outside the dataset's folder" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "fixed.json").exists()


def test_a_label_map_outside_the_dataset_is_refused(realdata, escape, capsys) -> None:
    kind, tmp_path = escape
    convert(
        "coco-panoptic", "semantic", realdata / "panopticapi_sample/panoptic_examples.json", tmp_path / "maps"
    )
    mapping = json.loads((tmp_path / "maps/labelmap.json").read_text())
    outside = tmp_path / "secret.png"
    shutil.copy(tmp_path / "maps" / mapping["images"][0]["label_map"], outside)
    mapping["images"][0]["label_map"] = escaping_name(kind, tmp_path / "maps", outside)
    (tmp_path / "maps/labelmap.json").write_text(json.dumps(mapping))
    with pytest.raises(SegassistError, match="leads outside the dataset's folder"):
        convert("semantic", "coco", tmp_path / "maps", tmp_path / "out.json")
    assert (
        main(["qa", str(tmp_path / "maps")]) == 2
        and "leads outside the dataset's folder" in capsys.readouterr().err
    )
    assert not (tmp_path / "out.json").exists()
