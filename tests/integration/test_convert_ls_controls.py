"""Label configs with several controls: convert and qa agree on labels, converting into Label Studio writes to
the control whose type fits (checked by label-studio-sdk's validator and by segassist's own qa), and
`--image-root` makes task image URLs as Label Studio's own COCO importer joins them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from label_studio_sdk.converter.utils import join_input_url
from label_studio_sdk.label_interface import LabelInterface

from converters import SegassistError
from converters.cli import main
from converters.convert import convert
from converters.formats.common import read_categories_file
from converters.formats.labelstudio import reference_file_name
from converters.lsconfig import label_config_xml
from converters.qa.run import QAOptions, check

SDK_COCO = "labelstudio/sdk_tests/test_export_coco"
PANOPTIC = "panopticapi_sample"


def qa_codes(path: Path, config: Path) -> list[tuple[str, object]]:
    found = check(path, QAOptions(format="labelstudio", label_config=config)).findings
    return [(finding.code, finding.region_id) for finding in found]


# -- issue 16 item 5: all labels of all controls count -----------------------------------------------------


def test_sdk_export_with_three_controls_converts_and_qa_agrees(realdata: Path, tmp_path: Path) -> None:
    export, config = realdata / SDK_COCO / "data.json", realdata / SDK_COCO / "label_config.xml"
    convert("labelstudio", "coco", export, tmp_path / "coco.json", label_config=config)
    coco = json.loads((tmp_path / "coco.json").read_text())
    names = {category["id"]: category["name"] for category in coco["categories"]}
    assert sorted(names.values()) == sorted(
        label for control in LabelInterface(config.read_text()).controls for label in control.labels
    )
    # The rectangle and the polygon are segments; key points have no area.
    assert sorted(names[a["category_id"]] for a in coco["annotations"]) == [
        "polygon_label",
        "rectangle_label",
    ]
    assert qa_codes(export, config) == []


def test_a_label_of_another_control_fails_convert_where_qa_flags_it(realdata: Path, tmp_path: Path) -> None:
    tasks = json.loads((realdata / SDK_COCO / "data.json").read_text())
    rectangle = tasks[0]["annotations"][0]["result"][0]
    assert rectangle["from_name"] == "rectangle_label"
    rectangle["value"]["rectanglelabels"] = ["polygon_label"]  # in the config, not in this control
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    config = realdata / SDK_COCO / "label_config.xml"
    with pytest.raises(SegassistError) as caught:
        convert("labelstudio", "coco", export, tmp_path / "coco.json", label_config=config)
    message = str(caught.value)
    assert (
        "region G1wj68-AlF" in message
        and "label 'polygon_label' is not in control 'rectangle_label'" in message
    )
    assert not (tmp_path / "coco.json").exists()
    assert qa_codes(export, config) == [("LS_LABEL_NOT_IN_CONFIG", "G1wj68-AlF")]


# -- issue 16 item 6: the writer picks the control whose type fits ------------------------------------------


@pytest.fixture
def smart_box_then_brush(realdata: Path, tmp_path: Path) -> Path:
    """A SAM-style config: a smart RectangleLabels named "box" before the BrushLabels, same labels."""
    categories = read_categories_file(realdata / PANOPTIC / "panoptic_coco_categories.json")
    brush = label_config_xml(categories, from_name="brush", to_name="img")
    labels = "".join(f'<Label value="{category.name}"/>' for category in categories)
    box = f'<RectangleLabels name="box" toName="img" smart="true">{labels}</RectangleLabels>'
    path = tmp_path / "config.xml"
    path.write_text(brush.replace("<BrushLabels", box + "<BrushLabels", 1))
    return path


@pytest.mark.parametrize("write_predictions", [False, True])
def test_panoptic_to_label_studio_writes_brushes_to_the_brush_control(
    realdata: Path, tmp_path: Path, smart_box_then_brush: Path, write_predictions: bool
) -> None:
    out = tmp_path / "tasks.json"
    convert(
        "coco-panoptic",
        "labelstudio",
        realdata / PANOPTIC / "panoptic_examples.json",
        out,
        label_config=smart_box_then_brush,
        write_predictions=write_predictions,
    )
    tasks = json.loads(out.read_text())
    interface = LabelInterface(smart_box_then_brush.read_text())
    key = "predictions" if write_predictions else "annotations"
    results = [result for task in tasks for result in task[key][0]["result"]]
    assert len(tasks) == 2 and len(results) > 20
    assert {(r["type"], r["from_name"], r["to_name"]) for r in results} == {("brushlabels", "brush", "img")}
    for task in tasks:
        validate = interface.validate_prediction if write_predictions else interface.validate_annotation
        if write_predictions:
            assert validate(task[key][0], return_errors=True) == []
        else:
            assert validate(task[key][0])
    assert [code for code, _ in qa_codes(out, smart_box_then_brush) if code.startswith("LS_")] == []


def test_polygon_output_goes_to_the_polygon_control_and_a_missing_one_is_an_error(
    realdata: Path, tmp_path: Path
) -> None:
    source = realdata / "datumaro_coco/coco_instances/annotations/instances_val.json"
    config = tmp_path / "config.xml"
    labels = '<Label value="a"/><Label value="b"/><Label value="c"/>'
    config.write_text(
        f'<View><Image name="i" value="$img"/><BrushLabels name="brush" toName="i">{labels}</BrushLabels>'
        f'<PolygonLabels name="poly" toName="i">{labels}</PolygonLabels></View>'
    )
    out = tmp_path / "tasks.json"
    convert("coco", "labelstudio", source, out, label_config=config, segmentation="polygon")
    [task] = json.loads(out.read_text())
    assert {(r["type"], r["from_name"]) for r in task["annotations"][0]["result"]} == {
        ("polygonlabels", "poly")
    }
    assert LabelInterface(config.read_text()).validate_annotation(task["annotations"][0])

    config.write_text(
        f'<View><Image name="i" value="$img"/><RectangleLabels name="box" toName="i">{labels}'
        "</RectangleLabels></View>"
    )
    for segmentation in ("rle", "polygon"):
        with pytest.raises(
            SegassistError,
            match="has no (BrushLabels, BitmaskLabels or )?PolygonLabels control",
        ) as caught:
            convert("coco", "labelstudio", source, out, label_config=config, segmentation=segmentation)
        assert "RectangleLabels 'box'" in str(caught.value) and str(config) in str(caught.value)


# -- issue 16 item 7: --image-root ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "root",
    [
        "/data/local-files/?d=dataset/images/",
        "/data/local-files/?d=dataset/images",
        "https://bucket.s3.amazonaws.com/images/",
        "s3://bucket/images",
        "/data/upload/3/",
    ],
)
def test_image_root_joins_urls_as_label_studios_importer_does(tmp_path: Path, root: str) -> None:
    names = ["a b.jpg", "train/c#1.png"]
    coco = {
        "images": [{"id": i + 1, "file_name": name, "width": 4, "height": 3} for i, name in enumerate(names)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 2]], "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 2]], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    out = tmp_path / "tasks.json"
    code = main(
        [
            "convert",
            "--from",
            "coco",
            "--to",
            "labelstudio",
            str(tmp_path / "coco.json"),
            str(out),
            "--image-root",
            root,
        ]
    )
    assert code == 0
    references = [task["data"]["image"] for task in json.loads(out.read_text())]
    assert references == [join_input_url(root, name) for name in names]
    # The reader finds the same file names in them again.
    assert [reference_file_name(reference) for reference in references] == ["a b.jpg", "c#1.png"]


def test_without_image_root_the_data_holds_the_file_name_under_the_configs_key(
    realdata: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.xml"
    config.write_text(
        '<View><Image name="pic" value="$photo"/><BrushLabels name="b" toName="pic">'
        '<Label value="a"/><Label value="b"/><Label value="c"/></BrushLabels></View>'
    )
    out = tmp_path / "tasks.json"
    source = realdata / "datumaro_coco/coco_instances/annotations/instances_val.json"
    convert("coco", "labelstudio", source, out, label_config=config)
    [task] = json.loads(out.read_text())
    assert task["data"] == {"photo": "b.jpg"}
    assert {(r["from_name"], r["to_name"]) for r in task["annotations"][0]["result"]} == {("b", "pic")}


def test_from_name_and_to_name_pick_among_the_configs_controls_and_images(
    realdata: Path, tmp_path: Path
) -> None:
    source = realdata / "datumaro_coco/coco_instances/annotations/instances_val.json"
    labels = '<Label value="a"/><Label value="b"/><Label value="c"/>'
    config = tmp_path / "config.xml"
    config.write_text(
        '<View><Image name="left" value="$left"/><Image name="right" value="$right"/>'
        f'<BrushLabels name="first" toName="left">{labels}</BrushLabels>'
        f'<BrushLabels name="second" toName="left,right">{labels}</BrushLabels></View>'
    )
    out = tmp_path / "tasks.json"
    convert("coco", "labelstudio", source, out, label_config=config)
    [task] = json.loads(out.read_text())
    assert {(r["from_name"], r["to_name"]) for r in task["annotations"][0]["result"]} == {("first", "left")}
    convert("coco", "labelstudio", source, out, label_config=config, from_name="second", to_name="right")
    [task] = json.loads(out.read_text())
    assert task["data"] == {"right": "b.jpg"}
    assert {(r["from_name"], r["to_name"]) for r in task["annotations"][0]["result"]} == {("second", "right")}
    with pytest.raises(SegassistError, match="control 'first' labels no <Image> named 'right'"):
        convert("coco", "labelstudio", source, out, label_config=config, to_name="right")
    with pytest.raises(
        SegassistError, match="no BrushLabels, BitmaskLabels or PolygonLabels control named 'x'"
    ):
        convert("coco", "labelstudio", source, out, label_config=config, from_name="x")
