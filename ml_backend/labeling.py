"""The label config as the backend needs it: the image, the controls on it, and class -> label maps.

Parsing goes through label-studio-sdk's `LabelInterface`. Model class names map to a control's labels by, in
order: the mapping file, a `<Label predicted_values="a,b">` attribute, the exact name, the name ignoring case.
Classes that map to nothing are dropped; they are logged once, when a config is first parsed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from label_studio_sdk.label_interface import LabelInterface

from converters import Category
from converters.errors import SegassistError

log = logging.getLogger(__name__)

# Control tags the backend reads or writes, as LS result types. The first present one in OUTPUT_PREFERENCE
# receives automatic predictions; keypoints are interactive prompts only.
SUPPORTED_CONTROLS = ("brushlabels", "bitmasklabels", "polygonlabels", "rectanglelabels", "keypointlabels")
OUTPUT_PREFERENCE = ("brushlabels", "bitmasklabels", "polygonlabels", "rectanglelabels")


@dataclass(frozen=True)
class ImageObject:
    name: str  # the <Image name=...>, i.e. every region's to_name
    value_key: str  # the task data key holding the image URL ($image -> "image")


@dataclass(frozen=True)
class ControlInfo:
    name: str
    type: str  # LS result type: brushlabels, polygonlabels ...
    to_name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class LabelConfigInfo:
    interface: LabelInterface
    image: ImageObject
    controls: dict[str, ControlInfo]
    output: ControlInfo | None
    # Engine category id -> label of the output control; categories absent here are dropped.
    label_for_category: dict[int, str]


def load_label_map(path: str | None) -> dict[str, str]:
    """The optional mapping file: a JSON object {model class name: label value}."""
    if path is None:
        return {}
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SegassistError(f"cannot read the label map: {error}", file=path) from None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise SegassistError("the label map must be a JSON object of strings to strings", file=path)
    return mapping


def parse_label_config(
    xml: str,
    categories: Sequence[Category],
    label_map: Mapping[str, str],
) -> LabelConfigInfo:
    """Find the Image object and its controls, and map the engine's categories onto the output control."""
    try:
        interface = LabelInterface(xml)
    except Exception as error:  # the SDK raises several types for malformed XML
        raise SegassistError(f"the label config does not parse: {error}") from None
    images = [obj for obj in interface.objects if obj.tag == "Image"]
    for image in images:
        controls = {
            control.name: ControlInfo(
                name=control.name,
                type=control.tag.lower(),
                to_name=image.name,
                labels=tuple(control.labels),
            )
            for control in interface.controls
            if control.tag.lower() in SUPPORTED_CONTROLS and image.name in (control.to_name or ())
        }
        if controls:
            break
    else:
        raise SegassistError(
            "the label config has no <Image> with a BrushLabels, BitmaskLabels, PolygonLabels, "
            "RectangleLabels or KeyPointLabels control"
        )
    output = next(
        (c for kind in OUTPUT_PREFERENCE for c in controls.values() if c.type == kind),
        None,
    )
    label_for_category = _map_categories(interface, output, categories, label_map) if output else {}
    return LabelConfigInfo(
        interface=interface,
        image=ImageObject(name=image.name, value_key=image.value_name),
        controls=controls,
        output=output,
        label_for_category=label_for_category,
    )


def _map_categories(
    interface: LabelInterface,
    output: ControlInfo,
    categories: Sequence[Category],
    label_map: Mapping[str, str],
) -> dict[int, str]:
    labels = output.labels
    by_predicted_value: dict[str, str] = {}
    for label, tag in interface.get_control(output.name).labels_attrs.items():
        for value in (tag.attr.get("predicted_values") or "").split(","):
            if value.strip():
                by_predicted_value[value.strip()] = label
    by_lower = {label.lower(): label for label in labels}
    mapped: dict[int, str] = {}
    unmapped: list[str] = []
    for category in categories:
        name = category.name
        label = (
            (label_map[name] if label_map.get(name) in labels else None)
            or by_predicted_value.get(name)
            or (name if name in labels else None)
            or by_lower.get(name.lower())
        )
        if label is None:
            unmapped.append(name)
        else:
            mapped[category.id] = label
    if unmapped:
        log.info(
            "control %r: %d model classes match no label and are dropped: %s",
            output.name,
            len(unmapped),
            ", ".join(unmapped),
        )
    return mapped
