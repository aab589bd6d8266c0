"""The one Label Studio config module: its control types are label-studio-sdk's, every label of every labels
control is a category, a result is judged by the control its from_name names, and the config pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from label_studio_sdk.label_interface import LabelInterface
from label_studio_sdk.label_interface import control_tags as sdk_tags

from converters.errors import SegassistError
from converters.formats.ls_regions import is_region
from converters.lsconfig import (
    CONTROL_TYPES,
    WRITABLE_TYPES,
    parse_label_config,
    read_label_config,
    region_geometry,
)

SDK_COCO_CONFIG = "labelstudio/sdk_tests/test_export_coco/label_config.xml"


@pytest.mark.parametrize("kind", CONTROL_TYPES, ids=lambda kind: kind.name)
def test_control_types_are_the_sdk_tags_with_their_result_types(kind) -> None:
    """Each type's tag, labels key and plain tool are what label-studio-sdk parses them as."""
    interface = LabelInterface(
        f'<View><Image name="i" value="$i"/><{kind.tag} name="c" toName="i"><Label value="a"/></{kind.tag}>'
        f'<{kind.tool.capitalize()} name="t" toName="i"/></View>'
    )
    control = interface.get_control("c")
    assert control.tag.lower() == kind.name and control._label_attr_name == kind.name
    assert sdk_tags._TAG_TO_CLASS[kind.name] == type(control).__name__
    assert sdk_tags._TAG_TO_CLASS[kind.tool] == type(interface.get_control("t")).__name__
    # Regions with an area are what the readers decode, under both result types.
    assert is_region({"type": kind.name}) == is_region({"type": kind.tool}) == kind.area
    assert (kind.name in WRITABLE_TYPES) == kind.area


def test_results_without_area_are_not_regions() -> None:
    for result_type in ("relation", "choices", "labels", "textarea", None, 3):
        assert region_geometry(result_type) is None and not is_region({"type": result_type})


def test_every_label_of_every_control_is_a_category(realdata: Path) -> None:
    """label-studio-sdk's own COCO test config: RectangleLabels, PolygonLabels, KeyPointLabels."""
    path = realdata / SDK_COCO_CONFIG
    config = read_label_config(path)
    sdk = LabelInterface(path.read_text())
    expected = [label for control in sdk.controls for label in control.labels]
    assert len(expected) == 4
    assert [category.name for category in config.categories] == expected
    assert [category.id for category in config.categories] == [1, 2, 3, 4]
    assert {name: control.labels for name, control in config.controls.items()} == {
        control.name: tuple(control.labels) for control in sdk.controls
    }
    assert config.image_key == "image" and [image.name for image in config.images] == ["image"]


def test_a_label_shared_by_controls_is_one_category_with_the_first_id_and_colour(tmp_path: Path) -> None:
    path = tmp_path / "config.xml"
    path.write_text(
        '<View><Image name="img" value="$photo"/>'
        '<KeyPointLabels name="kp" toName="img" smart="true">'
        '<Label value="Car" background="red"/></KeyPointLabels>'
        '<BrushLabels name="brush" toName="img"><Label value="Car" category="9" background="blue"/>'
        '<Label value="Road" category="4" background="#00ff00"/></BrushLabels>'
        '<Choices name="mood" toName="img"><Choice value="sunny"/></Choices></View>'
    )
    config = read_label_config(path)
    assert [(c.id, c.name, c.color) for c in config.categories] == [
        (1, "Car", (255, 0, 0)),
        (4, "Road", (0, 255, 0)),
    ]
    assert config.image_key == "photo"
    # Masks are written to the brush control, on the image it labels.
    assert (config.from_name, config.to_name) == ("brush", "img")


def test_a_result_is_judged_by_the_control_its_from_name_names(realdata: Path) -> None:
    config = read_label_config(realdata / SDK_COCO_CONFIG)
    box = {"from_name": "rectangle_label", "to_name": "image", "type": "rectanglelabels"}
    assert config.mismatches(box, ["rectangle_label"]) == []
    # A label of the config, but of another control.
    [wrong] = config.mismatches(box, ["polygon_label"])
    assert (wrong.kind, wrong.label) == ("label", "polygon_label")
    assert "'rectangle_label'" in wrong.message
    kinds = [m.kind for m in config.mismatches({**box, "type": "brushlabels"}, ["rectangle_label"])]
    assert kinds == ["control"]
    [unknown] = config.mismatches({**box, "from_name": "nope"}, ["rectangle_label"])
    assert unknown.kind == "control" and "'nope'" in unknown.message


def test_a_plain_tool_takes_the_labels_of_the_labels_control_on_its_image() -> None:
    config = parse_label_config(
        '<View><Image name="i" value="$i"/><Brush name="b" toName="i"/>'
        '<Labels name="l" toName="i"><Label value="sky"/></Labels></View>'
    )
    brush = {"from_name": "b", "to_name": "i", "type": "brush"}
    assert config.mismatches(brush, ["sky"]) == []
    assert [m.kind for m in config.mismatches(brush, ["sea"])] == ["label"]
    assert [c.name for c in config.categories] == ["sky"]


def test_config_pickles_as_plain_data_and_parses_again_on_demand(realdata: Path) -> None:
    config = read_label_config(realdata / SDK_COCO_CONFIG)
    assert isinstance(config.interface, LabelInterface)
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config and "interface" not in copy.__dict__
    assert copy.interface.get_control("polygon_label").labels == ["polygon_label"]


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<View><Image name='i' value='$i'", "does not parse"),
        ("<View><Image name='i' value='$i'/></View>", "needs an <Image> and a labels control"),
        (
            "<View><Text name='t' value='$t'/><Labels name='l' toName='t'><Label value='a'/></Labels></View>",
            "<Image>",
        ),
        (
            "<View><Image name='i' value='$i'/><BrushLabels name='b' toName='i'>"
            "<Label value='a' category='x'/></BrushLabels></View>",
            "category='x', not a number",
        ),
    ],
)
def test_unusable_configs_are_errors_naming_the_file(tmp_path: Path, xml: str, message: str) -> None:
    path = tmp_path / "config.xml"
    path.write_text(xml)
    with pytest.raises(SegassistError, match=message) as caught:
        read_label_config(path)
    assert str(path) in str(caught.value)
