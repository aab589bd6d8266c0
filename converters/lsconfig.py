"""Label Studio labeling configs, understood in one place, on label-studio-sdk's `LabelInterface`.

`CONTROL_TYPES` lists, once, the labels controls segassist reads and writes and what their regions are; the
readers, the writers, QA and the backend ask this module rather than keeping lists of their own.
`read_label_config` / `parse_label_config` give a `LabelConfig`: the Image objects, every control by name with
its labels, and the categories (all labels of all labels controls on an Image). `label_config_xml` writes a
config for a category list (the `segassist ls-config` command, in `lsconfig_cli`).
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import ImageColor

from converters.errors import SegassistError
from converters.model import Category

if TYPE_CHECKING:
    from label_studio_sdk.label_interface import LabelInterface

DEFAULT_FROM_NAME = "tag"
DEFAULT_TO_NAME = "image"
DEFAULT_IMAGE_KEY = "image"


@dataclass(frozen=True)
class ControlType:
    """A labels control segassist reads or writes."""

    name: str  # the control's result type, its tag in lower case: "brushlabels"
    tag: str  # the tag as a config spells it: "BrushLabels"
    tool: str  # the result type of its plain tool (<Brush> with a <Labels>): "brush"
    area: bool  # its regions cover pixels: they are read as segments, and segments can be written as them
    mask: bool  # it holds any shape, not only a box: where masks are written
    prompt: bool  # an interactive prompt (a click or a box)


# In order of preference for output: exact masks, then polygons, then boxes.
CONTROL_TYPES: tuple[ControlType, ...] = (
    ControlType("brushlabels", "BrushLabels", "brush", area=True, mask=True, prompt=False),
    ControlType("bitmasklabels", "BitmaskLabels", "bitmask", area=True, mask=True, prompt=False),
    ControlType("polygonlabels", "PolygonLabels", "polygon", area=True, mask=True, prompt=False),
    ControlType("rectanglelabels", "RectangleLabels", "rectangle", area=True, mask=False, prompt=True),
    ControlType("keypointlabels", "KeyPointLabels", "keypoint", area=False, mask=False, prompt=True),
)
_BY_NAME = {kind.name: kind for kind in CONTROL_TYPES}
# Result type -> control type: a labels control's own ("brushlabels") and its plain tool's ("brush").
_BY_RESULT_TYPE = {**{kind.tool: kind for kind in CONTROL_TYPES}, **_BY_NAME}
# The generic <Labels> control: it labels the regions of the plain tools on the same object.
GENERIC_LABELS = "labels"
# Control types that segments can be written as (`ls-config --control`, `convert --to labelstudio`).
WRITABLE_TYPES: tuple[str, ...] = tuple(kind.name for kind in CONTROL_TYPES if kind.area)


def result_control_type(result_type: Any) -> ControlType | None:
    """The control type of a result type ("brushlabels", or "brush" from a plain tool); None for others."""
    return _BY_RESULT_TYPE.get(result_type) if isinstance(result_type, str) else None


def region_geometry(result_type: Any) -> str | None:
    """How a result of this type stores its pixels ("brush", "bitmask", "polygon", "rectangle"), or None
    for results without an area (key points, relations, choices ...)."""
    kind = result_control_type(result_type)
    return kind.tool if kind is not None and kind.area else None


@dataclass(frozen=True)
class ImageObject:
    name: str  # the <Image name=...>: every region's to_name
    value_key: str  # the task data key that holds the image URL ($image -> "image")


@dataclass(frozen=True)
class Control:
    """One control of a labeling config."""

    name: str
    tag: str  # lower case, which is also its regions' result type: "brushlabels", "labels", "choices" ...
    to_names: tuple[str, ...]
    labels: tuple[str, ...]  # the values (or aliases) of its <Label>s, in config order
    # (model class, label) from each <Label predicted_values="a,b">, for the backend's class mapping.
    predicted_values: tuple[tuple[str, str], ...] = ()

    @property
    def type(self) -> ControlType | None:
        """Its control type when segassist reads or writes it, else None (generic Labels, Choices ...)."""
        return _BY_NAME.get(self.tag)


@dataclass(frozen=True)
class Mismatch:
    """A result that does not fit the labeling config."""

    kind: str  # "control": its from_name/to_name/type; "label": a label its control lacks
    message: str
    label: str | None = None


@dataclass(frozen=True)
class LabelConfig:
    """What segassist needs from a labeling config. Plain data: it pickles cheaply into worker processes."""

    xml: str
    images: tuple[ImageObject, ...]  # in config order
    controls: dict[str, Control]  # every control, by name, in config order
    # Every label of every labels control on an Image, once, in config order: ids from the `category`
    # attribute, else the position (from 1); colours from `background`.
    categories: list[Category]

    @functools.cached_property
    def interface(self) -> LabelInterface:
        """label-studio-sdk's parse of the config (for its validators), made when first asked for."""
        from label_studio_sdk.label_interface import LabelInterface  # half a second to import: only on use

        return LabelInterface(self.xml)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("interface", None)  # lxml trees do not pickle; a worker parses again if it needs one
        return state

    @property
    def image_key(self) -> str:
        """The task data key of the first Image."""
        return self.images[0].value_key

    @property
    def from_name(self) -> str:
        """The name of the control that masks are written to (see `output_control`)."""
        return self.output_control().name

    @property
    def to_name(self) -> str:
        """The Image that masks are written to."""
        return self.target_image(self.output_control()).name

    def image_controls(self, image: ImageObject, kinds: Iterable[str]) -> list[Control]:
        """The controls on `image` of the types `kinds`, in the order of `kinds`, then of the config."""
        return [
            control
            for kind in kinds
            for control in self.controls.values()
            if control.tag == kind and image.name in control.to_names
        ]

    def output_control(self, result_type: str | None = None, name: str | None = None) -> Control:
        """The control a writer puts segments in: a mask control on an Image (BrushLabels before
        BitmaskLabels before PolygonLabels), of `result_type` and named `name` when those are given."""
        kinds = [result_type] if result_type else [kind.name for kind in CONTROL_TYPES if kind.mask]
        candidates = [
            control
            for image in self.images
            for control in self.image_controls(image, kinds)
            if name is None or control.name == name
        ]
        if candidates:
            return candidates[0]
        tags = [_tag(kind) for kind in kinds]
        wanted = f"{', '.join(tags[:-1])} or {tags[-1]}" if len(tags) > 1 else tags[0]
        named = f" named {name!r}" if name else ""
        have = ", ".join(f"{_tag(control.tag)} {control.name!r}" for control in self.controls.values())
        raise SegassistError(
            f"the labeling config has no {wanted} control{named} on an <Image> to write masks to "
            f"(it has: {have or 'no controls'})"
        )

    def target_image(self, control: Control, name: str | None = None) -> ImageObject:
        """The first Image the control labels (named `name` when given)."""
        for image in self.images:
            if image.name in control.to_names and name in (None, image.name):
                return image
        raise SegassistError(f"control {control.name!r} labels no <Image> named {name!r}")

    def allowed_labels(self, from_name: Any) -> frozenset[str] | None:
        """The labels a result of control `from_name` may carry: its own, or for a plain tool (<Brush>) those
        of the <Labels> controls on the same object; None when the config has no such control."""
        control = self.controls.get(from_name) if isinstance(from_name, str) else None
        if control is None:
            return None
        if control.labels:
            return frozenset(control.labels)
        return frozenset(
            label
            for other in self.controls.values()
            if other.tag == GENERIC_LABELS and set(other.to_names) & set(control.to_names)
            for label in other.labels
        )

    def mismatches(self, result: dict[str, Any], labels: Iterable[Any]) -> list[Mismatch]:
        """How a result (its from_name, to_name, type, and `labels`) does not fit the config."""
        from_name, to_name, kind = result.get("from_name"), result.get("to_name"), result.get("type")
        control = self.controls.get(from_name) if isinstance(from_name, str) else None
        if control is None:
            return [Mismatch("control", f"from_name {from_name!r} is not a control of the labeling config")]
        found = []
        if to_name not in control.to_names:
            found.append(Mismatch("control", f"to_name {to_name!r} is not what control {from_name!r} labels"))
        # A generic <Labels> control labels any region type; a specific one only its own.
        if control.tag != GENERIC_LABELS and control.tag != kind:
            found.append(Mismatch("control", f"a {kind} result from the {control.tag} control {from_name!r}"))
        allowed = self.allowed_labels(from_name) or frozenset()
        found += [
            Mismatch("label", f"label {label!r} is not in control {from_name!r}", label=label)
            for label in labels
            if label not in allowed
        ]
        return found


def _tag(name: str) -> str:
    """A control's tag as configs spell it, where segassist knows it ("brushlabels" -> "BrushLabels")."""
    kind = _BY_NAME.get(name)
    return kind.tag if kind else name


def read_label_config(path: Path) -> LabelConfig:
    """The labeling config in `path`, which must have an <Image> and labels on it (converters need both);
    errors name the file."""
    try:
        xml = Path(path).read_text()
    except OSError as error:
        raise SegassistError(
            f"cannot read the labeling config: {error.strerror or error}", file=str(path)
        ) from None
    try:
        config = parse_label_config(xml)
    except SegassistError as error:
        raise error.at(file=str(path)) from None
    if not config.images or not config.categories:
        raise SegassistError(
            "the labeling config needs an <Image> and a labels control with <Label>s on it", file=str(path)
        )
    return config


def parse_label_config(xml: str) -> LabelConfig:
    """A labeling config's Image objects, controls and categories, as label-studio-sdk parses them."""
    from label_studio_sdk.label_interface import LabelInterface  # half a second to import: only on use

    try:
        interface = LabelInterface(xml)
    except Exception as error:  # the SDK raises assorted XML and validation errors
        raise SegassistError(f"the labeling config does not parse: {error}") from None
    images = tuple(
        ImageObject(name=obj.name, value_key=obj.value_name or DEFAULT_IMAGE_KEY)
        for obj in interface.objects or ()
        if obj.tag == "Image"
    )
    controls = {control.name: _control(control) for control in interface.controls or ()}
    config = LabelConfig(
        xml=xml, images=images, controls=controls, categories=_categories(interface, images, controls)
    )
    config.__dict__["interface"] = interface  # parsed already: keep it for whoever asks
    return config


def _control(control: Any) -> Control:
    predicted = []
    for label, tag in (control.labels_attrs or {}).items():
        for value in (tag.attr.get("predicted_values") or "").split(","):
            if value.strip():
                predicted.append((value.strip(), label))
    return Control(
        name=control.name,
        tag=control.tag.lower(),
        to_names=tuple(control.to_name or ()),
        labels=tuple(control.labels or ()),
        predicted_values=tuple(predicted),
    )


def _categories(
    interface: LabelInterface, images: tuple[ImageObject, ...], controls: dict[str, Control]
) -> list[Category]:
    """Every label of every labels control on an Image, once (the first control that has it decides)."""
    image_names = {image.name for image in images}
    categories: dict[str, Category] = {}
    for control in controls.values():
        if not (control.type is not None or control.tag == GENERIC_LABELS):
            continue
        if not image_names & set(control.to_names):
            continue
        for name, label in interface.get_control(control.name).labels_attrs.items():
            if name in categories:
                continue
            category = label.attr.get("category", len(categories) + 1)
            try:
                category_id = int(category)
            except ValueError:
                raise SegassistError(f"label {name!r} has category={category!r}, not a number") from None
            categories[name] = Category(id=category_id, name=name, color=_color(label.attr.get("background")))
    return list(categories.values())


def _color(background: str | None) -> tuple[int, int, int] | None:
    try:
        return ImageColor.getrgb(background)[:3] if background else None
    except ValueError:
        return None  # a colour Pillow does not know: leave the choice to the writer


def label_config_xml(
    categories: list[Category],
    *,
    control_type: str = "brushlabels",
    from_name: str = DEFAULT_FROM_NAME,
    to_name: str = DEFAULT_TO_NAME,
) -> str:
    """A labeling config with one labels control listing the categories (ids kept in `category`)."""
    if control_type not in WRITABLE_TYPES:
        raise SegassistError(f"unknown control type {control_type!r}; use one of {', '.join(WRITABLE_TYPES)}")
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=to_name, value="$" + DEFAULT_IMAGE_KEY, zoom="true")
    control = ET.SubElement(view, _BY_NAME[control_type].tag, name=from_name, toName=to_name)
    for category in categories:
        attributes = {"value": category.name, "category": str(category.id)}
        if category.color is not None:
            attributes["background"] = "#{:02x}{:02x}{:02x}".format(*category.color)
        ET.SubElement(control, "Label", attributes)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"
