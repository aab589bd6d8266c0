"""The HTML report: counts by code, then every flagged image worst first, with an overlay thumbnail.

A thumbnail shows the image (when --images finds it; a dark canvas otherwise) with every segment filled in a
colour and the segments the findings name outlined in red. Thumbnails are PNGs embedded as base64, so the
report is one self-contained file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from converters import naming
from converters.errors import SegassistError
from converters.formats.coco_panoptic import read_id_map
from converters.formats.label_map import masks_from_label_map, paint_label_map
from converters.formats.semantic import MAPPING_FILE
from converters.mask import Mask
from converters.qa import coco, labelstudio, panoptic, semantic
from converters.qa.common import find_image, load_json
from converters.qa.findings import CHECKS, Finding, Severity
from converters.qa.report import group_title, summary, worst_images
from converters.qa.run import QAOptions, QAResult, instance_options, labelstudio_options, panoptic_options

THUMBNAIL_SIDE = 360
# A click on a thumbnail opens the overlay at the image's own size, up to this side (keeps the file small).
FULL_SIDE = 2048
FULL_JPEG_QUALITY = 85
MAX_IMAGES = 200
FILL_OPACITY = 0.45
OUTLINE_BGR = (0, 0, 255)
BACKGROUND_GREY = 40


@dataclass
class Overlay:
    """What a thumbnail shows: labels (0 = nothing, k = segment k) and the full-size masks to outline."""

    labels: np.ndarray
    outlined: list[Mask] = field(default_factory=list)
    background: Path | None = None


def write_html(result: QAResult, options: QAOptions, target: Path) -> None:
    """Write the report into `target` (a path reserved in the command's `Outputs`)."""
    groups = [item for item in worst_images(result.findings) if item[0][0] != "dataset"]
    shown = groups[:MAX_IMAGES]
    overlays = dict(_overlays(result, options, {key for key, _ in shown}))
    target.write_text(_document(result, groups, shown, overlays))


# -- overlays per format ---------------------------------------------------------------------------


def _overlays(
    result: QAResult, options: QAOptions, keys: set[tuple[str, str]]
) -> Iterator[tuple[Any, Overlay]]:
    """(image key, Overlay) for the flagged images that can be drawn."""
    flagged = [f for f in result.findings if f.image_key() in keys]
    if result.format == "coco-panoptic":
        yield from _panoptic_overlays(result.input, options, keys, flagged)
    elif result.format == "coco":
        yield from _coco_overlays(result.input, options, keys, flagged)
    elif result.format == "labelstudio":
        yield from _labelstudio_overlays(result.input, options, keys, flagged)
    else:
        yield from _semantic_overlays(result.input, options, keys, flagged)


def _panoptic_overlays(
    path: Path, options: QAOptions, keys: set[tuple[str, str]], flagged: list[Finding]
) -> Iterator[tuple[Any, Overlay]]:
    pan_options = panoptic_options(path, options)
    _, jobs = panoptic.check_dataset(path, load_json(path), pan_options)
    named = {(f.image_key(), f.segment_id) for f in flagged}
    for job in jobs:
        key = ("image", str(job.annotation.get("image_id")))
        if key not in keys:
            continue
        id_map = read_id_map(pan_options.png_dir / job.annotation["file_name"]).id_map
        if id_map is None:
            continue
        ids, labels = np.unique(id_map, return_inverse=True)
        labels = labels.reshape(id_map.shape).astype(np.int32) + (0 if ids[0] == 0 else 1)
        flagged_ids = {segment_id for segment_id in ids.tolist() if (key, segment_id) in named}
        outlined = [mask for i, mask in masks_from_label_map(id_map).items() if i in flagged_ids]
        background = find_image(options.images_dir, (job.image or {}).get("file_name"))
        yield key, Overlay(labels, outlined, background)


def _coco_overlays(
    path: Path, options: QAOptions, keys: set[tuple[str, str]], flagged: list[Finding]
) -> Iterator[tuple[Any, Overlay]]:
    _, jobs = coco.check_dataset(path, load_json(path), instance_options(options))
    named = {(f.image_key(), f.annotation_id) for f in flagged}
    for job in jobs:
        key = ("image", str(job.image.get("id")))
        if key not in keys:
            continue
        masks, outlined = [], []
        for annotation in job.annotations:
            try:
                mask = coco.decode_segmentation(
                    annotation.get("segmentation"), job.image["height"], job.image["width"]
                )
            except SegassistError:
                continue
            if mask is None:
                continue
            masks.append(mask)
            if (key, annotation.get("id")) in named:
                outlined.append(mask)
        background = find_image(options.images_dir, job.image.get("file_name"))
        yield key, _painted(masks, outlined, job.image["height"], job.image["width"], background)


def _painted(
    masks: list[Mask], outlined: list[Mask], height: int, width: int, background: Path | None
) -> Overlay:
    """An overlay with segment k + 1 painted where mask k is."""
    labels = paint_label_map(masks, list(range(1, len(masks) + 1)), height, width, np.int32)
    return Overlay(labels, outlined, background)


def _labelstudio_overlays(
    path: Path, options: QAOptions, keys: set[tuple[str, str]], flagged: list[Finding]
) -> Iterator[tuple[Any, Overlay]]:
    ls_options = labelstudio_options(options)
    named = {(f.image_key(), f.annotation_id, f.region_id) for f in flagged}
    for job in labelstudio.check_ids(path, labelstudio.iter_tasks(path), []):
        key = ("task", str(job.task.get("id", f"#{job.index}")))
        if key not in keys:
            continue
        masks = labelstudio.check_task(job, ls_options, keep_masks=True).masks
        if not masks:
            continue
        height, width = next(iter(masks.values())).shape
        same_size = [(where, mask) for where, mask in masks.items() if mask.shape == (height, width)]
        outlined = [mask for (a, r), mask in same_size if (key, a, r) in named]
        background = find_image(options.images_dir, labelstudio.image_file_name(job.task))
        yield key, _painted([mask for _, mask in same_size], outlined, height, width, background)


def _semantic_overlays(
    path: Path, options: QAOptions, keys: set[tuple[str, str]], flagged: list[Finding]
) -> Iterator[tuple[Any, Overlay]]:
    folder = semantic.dataset_folder(path)
    mapping = load_json(folder / MAPPING_FILE)
    named = {(f.image_key(), f.numbers.get("value", f.segment_id)) for f in flagged}
    for image in mapping.get("images", []) if isinstance(mapping, dict) else []:
        key = ("image", str(image.get("id")))
        if key not in keys:
            continue
        label_map = cv2.imread(str(folder / str(image.get("label_map"))), cv2.IMREAD_UNCHANGED)
        if label_map is None or label_map.ndim != 2:
            continue
        outlined = [mask for value, mask in masks_from_label_map(label_map).items() if (key, value) in named]
        background = find_image(options.images_dir, image.get("file_name"))
        yield key, Overlay(label_map.astype(np.int32), outlined, background)


# -- drawing ---------------------------------------------------------------------------------------


def _palette(count: int) -> np.ndarray:
    """Distinct, deterministic BGR colours; entry 0 (no segment) is unused."""
    hues = (np.arange(count) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(count, 200, np.uint8), np.full(count, 255, np.uint8)], axis=1)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]


def overlay_pictures(overlay: Overlay) -> tuple[bytes, bytes]:
    """The overlay as a PNG thumbnail and as a full-size JPEG (its side capped at FULL_SIDE): the photo
    background is read once for both."""
    height, width = overlay.labels.shape
    photo = None
    if overlay.background is not None:
        try:
            with Image.open(overlay.background) as image:
                photo = cv2.cvtColor(
                    np.asarray(ImageOps.exif_transpose(image).convert("RGB")), cv2.COLOR_RGB2BGR
                )
        except OSError:
            photo = None
    thumbnail = _draw(overlay, photo, min(1.0, THUMBNAIL_SIDE / max(height, width)))
    full = _draw(overlay, photo, min(1.0, FULL_SIDE / max(height, width)))
    ok_thumbnail, thumbnail_png = cv2.imencode(".png", thumbnail)
    ok_full, full_jpeg = cv2.imencode(".jpg", full, [cv2.IMWRITE_JPEG_QUALITY, FULL_JPEG_QUALITY])
    if not (ok_thumbnail and ok_full):
        raise RuntimeError("encoding an overlay failed")
    return thumbnail_png.tobytes(), full_jpeg.tobytes()


def _draw(overlay: Overlay, photo: np.ndarray | None, scale: float) -> np.ndarray:
    """The overlay drawn at `scale` over the photo (or a dark canvas), flagged segments outlined."""
    height, width = overlay.labels.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if photo is not None:
        canvas = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    else:
        canvas = np.full((size[1], size[0], 3), BACKGROUND_GREY, np.uint8)
    labels = cv2.resize(overlay.labels, size, interpolation=cv2.INTER_NEAREST)
    colours = _palette(int(labels.max()) + 1)
    covered = labels > 0
    canvas[covered] = (canvas[covered] * (1 - FILL_OPACITY) + colours[labels[covered]] * FILL_OPACITY).astype(
        np.uint8
    )
    for mask in overlay.outlined:
        small = _thumbnail_mask(mask, scale, size)
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, OUTLINE_BGR, 2)
    return canvas


def _thumbnail_mask(mask: Mask, scale: float, size: tuple[int, int]) -> np.ndarray:
    """The mask at thumbnail scale, from its crop (never a full-size array)."""
    small = np.zeros((size[1], size[0]), np.uint8)
    if mask.is_empty:
        return small
    rows, cols = mask.bits.shape
    top, left = min(round(mask.top * scale), size[1] - 1), min(round(mask.left * scale), size[0] - 1)
    height = max(1, min(round(rows * scale), size[1] - top))
    width = max(1, min(round(cols * scale), size[0] - left))
    crop = cv2.resize(mask.bits.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    small[top : top + height, left : left + width] = crop
    return small


# -- document --------------------------------------------------------------------------------------

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
.error { color: #b00020; font-weight: 600; } .warning { color: #a05a00; } .info { color: #555; }
.image { display: flex; align-items: flex-start; gap: 1em; margin: 1em 0; padding-top: 1em; }
.image { border-top: 1px solid #ddd; }
.image h3 { overflow-wrap: anywhere; }
.image img { flex: none; border: 1px solid #999; }
a.zoom { flex: none; cursor: zoom-in; }
#viewer { position: fixed; inset: 0; background: rgba(0, 0, 0, 0.85); overflow: auto; cursor: zoom-out; }
#viewer img { display: block; margin: 1em auto; border: none; }
"""

# A click on a thumbnail shows its full-size overlay above the page; a click on that closes it. The full-size
# image is made only then, so the page's images are the thumbnails alone.
_VIEWER_SCRIPT = """<script>
document.addEventListener('click', (event) => {
  const old = document.getElementById('viewer');
  if (old) { old.remove(); return; }
  const zoom = event.target.closest('a.zoom');
  if (!zoom) return;
  event.preventDefault();
  const viewer = document.createElement('div');
  viewer.id = 'viewer';
  const image = document.createElement('img');
  image.alt = zoom.dataset.title;
  image.src = zoom.dataset.full;
  viewer.appendChild(image);
  document.body.appendChild(viewer);
});
</script>"""


def _findings_table(findings: list[Finding]) -> str:
    rows = []
    for finding in findings:
        severity = finding.severity.label
        rows.append(
            f'<tr><td class="{severity}">{severity}</td><td><code>{finding.code}</code></td>'
            f"<td>{html.escape(finding.place())}</td><td>{html.escape(finding.message)}</td></tr>"
        )
    return (
        "<table><tr><th>severity</th><th>code</th><th>where</th><th>message</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _document(result: QAResult, groups: list[Any], shown: list[Any], overlays: dict[Any, Overlay]) -> str:
    counts = summary(result)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>segassist QA: {html.escape(result.input.name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>QA of {html.escape(str(result.input))}</h1>",
        f"<p>{html.escape(result.format)}: {result.checked} checked; "
        + ", ".join(f'<span class="{label}">{n} {label}</span>' for label, n in counts["by_severity"].items())
        + "</p>",
    ]
    if not result.findings:
        parts.append('<p class="clean">no findings</p>')
    else:
        parts.append("<table><tr><th>count</th><th>severity</th><th>code</th><th>meaning</th></tr>")
        for code, n in counts["by_code"].items():
            check = CHECKS[code]
            label = check.severity.label
            parts.append(
                f'<tr><td>{n}</td><td class="{label}">{label}</td><td><code>{code}</code></td>'
                f"<td>{html.escape(check.explanation)}</td></tr>"
            )
        parts.append("</table>")
    dataset_level = [f for f in result.findings if f.image_key()[0] == "dataset"]
    if dataset_level:
        parts.append("<h2>Dataset</h2>" + _findings_table(dataset_level))
    if groups:
        more = f" (the worst {len(shown)} of {len(groups)})" if len(shown) < len(groups) else ""
        parts.append(f"<h2>Flagged images, worst first{more}</h2>")
    for key, findings in shown:
        errors = sum(1 for f in findings if f.severity == Severity.ERROR)
        title = html.escape(group_title(result, key, findings))
        overlay = overlays.get(key)
        picture = ""
        if overlay is not None:
            thumbnail, full = (base64.b64encode(data).decode("ascii") for data in overlay_pictures(overlay))
            picture = (
                f'<a class="zoom" href="#" title="click for the full-size overlay" data-title="{title}" '
                f'data-full="data:image/jpeg;base64,{full}">'
                f'<img alt="{title}" src="data:image/png;base64,{thumbnail}"></a>'
            )
        counted = f"{naming.plural(errors, 'error')}, {naming.plural(len(findings), 'finding')}"
        parts.append(
            f'<div class="image">{picture}<div>'
            f"<h3>{title}: {counted}</h3>"
            f"{_findings_table(findings)}</div></div>"
        )
    parts.append(_VIEWER_SCRIPT)
    parts.append("</body></html>\n")
    return "\n".join(parts)
