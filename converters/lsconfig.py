"""Label Studio labeling configs: read labels and colours from one, write one from a category file.

`segassist ls-config CATEGORIES [-o FILE] [--control brushlabels|polygonlabels|bitmasklabels]` writes an
`<Image>` plus one labels control whose names and colours come from the categories, with the same control and
image names (`tag`, `image`) that `segassist convert --to labelstudio` writes by default.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageColor

from converters.errors import SegassistError
from converters.formats.common import read_categories_file
from converters.io import write_text
from converters.model import Category

DEFAULT_FROM_NAME = "tag"
DEFAULT_TO_NAME = "image"
DEFAULT_IMAGE_KEY = "image"
# Config tag for each result type a segmentation control produces.
CONTROL_TAGS = {
    "brushlabels": "BrushLabels",
    "polygonlabels": "PolygonLabels",
    "bitmasklabels": "BitmaskLabels",
    "rectanglelabels": "RectangleLabels",
}
_LABEL_CONTROLS = {tag.lower(): tag for tag in (*CONTROL_TAGS.values(), "Labels")}


@dataclass(frozen=True)
class LabelConfig:
    """What the converters need from a labeling config."""

    categories: list[Category]
    from_name: str  # the labels control's name
    to_name: str  # the Image tag's name
    image_key: str  # the task data key the Image reads ($image -> "image")
    control_type: str | None  # result type of the control, None for a generic <Labels>


def read_label_config(path: Path) -> LabelConfig:
    """Labels in config order (ids from the `category` attribute, else 1, 2, ...), colours from background."""
    try:
        root = ET.fromstring(Path(path).read_text())
    except (OSError, ET.ParseError) as error:
        raise SegassistError(f"cannot read the labeling config: {error}", file=str(path)) from None
    image = next((el for el in root.iter() if el.tag == "Image"), None)
    control = next((el for el in root.iter() if el.tag.lower() in _LABEL_CONTROLS), None)
    if image is None or control is None:
        raise SegassistError("the labeling config needs an <Image> and a labels control", file=str(path))
    categories = []
    for position, label in enumerate(control.iter("Label"), start=1):
        name = label.get("value")
        background = label.get("background")
        try:
            color = ImageColor.getrgb(background)[:3] if background else None
        except ValueError:
            color = None  # a colour Pillow does not know: leave the choice to the writer
        categories.append(Category(id=int(label.get("category", position)), name=name, color=color))
    if not categories:
        raise SegassistError("the labels control has no <Label>", file=str(path))
    control_tag = control.tag.lower()
    return LabelConfig(
        categories=categories,
        from_name=control.get("name", DEFAULT_FROM_NAME),
        to_name=image.get("name", DEFAULT_TO_NAME),
        image_key=image.get("value", "$" + DEFAULT_IMAGE_KEY).lstrip("$"),
        control_type=control_tag if control_tag in CONTROL_TAGS else None,
    )


def label_config_xml(
    categories: list[Category],
    *,
    control_type: str = "brushlabels",
    from_name: str = DEFAULT_FROM_NAME,
    to_name: str = DEFAULT_TO_NAME,
) -> str:
    """A labeling config with one labels control listing the categories (ids kept in `category`)."""
    if control_type not in CONTROL_TAGS:
        raise SegassistError(f"unknown control type {control_type!r}; use one of {', '.join(CONTROL_TAGS)}")
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=to_name, value="$" + DEFAULT_IMAGE_KEY, zoom="true")
    control = ET.SubElement(view, CONTROL_TAGS[control_type], name=from_name, toName=to_name)
    for category in categories:
        attributes = {"value": category.name, "category": str(category.id)}
        if category.color is not None:
            attributes["background"] = "#{:02x}{:02x}{:02x}".format(*category.color)
        ET.SubElement(control, "Label", attributes)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ls-config",
        help="write a Label Studio labeling config from a category file",
        description="Write a Label Studio labeling config (labels with names and colours) from a COCO-style "
        "category list (JSON list or a COCO file with `categories`).",
    )
    parser.add_argument("categories", type=Path, help="category file (id, name, isthing, color)")
    parser.add_argument("-o", "--output", type=Path, help="config file to write (default: standard output)")
    parser.add_argument("--control", choices=tuple(CONTROL_TAGS), default="brushlabels")
    parser.add_argument("--from-name", default=DEFAULT_FROM_NAME, help="name of the labels control")
    parser.add_argument("--to-name", default=DEFAULT_TO_NAME, help="name of the Image tag")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    xml = label_config_xml(
        read_categories_file(args.categories),
        control_type=args.control,
        from_name=args.from_name,
        to_name=args.to_name,
    )
    if args.output is None:
        sys.stdout.write(xml)
        return 0
    write_text(args.output, xml)
    return 0
