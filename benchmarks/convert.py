"""Conversion speed and memory against peers run in the same session.

1. Label Studio export with 12-megapixel brush regions → COCO instance, against label-studio-sdk's
   BRUSH_TO_COCO (`Converter.convert(..., "BRUSH_TO_COCO")`) on the same export file, per region. Two inputs:
   real editor strokes (the anti-aliased alpha of the real LS fixture, tiled to 4484x2802) and smooth 0/255
   ellipses at 4000x3000 (what ML backends write).
2. COCO panoptic export of 2048x2048 images with 300 overlapping segments (later wins), against a
   straightforward implementation written here: one full-image mask per segment, as panopticapi's
   converters do (paint, `ids == id` for area and bbox, PNG through Pillow). Both outputs are checked equal.
3. Peak RSS of `segassist convert` (Label Studio → COCO panoptic) on 2,000 tasks against 200, each in its own
   process, small images.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from timing import median_seconds

from converters import Category, ImageRecord, Mask, Origin, Segment, brush, coco_rle
from converters.convert import convert
from converters.formats.coco_panoptic import CocoPanopticRenderer
from converters.formats.common import Options
from converters.formats.label_map import ids_to_rgb, rgb_to_ids

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
TARGET_LS_TO_COCO = 30.0
TARGET_PANOPTIC = 15.0
TARGET_RSS = 1.5
CONFIG = (
    '<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
    '<Label value="a"/><Label value="b"/><Label value="Planet"/></BrushLabels></View>'
)


# -- 1. LS brush export -> COCO instance -----------------------------------------------------------------


def _real_strokes() -> np.ndarray:
    alpha = np.asarray(Image.open(REALDATA / "labelstudio/derived/image_segmentation_alpha_2242x2802.png"))
    return np.hstack([alpha, alpha[:, ::-1]])  # 4484 x 2802 = 12.6 MP, anti-aliased like editor strokes


def _smooth_ellipses(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((3000, 4000), dtype=np.uint8)
    for _ in range(5):
        center = (int(rng.integers(0, 4000)), int(rng.integers(0, 3000)))
        axes = (int(rng.integers(200, 800)), int(rng.integers(150, 600)))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    return mask


def _brush_export(path: Path, alphas: list[np.ndarray]) -> None:
    results = []
    for index, alpha in enumerate(alphas):
        height, width = alpha.shape
        results.append(
            {
                "id": f"r{index}",
                "type": "brushlabels",
                "from_name": "tag",
                "to_name": "image",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": brush.encode(alpha), "brushlabels": ["ab"[index % 2]]},
            }
        )
    task = {
        "id": 1,
        "data": {"image": "/data/upload/1/photo.png"},
        "annotations": [{"id": 1, "result": results}],
    }
    path.write_text(json.dumps([task]))


def _brush_row(folder: Path, name: str, export: Path, regions: int, threshold: int) -> tuple[str, float]:
    """Time both converters on one export; the SDK gets the labeling config, so segassist gets it too."""
    from label_studio_sdk.converter import Converter

    config = folder / "config.xml"
    config.write_text(CONFIG)
    options = {"label_config": config, "alpha_threshold": threshold}
    ours = median_seconds(lambda: convert("labelstudio", "coco", export, folder / "ours.json", **options), 3)
    converter = Converter(config=CONFIG, project_dir=None, download_resources=False)
    sdk = median_seconds(
        lambda: converter.convert(str(export), str(folder / "sdk"), "BRUSH_TO_COCO", is_dir=False), 1
    )
    ours_count = len(json.loads((folder / "ours.json").read_text())["annotations"])
    sdk_count = len(json.loads((folder / "sdk/result_coco.json").read_text())["annotations"])
    ratio = sdk / ours
    row = (
        f"| {name} | {regions} | {1000 * ours / regions:.0f} | {1000 * sdk / regions:.0f} | "
        f"**{ratio:.0f}×** | {ours_count} / {sdk_count} |"
    )
    return row, ratio


def _ls_to_coco(folder: Path) -> list[str]:
    logging.getLogger("label_studio_sdk").setLevel(logging.ERROR)
    strokes, smooth = folder / "strokes.json", folder / "smooth.json"
    _brush_export(strokes, [_real_strokes()] * 2)
    _brush_export(smooth, [_smooth_ellipses(1), _smooth_ellipses(2)])
    measured = [
        # alpha > 0 is foreground, as in the SDK, for the anti-aliased strokes.
        _brush_row(folder, "real editor strokes, 4484x2802, anti-aliased", strokes, 2, 1),
        _brush_row(folder, "smooth ellipses, 4000x3000, 0/255", smooth, 2, 128),
    ]
    # Context, outside the target: the real fixture export itself, as an older editor wrote it (colour and
    # alpha words, so many literal groups), 6.3 MP.
    fixture = REALDATA / "labelstudio/derived/image_segmentation_export_with_dims.json"
    fixture_row, _ = _brush_row(
        folder, "real LS fixture export (older editor format), 2242x2802", fixture, 1, 1
    )
    lowest = min(ratio for _, ratio in measured)
    verdicts = ", ".join(
        f"{name} {ratio:.0f}× ({'met' if ratio >= TARGET_LS_TO_COCO else 'NOT met'})"
        for (_, ratio), name in zip(measured, ("real editor strokes", "smooth ellipses"), strict=True)
    )
    return [
        "### Label Studio brush export → COCO instance (per 12-MP region)",
        "",
        "| input | regions | segassist ms/region | SDK BRUSH_TO_COCO ms/region | speed-up | annotations "
        "(ours / SDK) |",
        "|---|---|---|---|---|---|",
        *(row for row, _ in measured),
        fixture_row,
        "",
        f"Target ≥ {TARGET_LS_TO_COCO:.0f}× per 12-MP region: {verdicts}; lowest {lowest:.0f}×. Both read "
        "the same export file and write COCO JSON; the SDK splits each region into one annotation per blob "
        "and drops holes, segassist writes one exact RLE annotation per region. The SDK's decoder costs per "
        "RLE bit, so its time grows with the anti-aliased edges of real strokes (and with the literal groups "
        "of the older editor format, last row, outside the target); on smooth 0/255 masks it is cheap. "
        "segassist never makes a 12-MP array: it lifts the RLE lists out of the JSON text before ijson, "
        "thresholds the decoded runs into the region's crop and finds the column-major runs in one scan of "
        "the crop; on the smooth ellipses (crops of ~11 MP) writing and scanning that crop, and the "
        "fixed per-call file work, are most of what remains.",
        "",
    ]


# -- 2. panoptic export, 2048x2048, 300 segments ---------------------------------------------------------

SIDE, SEGMENTS = 2048, 300
PANOPTIC_CATEGORIES = [Category(i, f"thing{i}") for i in range(1, 11)] + [
    Category(i, f"stuff{i}", isthing=False) for i in range(11, 14)
]


def _panoptic_image(seed: int) -> ImageRecord:
    rng = np.random.default_rng(seed)
    segments = []
    for index in range(SEGMENTS):
        radius_y, radius_x = (int(v) for v in rng.integers(10, 160, size=2))
        crop = np.zeros((2 * radius_y + 1, 2 * radius_x + 1), dtype=np.uint8)
        cv2.ellipse(
            crop, (radius_x, radius_y), (radius_x, radius_y), float(rng.uniform(0, 180)), 0, 360, 1, -1
        )
        top = int(rng.integers(0, SIDE - crop.shape[0]))
        left = int(rng.integers(0, SIDE - crop.shape[1]))
        category = int(rng.integers(1, 11)) if index % 10 else int(rng.integers(11, 14))
        segments.append(
            Segment(Mask.from_crop(SIDE, SIDE, top, left, crop), category, origin=Origin(order=index))
        )
    return ImageRecord(id=seed, file_name=f"img{seed}.jpg", width=SIDE, height=SIDE, segments=segments)


def _naive_panoptic(image: ImageRecord, isthing: dict[int, bool]) -> tuple[list[dict], bytes]:
    """One full-image mask per segment: the approach of panopticapi's converters, with later-wins painting."""
    pan = np.zeros((image.height, image.width), dtype=np.uint32)
    stuff_ids: dict[int, int] = {}
    info = {}
    next_id = 1
    for segment in image.segments:
        full = segment.mask.dense()
        if segment.category_id in stuff_ids:  # one segment per stuff category
            segment_id = stuff_ids[segment.category_id]
        else:
            segment_id = next_id
            next_id += 1
            info[segment_id] = segment.category_id
            if not isthing[segment.category_id]:
                stuff_ids[segment.category_id] = segment_id
        pan[full] = segment_id
    segments_info = []
    for segment_id, category_id in info.items():
        region = pan == segment_id
        area = int(region.sum())
        if area == 0:
            continue
        # The bbox as panopticapi's cityscapes converter computes it: projections onto both axes.
        columns, rows = np.nonzero(region.sum(axis=0))[0], np.nonzero(region.sum(axis=1))[0]
        bbox = [int(columns[0]), int(rows[0]), int(columns[-1] - columns[0] + 1), int(rows[-1] - rows[0] + 1)]
        segments_info.append({"id": segment_id, "category_id": category_id, "area": area, "bbox": bbox})
    buffer = io.BytesIO()
    Image.fromarray(ids_to_rgb(pan)).save(buffer, format="PNG")
    return segments_info, buffer.getvalue()


def _same_partition(png_a: bytes, info_a: list[dict], png_b: bytes, info_b: list[dict]) -> bool:
    """Equal up to id renumbering: the same pixels carry the same category, areas and boxes agree."""
    ids_a = rgb_to_ids(np.asarray(Image.open(io.BytesIO(png_a)).convert("RGB")))
    ids_b = rgb_to_ids(np.asarray(Image.open(io.BytesIO(png_b)).convert("RGB")))
    pairs = np.unique(ids_a.astype(np.uint64) << np.uint64(24) | ids_b, return_counts=False)
    if len(pairs) != len(np.unique(ids_a)) or len(pairs) != len(np.unique(ids_b)):
        return False
    category_a = {i["id"]: (i["category_id"], i["area"], list(i["bbox"])) for i in info_a}
    category_b = {i["id"]: (i["category_id"], i["area"], list(i["bbox"])) for i in info_b}
    return sorted(category_a.values()) == sorted(category_b.values())


def _panoptic() -> list[str]:
    image = _panoptic_image(1)
    renderer = CocoPanopticRenderer(PANOPTIC_CATEGORIES, Options(overlap="order"))
    isthing = {category.id: category.isthing for category in PANOPTIC_CATEGORIES}
    start = time.perf_counter()
    naive_info, naive_png = _naive_panoptic(image, isthing)
    naive = time.perf_counter() - start  # one run: it takes seconds
    _, annotation, png = renderer.render(image).payload
    if not _same_partition(png, annotation["segments_info"], naive_png, naive_info):
        raise AssertionError("segassist and the straightforward panoptic writer disagree")
    ours = median_seconds(lambda: renderer.render(image), 5)
    ratio = naive / ours
    megapixels = SIDE * SIDE / 1e6
    verdict = "met" if ratio >= TARGET_PANOPTIC else "NOT met"
    return [
        f"### COCO panoptic export, {SIDE}x{SIDE}, {SEGMENTS} overlapping segments (later wins)",
        "",
        "| writer | ms/image | MPix/s | speed-up |",
        "|---|---|---|---|",
        f"| segassist (overlap resolution on crops, one id canvas, PNG) | {1000 * ours:.0f} | "
        f"{megapixels / ours:.1f} | **{ratio:.0f}×** |",
        f"| one full-image mask per segment (panopticapi's approach) | {1000 * naive:.0f} | "
        f"{megapixels / naive:.1f} | 1× |",
        "",
        f"Target ≥ {TARGET_PANOPTIC:.0f}×: **{verdict}**. Both outputs were checked to hold the same "
        "partition, categories, areas and boxes.",
        "",
    ]


# -- 3. peak RSS, 2,000 tasks against 200 ----------------------------------------------------------------

_RSS_CHILD = """
import sys
from converters.convert import convert
convert("labelstudio", "coco-panoptic", sys.argv[1], sys.argv[2], overlap="order")
# VmHWM is this process's own peak; ru_maxrss would include the parent's pages at fork time on Linux.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def _small_export(path: Path, tasks: int) -> None:
    rng = np.random.default_rng(0)
    with path.open("w") as out:
        out.write("[")
        for task_id in range(1, tasks + 1):
            results = []
            for index in range(4):
                alpha = np.zeros((96, 128), dtype=np.uint8)
                center = (int(rng.integers(10, 118)), int(rng.integers(10, 86)))
                cv2.circle(alpha, center, int(rng.integers(5, 30)), 255, -1)
                results.append(
                    {
                        "id": f"{task_id}-{index}",
                        "type": "brushlabels",
                        "original_width": 128,
                        "original_height": 96,
                        "value": {
                            "format": "rle",
                            "rle": brush.encode(alpha),
                            "brushlabels": ["ab"[index % 2]],
                        },
                    }
                )
            task = {
                "id": task_id,
                "data": {"image": f"img{task_id}.png"},
                "annotations": [{"result": results}],
            }
            out.write(("," if task_id > 1 else "") + json.dumps(task))
        out.write("]")


def _peak_rss_kib(export: Path, output: Path) -> int:
    completed = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(export), str(output)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    return int(completed.stdout.strip().splitlines()[-1])


def _memory(folder: Path) -> list[str]:
    rows = []
    peaks = {}
    for tasks in (200, 2000):
        export = folder / f"tasks{tasks}.json"
        _small_export(export, tasks)
        if tasks == 200:
            # A first process compiles the numba kernels when their disk cache is stale (after an edit or a
            # checkout); LLVM's memory would then count in one measurement only.
            _peak_rss_kib(export, folder / "warm-up.json")
        peaks[tasks] = _peak_rss_kib(export, folder / f"pan{tasks}.json")
        size_mb = export.stat().st_size / 1e6
        rows.append(f"| {tasks:,} | {size_mb:.1f} | {peaks[tasks] / 1024:.0f} |")
    ratio = peaks[2000] / peaks[200]
    verdict = "met" if ratio <= TARGET_RSS else "NOT met"
    return [
        "### Peak memory, Label Studio → COCO panoptic (streamed)",
        "",
        "| tasks | export MB | peak RSS MiB |",
        "|---|---|---|",
        *rows,
        "",
        f"Ratio 2,000 / 200 tasks: **{ratio:.2f}** (target ≤ {TARGET_RSS}: **{verdict}**).",
        "",
    ]


def run() -> str:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        # Warm the numba kernels (compiled once and cached on disk, as after any first run).
        rle = brush.encode(np.ones((4, 4), dtype=bool))
        brush.decode(rle, 4, 4)
        coco_rle.encode(brush.decode_mask(rle, 4, 4))
        lines = ["## Conversion", "", *_ls_to_coco(folder), *_panoptic(), *_memory(folder)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
