"""Interactive (smart-tool) requests: Label Studio's prompt regions in, one suggested mask region out.

    handle(engine, task, context, info, load_image) -> {"result": [region] or [], "score": float,
                                           "model_version": str, "reason": str (only when result is empty)}

The app calls this for a /predict whose params.context is set. `context["result"]` holds the smart regions the
annotator just drew, all of one type and label (Label Studio 1.23 sends only those together):

- ``keypointlabels``: clicks, `value.x`/`value.y` in percent of the image; region-level `is_positive`
  (False for Alt-clicks; missing counts as positive). All clicks in one context make one prompt.
- ``rectanglelabels``: a box in percent (`x`, `y`, `width`, `height`, clockwise `rotation` about the top-left
  corner, which becomes the rotated box's axis-aligned bounds). With several boxes the last one drawn is used,
  as Label Studio's own SAM examples do. Clicks and a box together (other clients) make one combined prompt.

The reply holds the whole current mask as ONE region (the frontend replaces its previous suggestion with it)
on the config's mask control (BrushLabels, else BitmaskLabels, else PolygonLabels), labelled with the prompt's
label, which that control must have. Coordinates are scaled by the size of the image as loaded; clicks outside
it are clamped to its border.

Errors a person must fix in the config or request (an unknown label, no mask control, an unreadable context)
raise SegassistError naming the task and region. A prompt that holds no object (a box with no area, only
negative clicks, a mask the model finds empty) is not an error: the reply has an empty result and a `reason`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from converters import Segment
from converters.errors import SegassistError
from converters.formats.ls_regions import result_label, segment_to_result
from converters.lsconfig import CONTROL_TYPES
from converters.polygons import rectangle_to_mask
from ml_backend.engines.base import Engine, InteractiveEngine, Prompt
from ml_backend.labeling import ControlInfo, LabelConfigInfo

log = logging.getLogger(__name__)

PROMPT_TYPES = tuple(kind.name for kind in CONTROL_TYPES if kind.prompt)
# The control that receives the suggestion, in order of preference (masks, not boxes).
MASK_CONTROL_PREFERENCE = tuple(kind.name for kind in CONTROL_TYPES if kind.mask)


def handle(
    engine: Engine,
    task: dict[str, Any],
    context: dict[str, Any],
    info: LabelConfigInfo,
    load_image: Callable[[dict[str, Any]], np.ndarray],
) -> dict[str, Any]:
    """One Label Studio prediction answering the prompt regions in `context` for `task`, whose image
    `load_image(task)` gives (after the prompt is checked)."""
    task_id = task.get("id")
    if not isinstance(engine, InteractiveEngine):
        raise SegassistError(
            f"the model {engine.model_version} answers no interactive prompts; serve with --engine sam",
            task_id=task_id,
        )
    try:
        return _answer(engine, task, context, info, load_image)
    except SegassistError as error:
        raise error.at(task_id=task_id) from None


def _answer(
    engine: InteractiveEngine,
    task: dict[str, Any],
    context: dict[str, Any],
    info: LabelConfigInfo,
    load_image: Callable[[dict[str, Any]], np.ndarray],
) -> dict[str, Any]:
    regions = _prompt_regions(context)
    control = _mask_control(info)
    label = _prompt_label(regions, control)
    image = load_image(task)
    height, width = image.shape[:2]
    prompt = _to_prompt(regions, width, height)
    if prompt is None:
        return _empty(engine, "the box has no area inside the image")
    if prompt.box is None and 1 not in prompt.point_labels:
        return _empty(engine, "only negative clicks: nothing marks an object")
    image_key = str(task["data"].get(info.image.value_key, f"task:{task.get('id')}"))
    mask, score = engine.segment_prompt(image, image_key, prompt)
    if mask.is_empty:
        return _empty(engine, "the model found no object for this prompt")
    region = segment_to_result(
        Segment(mask=mask, category_id=0, score=score),
        from_name=control.name,
        to_name=control.to_name,
        control_type=control.type,
        label=label,
    )
    return {"result": [region], "score": score, "model_version": engine.model_version}


def _empty(engine: InteractiveEngine, reason: str) -> dict[str, Any]:
    log.info("interactive prompt gives no region: %s", reason)
    return {"result": [], "score": 0.0, "model_version": engine.model_version, "reason": reason}


def _prompt_regions(context: dict[str, Any]) -> list[dict[str, Any]]:
    regions = context.get("result") if isinstance(context, dict) else None
    if not isinstance(regions, list) or not regions:
        raise SegassistError("params.context.result must be a non-empty list of prompt regions")
    for region in regions:
        if not isinstance(region, dict) or not isinstance(region.get("value"), dict):
            raise SegassistError("a prompt region is not an object with a value")
        if region.get("type") not in PROMPT_TYPES:
            raise SegassistError(
                f"prompt regions must be {' or '.join(sorted(PROMPT_TYPES))}, got {region.get('type')!r}",
                region_id=region.get("id"),
            )
    return regions


def _mask_control(info: LabelConfigInfo) -> ControlInfo:
    for kind in MASK_CONTROL_PREFERENCE:
        for control in info.controls.values():
            if control.type == kind:
                return control
    tags = [kind.tag for kind in CONTROL_TYPES if kind.mask]
    raise SegassistError(
        f"the label config has no {', '.join(tags[:-1])} or {tags[-1]} control to put the mask in"
    )


def _prompt_label(regions: list[dict[str, Any]], control: ControlInfo) -> str:
    """The label of the prompt, which the mask control must offer too."""
    region = regions[-1]
    label = result_label(region)
    if label not in control.labels:
        raise SegassistError(
            f"label {label!r} is not a label of the {control.type} control {control.name!r} "
            f"(it has: {', '.join(control.labels)}); give both controls the same labels",
            region_id=region.get("id"),
        )
    return label


def _to_prompt(regions: list[dict[str, Any]], width: int, height: int) -> Prompt | None:
    """Clicks and the last box in image pixels; None when the box has no area inside the image."""
    points: list[tuple[float, float]] = []
    point_labels: list[int] = []
    box = None
    for region in regions:
        value = region["value"]
        try:
            if region["type"] == "keypointlabels":
                x = float(np.clip(_finite(value["x"]) * width / 100, 0, width - 1))
                y = float(np.clip(_finite(value["y"]) * height / 100, 0, height - 1))
                points.append((x, y))
                point_labels.append(0 if region.get("is_positive") is False else 1)
            else:
                box = _box_pixels(value, width, height)
        except (KeyError, TypeError, ValueError) as error:
            raise SegassistError(
                f"the {region['type']} prompt has no usable coordinates ({error!r})",
                region_id=region.get("id"),
            ) from None
    if box is not None:
        x0, y0, x1, y1 = box
        if not (x1 > x0 and y1 > y0):
            return None
    return Prompt(points=tuple(points), point_labels=tuple(point_labels), box=box)


def _box_pixels(value: dict[str, Any], width: int, height: int) -> tuple[float, float, float, float]:
    """A percent rectangle as pixel bounds (x0, y0, x1, y1) clipped to the image."""
    x, y, w, h = (_finite(value[key]) for key in ("x", "y", "width", "height"))
    rotation = _finite(value.get("rotation") or 0)
    if rotation % 360 and w > 0 and h > 0:
        # The rotated rectangle's pixels, then their bounds (empty when it lies outside the image).
        left, top, w_px, h_px = rectangle_to_mask(x, y, w, h, rotation, width, height).bbox
        return float(left), float(top), float(left + w_px), float(top + h_px)
    return (
        float(np.clip(x * width / 100, 0, width)),
        float(np.clip(y * height / 100, 0, height)),
        float(np.clip((x + w) * width / 100, 0, width)),
        float(np.clip((y + h) * height / 100, 0, height)),
    )


def _finite(value: object) -> float:
    """A coordinate as a float; NaN and infinities (which JSON parsers let through) are refused."""
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number
