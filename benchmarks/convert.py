"""Conversion speed and memory against peers run in the same session, each side timed alike (one warm-up
call, the same repetitions, calls alternating: `timing.timed_pair`) and its output checked equal first.

1. Label Studio brush export → COCO instance. The headline peer produces the same output from the peers' own
   parts: label-studio-sdk's `decode_rle` per region, then pycocotools' `encode`, one RLE annotation per
   region; both outputs are checked equal pixel for pixel. label-studio-sdk's `BRUSH_TO_COCO` (the path
   users take today; polygons, one annotation per blob, holes lost) is timed beside it. Inputs: the real LS
   fixture export as the editor wrote it (its own RLE stream, 2242x2802, anti-aliased), and smooth 0/255
   ellipses at 4000x3000 encoded by the SDK's `mask2rle` (what other ML backends write).
2. COCO panoptic export of 2048x2048 images with 300 overlapping segments (later wins), against panopticapi's
   algorithm done efficiently: each segment painted into one id canvas in order (its crop into its box, not a
   full-image mask), then every area from one np.unique sort and every box from the same sort. The PNG
   encoder is the same on both sides, so the ratio is the id-map and statistics work. Outputs checked equal.
3. Peak RSS of `segassist convert` (Label Studio → COCO panoptic) on 50,000 generated tasks against 5,000,
   each in its own process, as bytes per task above the smaller run's peak; beside it the same for a reader
   that loads the whole export (`json.load`, what the SDK's converter and panopticapi start with) after the
   same imports.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from label_studio_sdk.converter import brush as sdk_brush
from pycocotools import mask as coco_mask
from qa import unique_stats
from timing import main, timed_pair

from converters import Category, ImageRecord, Mask, Origin, Segment, brush, coco_rle
from converters.convert import convert
from converters.formats.coco_panoptic import CocoPanopticRenderer, encode_id_png
from converters.formats.common import Options
from converters.formats.label_map import rgb_to_ids

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
TARGET_LS_TO_COCO = 30.0
TARGET_PANOPTIC = 15.0
TARGET_RSS = 1.5
CONFIG = (
    '<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
    '<Label value="a"/><Label value="b"/><Label value="Planet"/></BrushLabels></View>'
)


# -- 1. LS brush export -> COCO instance -----------------------------------------------------------------

FIXTURE = REALDATA / "labelstudio/derived/image_segmentation_export_with_dims.json"


def _smooth_ellipses(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), dtype=np.uint8)
    for _ in range(5):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(width // 20, width // 5)), int(rng.integers(height // 20, height // 5)))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    return mask


def _brush_export(path: Path, alphas: list[np.ndarray]) -> None:
    """One task whose regions carry the SDK's own encoding (`mask2rle`) of each alpha."""
    results = []
    for index, alpha in enumerate(alphas):
        height, width = alpha.shape
        value = {"format": "rle", "rle": sdk_brush.mask2rle(alpha), "brushlabels": ["ab"[index % 2]]}
        results.append(
            {
                "id": f"r{index}",
                "type": "brushlabels",
                "from_name": "tag",
                "to_name": "image",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": value,
            }
        )
    task = {
        "id": 1,
        "data": {"image": "/data/upload/1/photo.png"},
        "annotations": [{"id": 1, "result": results}],
    }
    path.write_text(json.dumps([task]))


def sdk_pycocotools_coco(export: Path, output: Path, threshold: int) -> None:
    """segassist's output made from the peers' parts: the whole export loaded, each brush region decoded
    by the SDK's `decode_rle`, thresholded (alpha >= threshold), encoded by pycocotools: one annotation
    per region."""
    annotations = []
    for task in json.loads(export.read_text()):
        for annotation in task["annotations"]:
            for result in annotation["result"]:
                if result.get("type") != "brushlabels":
                    continue
                height, width = result["original_height"], result["original_width"]
                alpha = sdk_brush.decode_rle(result["value"]["rle"]).reshape(height, width, 4)[:, :, 3]
                rle = coco_mask.encode(np.asfortranarray(alpha >= threshold, dtype=np.uint8))
                annotations.append(
                    {
                        "label": result["value"]["brushlabels"][0],
                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                        "area": int(coco_mask.area(rle)),
                        "bbox": [int(v) for v in coco_mask.toBbox(rle)],
                    }
                )
    output.write_text(json.dumps({"annotations": annotations}))


def _assert_same_annotations(ours: Path, peer: Path) -> None:
    """One annotation per region on both sides, equal pixel for pixel (the same compressed RLE), area, box."""
    written = json.loads(ours.read_text())
    names = {category["id"]: category["name"] for category in written["categories"]}
    mine = [
        (
            names[a["category_id"]],
            a["segmentation"]["size"],
            a["segmentation"]["counts"],
            a["area"],
            a["bbox"],
        )
        for a in written["annotations"]
    ]
    theirs = [
        (a["label"], a["segmentation"]["size"], a["segmentation"]["counts"], a["area"], a["bbox"])
        for a in json.loads(peer.read_text())["annotations"]
    ]
    assert mine == theirs, f"segassist and SDK decode_rle + pycocotools disagree on {ours.name}"


def _brush_row(folder: Path, name: str, export: Path, threshold: int, repeats: int) -> tuple[str, float]:
    """Time segassist, the same-output peer and BRUSH_TO_COCO on one export (the SDK gets the labeling config,
    so segassist gets it too)."""
    from label_studio_sdk.converter import Converter

    config = folder / "config.xml"
    config.write_text(CONFIG)
    ours_json, peer_json = folder / "ours.json", folder / "peer.json"

    def ours() -> None:
        convert("labelstudio", "coco", export, ours_json, label_config=config, alpha_threshold=threshold)

    def peer() -> None:
        sdk_pycocotools_coco(export, peer_json, threshold)

    converter = Converter(config=CONFIG, project_dir=None, download_resources=False)

    def brush_to_coco() -> None:
        converter.convert(str(export), str(folder / "sdk"), "BRUSH_TO_COCO", is_dir=False)

    ours(), peer()
    _assert_same_annotations(ours_json, peer_json)
    regions = len(json.loads(peer_json.read_text())["annotations"])
    ours_s, peer_s = timed_pair(ours, peer, repeats)
    ours_again, sdk_s = timed_pair(ours, brush_to_coco, repeats)
    sdk_count = len(json.loads((folder / "sdk/result_coco.json").read_text())["annotations"])
    ratio = peer_s / ours_s
    row = (
        f"| {name} | {regions} | {1000 * ours_s / regions:.0f} | {1000 * peer_s / regions:.0f} | "
        f"**{ratio:.0f}×** | {1000 * sdk_s / regions:.0f} | {sdk_s / ours_again:.0f}× "
        f"| {regions} / {sdk_count} |"
    )
    return row, ratio


def _ls_to_coco(folder: Path, quick: bool, repeats: int) -> list[str]:
    logging.getLogger("label_studio_sdk").setLevel(logging.ERROR)
    smooth = folder / "smooth.json"
    width, height = (400, 300) if quick else (4000, 3000)
    _brush_export(smooth, [_smooth_ellipses(width, height, 1), _smooth_ellipses(width, height, 2)])
    # The real editor stream is 6.3 MP; the SDK needs seconds per decode, too long for the quick mode.
    inputs = (
        [] if quick else [("real LS fixture export, the editor's own RLE, 2242x2802, alpha > 0", FIXTURE, 1)]
    )
    inputs.append((f"smooth ellipses, {width}x{height}, 0/255, SDK-encoded, alpha ≥ 128", smooth, 128))
    measured = [_brush_row(folder, name, export, threshold, repeats) for name, export, threshold in inputs]
    verdicts = ", ".join(
        f"{name.split(',')[0]} {ratio:.0f}× ({'met' if ratio >= TARGET_LS_TO_COCO else 'NOT met'})"
        for (_, ratio), (name, _, _) in zip(measured, inputs, strict=True)
    )
    return [
        "### Label Studio brush export → COCO instance",
        "",
        "| input | regions | segassist ms/region | SDK decode_rle + pycocotools ms/region | speed-up (same "
        "output) | SDK BRUSH_TO_COCO ms/region | speed-up vs BRUSH_TO_COCO | annotations (ours / "
        "BRUSH_TO_COCO) |",
        "|---|---|---|---|---|---|---|---|",
        *(row for row, _ in measured),
        "",
        "Headline: the same output (one exact RLE annotation per region, checked equal pixel for pixel), "
        f"target ≥ {TARGET_LS_TO_COCO:.0f}×: {verdicts}. Each side reads the export file and writes COCO "
        "JSON. BRUSH_TO_COCO is the path Label Studio users take today; it writes polygons, one "
        "annotation per blob, and drops holes, so its output differs. The SDK's decoder costs per RLE bit: "
        "its time grows with the anti-aliased edges and the literal groups of the editor's stream; segassist "
        "never makes the full RGBA array: it thresholds the decoded runs into the region's crop and "
        "scans the crop's columns once.",
        "",
    ]


# -- 2. panoptic export, 2048x2048, 300 segments ---------------------------------------------------------

SEGMENTS = 300
PANOPTIC_CATEGORIES = [Category(i, f"thing{i}") for i in range(1, 11)] + [
    Category(i, f"stuff{i}", isthing=False) for i in range(11, 14)
]


def _panoptic_image(side: int, seed: int) -> ImageRecord:
    rng = np.random.default_rng(seed)
    segments = []
    largest = side * 160 // 2048
    for index in range(SEGMENTS):
        radius_y, radius_x = (int(v) for v in rng.integers(largest // 16 + 1, largest, size=2))
        crop = np.zeros((2 * radius_y + 1, 2 * radius_x + 1), dtype=np.uint8)
        cv2.ellipse(
            crop, (radius_x, radius_y), (radius_x, radius_y), float(rng.uniform(0, 180)), 0, 360, 1, -1
        )
        top = int(rng.integers(0, side - crop.shape[0]))
        left = int(rng.integers(0, side - crop.shape[1]))
        category = int(rng.integers(1, 11)) if index % 10 else int(rng.integers(11, 14))
        segments.append(
            Segment(Mask.from_crop(side, side, top, left, crop), category, origin=Origin(order=index))
        )
    return ImageRecord(id=seed, file_name=f"img{seed}.jpg", width=side, height=side, segments=segments)


def unique_panoptic(image: ImageRecord, isthing: dict[int, bool]) -> tuple[list[dict], bytes]:
    """panopticapi's algorithm, efficiently: paint every segment's crop into one id canvas in order (later
    wins; one id per stuff category), then areas and boxes of all ids from one np.unique sort."""
    pan = np.zeros((image.height, image.width), dtype=np.uint32)
    category_of: dict[int, int] = {}
    stuff_ids: dict[int, int] = {}
    for segment in image.segments:
        category_id = segment.category_id
        segment_id = stuff_ids.get(category_id) or len(category_of) + 1
        category_of[segment_id] = category_id
        if not isthing[category_id]:
            stuff_ids[category_id] = segment_id
        mask = segment.mask
        rows, cols = mask.bits.shape
        pan[mask.top : mask.top + rows, mask.left : mask.left + cols][mask.bits.astype(bool)] = segment_id
    segments_info = [
        {"id": segment_id, "category_id": category_of[segment_id], "area": area, "bbox": list(box)}
        for segment_id, (area, box) in unique_stats(pan).items()
        if segment_id != 0
    ]
    return segments_info, encode_id_png(pan)


def _same_partition(png_a: bytes, info_a: list[dict], png_b: bytes, info_b: list[dict]) -> bool:
    """Equal up to id renumbering: the same pixels carry the same category, areas and boxes agree."""

    def decode(png: bytes) -> np.ndarray:
        return rgb_to_ids(
            cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        )

    ids_a, ids_b = decode(png_a), decode(png_b)
    pairs = np.unique(ids_a.astype(np.uint64) << np.uint64(24) | ids_b)
    if len(pairs) != len(np.unique(ids_a)) or len(pairs) != len(np.unique(ids_b)):
        return False
    category_a = {i["id"]: (i["category_id"], i["area"], list(i["bbox"])) for i in info_a}
    category_b = {i["id"]: (i["category_id"], i["area"], list(i["bbox"])) for i in info_b}
    return sorted(category_a.values()) == sorted(category_b.values())


def _panoptic(quick: bool, repeats: int) -> list[str]:
    side = 256 if quick else 2048
    image = _panoptic_image(side, 1)
    renderer = CocoPanopticRenderer(PANOPTIC_CATEGORIES, Options(overlap="order"))
    isthing = {category.id: category.isthing for category in PANOPTIC_CATEGORIES}
    peer_info, peer_png = unique_panoptic(image, isthing)
    _, annotation, png = renderer.render(image).payload
    if not _same_partition(png, annotation["segments_info"], peer_png, peer_info):
        raise AssertionError("segassist and panopticapi's algorithm disagree on the panoptic output")
    ours, peer = timed_pair(lambda: renderer.render(image), lambda: unique_panoptic(image, isthing), repeats)
    ratio = peer / ours
    megapixels = side * side / 1e6
    verdict = "met" if ratio >= TARGET_PANOPTIC else "NOT met"
    return [
        f"### COCO panoptic export, {side}x{side}, {SEGMENTS} overlapping segments (later wins)",
        "",
        "| writer | ms/image | MPix/s | speed-up |",
        "|---|---|---|---|",
        f"| segassist (overlap resolution on crops with a per-segment report, one id canvas, PNG) | "
        f"{1000 * ours:.0f} | {megapixels / ours:.1f} | **{ratio:.2f}×** |",
        f"| panopticapi's algorithm: crops painted in order, one np.unique sort, same PNG encoder | "
        f"{1000 * peer:.0f} | {megapixels / peer:.1f} | 1× |",
        "",
        f"Target ≥ {TARGET_PANOPTIC:.0f}× (set against a per-segment full-mask writer): **{verdict}**. Both "
        "outputs were checked to hold the same partition, categories, areas and boxes. The PNG encoding, the "
        "same on both sides, is about half of segassist's time, so no id-map algorithm reaches 15× against "
        "this peer; the target needs restating against it. What remains of segassist's own time is the "
        "overlap resolution with its per-segment report (pixels moved, segments dropped), which the peer "
        "does not produce.",
        "",
    ]


# -- 3. peak RSS, bytes per task ---------------------------------------------------------------------------

_RSS_CHILD = """
import json, sys
from converters.convert import convert  # both readers start from segassist's imports
if sys.argv[1] == "segassist":
    convert("labelstudio", "coco-panoptic", sys.argv[2], sys.argv[3], overlap="order")
else:
    tasks = json.load(open(sys.argv[2]))
# VmHWM is this process's own peak; ru_maxrss would include the parent's pages at fork time on Linux.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def _generated_export(path: Path, tasks: int) -> None:
    """`tasks` tasks of 4 brush regions (128x96), written as they are generated; 64 distinct regions cycle."""
    rng = np.random.default_rng(0)
    regions = []
    for _ in range(64):
        alpha = np.zeros((96, 128), dtype=np.uint8)
        center = (int(rng.integers(10, 118)), int(rng.integers(10, 86)))
        cv2.circle(alpha, center, int(rng.integers(5, 30)), 255, -1)
        regions.append(json.dumps(brush.encode(alpha)))
    with path.open("w") as out:
        out.write("[")
        for task_id in range(1, tasks + 1):
            results = ",".join(
                f'{{"id": "{task_id}-{index}", "type": "brushlabels", "original_width": 128, '
                f'"original_height": 96, "value": {{"format": "rle", '
                f'"rle": {regions[(task_id * 4 + index) % 64]}, "brushlabels": ["{"ab"[index % 2]}"]}}}}'
                for index in range(4)
            )
            separator = "," if task_id > 1 else ""
            out.write(
                f'{separator}{{"id": {task_id}, "data": {{"image": "img{task_id}.png"}}, '
                f'"annotations": [{{"result": [{results}]}}]}}'
            )
        out.write("]")


def _peak_rss_kib(reader: str, export: Path, output: Path) -> int:
    completed = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, reader, str(export), str(output)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    return int(completed.stdout.strip().splitlines()[-1])


def _memory(folder: Path, quick: bool) -> list[str]:
    sizes = (200, 2_000) if quick else (5_000, 50_000)
    exports = {}
    for tasks in sizes:
        exports[tasks] = folder / f"tasks{tasks}.json"
        _generated_export(exports[tasks], tasks)
    if not quick:
        # A first process compiles the numba kernels when their disk cache is stale (after an edit or a
        # checkout); LLVM's memory would then count in one measurement only.
        _peak_rss_kib("segassist", exports[sizes[0]], folder / "warm-up.json")
    rows, verdicts = [], []
    for reader, name in (("segassist", "segassist convert (streamed)"), ("load", "json.load of the export")):
        peaks = {tasks: _peak_rss_kib(reader, exports[tasks], folder / f"pan{tasks}.json") for tasks in sizes}
        per_task = (peaks[sizes[1]] - peaks[sizes[0]]) * 1024 / (sizes[1] - sizes[0])
        ratio = peaks[sizes[1]] / peaks[sizes[0]]
        verdict = "met" if ratio <= TARGET_RSS else "NOT met"
        rows.append(
            f"| {name} | {peaks[sizes[0]] / 1024:.0f} | {peaks[sizes[1]] / 1024:.0f} | {per_task:,.0f} "
            f"| {ratio:.2f} ({verdict}) |"
        )
        verdicts.append(verdict)
    small, large = sizes
    megabytes = exports[large].stat().st_size / 1e6
    return [
        "### Peak memory, Label Studio → COCO panoptic",
        "",
        f"Generated exports of {small:,} and {large:,} tasks (4 brush regions each; {megabytes:.0f} MB for "
        f"{large:,}); each reader in a process of its own.",
        "",
        f"| reader | peak RSS MiB, {small:,} tasks | peak RSS MiB, {large:,} tasks | bytes per task "
        f"above the {small:,}-task peak | ratio (target ≤ {TARGET_RSS}) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"segassist streams: **{verdicts[0]}**; a reader that loads the whole export first would be "
        f"**{verdicts[1]}**.",
        "",
    ]


def run(quick: bool) -> str:
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        # Warm the numba kernels (compiled once and cached on disk, as after any first run).
        rle = brush.encode(np.ones((4, 4), dtype=bool))
        brush.decode(rle, 4, 4)
        coco_rle.encode(brush.decode_mask(rle, 4, 4))
        lines = [
            "## Conversion",
            "",
            *_ls_to_coco(folder, quick, repeats),
            *_panoptic(quick, repeats),
            *_memory(folder, quick),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main(run)
