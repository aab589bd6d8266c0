"""Settings from the environment and the label-config parsing / class -> label mapping."""

from __future__ import annotations

import json
import logging

import pytest
from label_studio_sdk.label_interface import LabelInterface

from converters import Category
from converters.errors import SegassistError
from ml_backend.labeling import load_label_map, parse_label_config
from ml_backend.settings import ENV_VARS, Settings

CATEGORIES = [
    Category(1, "person"),
    Category(2, "car"),
    Category(3, "truck"),
    Category(4, "Dog"),
    Category(5, "giraffe"),
    Category(6, "sky", isthing=False),
]


def test_settings_read_every_variable_and_options_override_them() -> None:
    environ = {
        "SEGASSIST_ENGINE": "torchvision",
        "SEGASSIST_PORT": "9191",
        "SEGASSIST_SCORE_THRESHOLD": "0.25",
        "SEGASSIST_ALLOWED_HOSTS": "a.example.com, *.s3.amazonaws.com",
        "BASIC_AUTH_USER": "u",
        "BASIC_AUTH_PASS": "s3cr3t-pass",
        "SEGASSIST_MODE": "",  # empty means unset
        "SEGASSIST_PREDICT_BUDGET": "75.5",
    }
    settings = Settings.from_env(environ, port=9292, model=None)
    assert settings.engine == "torchvision"
    assert settings.port == 9292  # the option wins
    assert settings.score_threshold == 0.25
    assert settings.allowed_hosts == ("a.example.com", "*.s3.amazonaws.com")
    assert settings.mode == "auto"
    assert settings.predict_budget_s == 75.5
    assert "s3cr3t" not in repr(settings)  # secrets never reach logs
    assert set(ENV_VARS) == {f for f in Settings.__dataclass_fields__}


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"SEGASSIST_PORT": "abc"}, "SEGASSIST_PORT"),
        ({"SEGASSIST_ENGINE": "yolo"}, "unknown engine"),
        ({"SEGASSIST_MODE": "everything"}, "unknown mode"),
        ({"BASIC_AUTH_USER": "only-user"}, "BASIC_AUTH_PASS"),
        ({"SEGASSIST_PREDICT_BUDGET": "-1"}, "predict budget must be at least 0"),
    ],
)
def test_bad_settings_raise_a_named_error(environ: dict, message: str) -> None:
    with pytest.raises(SegassistError, match=message):
        Settings.from_env(environ)


CONFIG = """
<View>
  <Header value="segment"/>
  <Image name="img" value="$photo"/>
  <KeyPointLabels name="kp" toName="img" smart="true"><Label value="Person"/></KeyPointLabels>
  <PolygonLabels name="poly" toName="img"><Label value="Person"/></PolygonLabels>
  <BrushLabels name="brush" toName="img">
    <Label value="Person"/>
    <Label value="Vehicle" predicted_values="car,truck"/>
    <Label value="dog"/>
    <Label value="Animal"/>
  </BrushLabels>
</View>
"""


def test_config_finds_the_image_the_controls_and_prefers_brush_for_output() -> None:
    info = parse_label_config(CONFIG, CATEGORIES, {})
    assert info.image.name == "img" and info.image.value_key == "photo"
    assert set(info.controls) == {"kp", "poly", "brush"}
    assert info.controls["kp"].type == "keypointlabels"
    assert info.output.name == "brush" and info.output.type == "brushlabels"
    assert isinstance(info.config.interface, LabelInterface)


def test_mapping_order_file_then_predicted_values_then_exact_then_case_insensitive(caplog) -> None:
    caplog.set_level(logging.INFO, logger="ml_backend.labeling")
    info = parse_label_config(CONFIG, CATEGORIES, {"giraffe": "Animal", "sky": "NotALabel"})
    assert info.label_for_category == {
        1: "Person",  # case-insensitive
        2: "Vehicle",  # predicted_values
        3: "Vehicle",
        4: "dog",  # case-insensitive the other way
        5: "Animal",  # mapping file
    }
    # "sky" maps to a label the control lacks: dropped, and said once.
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "sky" in dropped[0].getMessage()


def test_exact_match_beats_case_insensitive() -> None:
    config = (
        '<View><Image name="i" value="$i"/>'
        '<BrushLabels name="b" toName="i"><Label value="car"/><Label value="Car"/></BrushLabels></View>'
    )
    info = parse_label_config(config, [Category(7, "Car")], {})
    assert info.label_for_category == {7: "Car"}


@pytest.mark.parametrize(
    "config, message",
    [
        ("<View><Text name='t' value='$t'/></View>", "no <Image>"),
        (
            "<View><Image name='i' value='$i'/>"
            "<Choices name='c' toName='i'><Choice value='a'/></Choices></View>",
            "no <Image>",
        ),
        ("<View><Image name='i' value='$i'", "does not parse"),
    ],
)
def test_configs_without_a_usable_image_control_are_refused(config: str, message: str) -> None:
    with pytest.raises(SegassistError, match=message):
        parse_label_config(config, CATEGORIES, {})


def test_rectangles_are_the_output_when_there_is_no_mask_control() -> None:
    config = (
        '<View><Image name="i" value="$i"/>'
        '<RectangleLabels name="r" toName="i"><Label value="car"/></RectangleLabels></View>'
    )
    assert parse_label_config(config, CATEGORIES, {}).output.type == "rectanglelabels"


def test_label_map_file(tmp_path) -> None:
    good = tmp_path / "map.json"
    good.write_text(json.dumps({"giraffe": "Animal"}))
    assert load_label_map(str(good)) == {"giraffe": "Animal"}
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SegassistError, match="bad.json"):
        load_label_map(str(bad))
    with pytest.raises(SegassistError, match="missing.json"):
        load_label_map(str(tmp_path / "missing.json"))
