"""The label config as the backend needs it: the image, the controls on it, and class -> label maps.

Parsing is converters' Label Studio config module (`converters.lsconfig`, on label-studio-sdk's
`LabelInterface`), which also says which control types there are. Model class names map to a control's
labels by, in order: the mapping file, a `<Label predicted_values="a,b">` attribute, the exact name, the name
ignoring case. Classes that map to nothing are dropped; they are logged once, when a config is first parsed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from converters import Category
from converters.errors import SegassistError
from converters.lsconfig import CONTROL_TYPES, Control, ImageObject, LabelConfig
from converters.lsconfig import parse_label_config as parse_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlInfo:
    name: str
    type: str  # LS result type: brushlabels, polygonlabels ...
    to_name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class LabelConfigInfo:
    """Plain data, pickled as it is to Ray's actors: no lxml tree (`config.interface` parses on first use)."""

    config: LabelConfig
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
    """Find the Image object and its controls, and map the engine's categories onto the output control.

    Automatic predictions go to the first control in converters' order of preference (masks, then boxes);
    key points are interactive prompts only."""
    config = parse_config(xml)
    # In converters' order of preference, so the first control with an area is the output.
    for image in config.images:
        found = config.image_controls(image, [kind.name for kind in CONTROL_TYPES])
        if found:
            break
    else:
        tags = [kind.tag for kind in CONTROL_TYPES]
        raise SegassistError(
            f"the label config has no <Image> with a {', '.join(tags[:-1])} or {tags[-1]} control"
        )
    controls = {
        control.name: ControlInfo(
            name=control.name, type=control.tag, to_name=image.name, labels=control.labels
        )
        for control in found
    }
    output = next((control for control in found if control.type.area), None)
    label_for_category = _map_categories(output, categories, label_map) if output else {}
    return LabelConfigInfo(
        config=config,
        image=image,
        controls=controls,
        output=controls[output.name] if output else None,
        label_for_category=label_for_category,
    )


def _map_categories(
    output: Control,
    categories: Sequence[Category],
    label_map: Mapping[str, str],
) -> dict[int, str]:
    labels = output.labels
    by_predicted_value = dict(output.predicted_values)
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
