"""QA speed on COCO panoptic: images per second on 2048x2048 PNGs with 300 segments each.

Ours (`converters.qa.panoptic.check_image`: one pass over the pixels) against a panopticapi-style checker
written here, which does what pq_compute and the panopticapi converters do: a full boolean mask per segment
(`ids == s`) for its area and box. Both read the PNG, compare area and bbox with segments_info and look for
ids missing on either side, so they do the same job. Rows "pixel statistics" time the statistics alone, on an
already decoded id map, to separate the algorithm from PNG decoding.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from timing import median_seconds

from converters.formats.label_map import ids_to_rgb, rgb_to_ids
from converters.qa.panoptic import ImageJob, PanopticOptions, check_image, id_stats

SIDE = 2048
SEGMENTS = 300
IMAGES = 3
REPEATS = 3


def synthetic_id_map(seed: int) -> np.ndarray:
    """A 20 x 15 grid of cells with wavy borders: 300 segments with realistic, non-rectangular outlines."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    wx = xs + 25 * np.sin(ys / 37.0 + rng.uniform(0, 6))
    wy = ys + 25 * np.sin(xs / 41.0 + rng.uniform(0, 6))
    cell = (np.clip(wy / (SIDE / 15), 0, 14).astype(np.int64) * 20) + np.clip(wx / (SIDE / 20), 0, 19).astype(
        np.int64
    )
    ids = rng.choice(np.arange(1, 2**24), size=SEGMENTS, replace=False).astype(np.uint32)
    return ids[cell]


def write_dataset(folder: Path) -> list[ImageJob]:
    png_dir = folder / "panoptic"
    png_dir.mkdir()
    jobs = []
    for index in range(IMAGES):
        ids = synthetic_id_map(index)
        name = f"{index:06d}.png"
        Image.fromarray(ids_to_rgb(ids)).save(png_dir / name, compress_level=1)
        segments = []
        for segment_id in np.unique(ids).tolist():
            ys, xs = np.nonzero(ids == segment_id)
            box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            segments.append(
                {"id": segment_id, "category_id": 1, "iscrowd": 0, "area": int(ys.size), "bbox": box}
            )
        annotation = {"image_id": index, "file_name": name, "segments_info": segments}
        image = {"id": index, "file_name": f"{index:06d}.jpg", "width": SIDE, "height": SIDE}
        jobs.append(ImageJob(str(folder / "panoptic.json"), annotation, image, {1: True}))
    (folder / "panoptic.json").write_text(json.dumps({"annotations": [j.annotation for j in jobs]}))
    return jobs


def per_segment_stats(ids: np.ndarray, segment_ids: list[int]) -> dict[int, tuple[int, list[int]]]:
    """Area and box per segment from one full-size boolean mask each."""
    stats = {}
    for segment_id in segment_ids:
        mask = ids == segment_id
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (
            [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
            if rows.size
            else []
        )
        stats[segment_id] = (int(mask.sum()), box)
    return stats


def per_segment_check(job: ImageJob, png_dir: Path) -> int:
    """The panopticapi way: Pillow decodes the PNG, then one mask per segment. Returns the problem count."""
    ids = rgb_to_ids(np.asarray(Image.open(png_dir / job.annotation["file_name"])))
    segments = job.annotation["segments_info"]
    stats = per_segment_stats(ids, [segment["id"] for segment in segments])
    problems = sum((stats[s["id"]][0], stats[s["id"]][1]) != (s["area"], s["bbox"]) for s in segments)
    return problems + len(set(np.unique(ids).tolist()) - set(stats) - {0})


def run() -> str:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        jobs = write_dataset(folder)
        options = PanopticOptions(png_dir=folder / "panoptic")
        for job in jobs:  # both must agree that the synthetic data is clean
            assert check_image(job, options)[0] == [], "the benchmark data must be clean"
            assert per_segment_check(job, options.png_dir) == 0
        ours = median_seconds(lambda: [check_image(job, options) for job in jobs], REPEATS)
        theirs = median_seconds(lambda: [per_segment_check(job, options.png_dir) for job in jobs], 1)
        id_maps = [
            rgb_to_ids(np.asarray(Image.open(options.png_dir / j.annotation["file_name"]))) for j in jobs
        ]
        ours_stats = median_seconds(lambda: [id_stats(ids) for ids in id_maps], REPEATS)
        segment_ids = [np.unique(ids).tolist() for ids in id_maps]
        theirs_stats = median_seconds(
            lambda: [
                per_segment_stats(ids, listed) for ids, listed in zip(id_maps, segment_ids, strict=True)
            ],
            1,
        )
    return "\n".join(
        [
            "## QA (`segassist qa`, COCO panoptic)",
            "",
            f"{IMAGES} synthetic {SIDE}x{SIDE} panoptic PNGs, {SEGMENTS} segments each (wavy cell borders).",
            "Whole check: both read the PNG and compare every segment's area and bbox, and the id sets.",
            "Pixel statistics: area and bbox of every id from an already decoded id map. One process each.",
            "",
            "| stage | checker | s per image | images per s | speed-up |",
            "|---|---|---|---|---|",
            _row("whole check", "panopticapi-style: Pillow, one boolean mask per segment", theirs, theirs),
            _row("whole check", "segassist qa: OpenCV decode, one pass (row runs + np.unique)", ours, theirs),
            _row("pixel statistics", "one boolean mask per segment", theirs_stats, theirs_stats),
            _row("pixel statistics", "segassist `id_stats` (one pass)", ours_stats, theirs_stats),
        ]
    )


def _row(stage: str, name: str, seconds: float, baseline: float) -> str:
    per_image, rate, ratio = seconds / IMAGES, IMAGES / seconds, baseline / seconds
    return f"| {stage} | {name} | {per_image:.3f} | {rate:.2f} | **{ratio:.1f}x** |"


# -- Label Studio QA: peak memory on 12-megapixel brush regions ----------------------------------------------
#
# A separate measurement (issue 15): `segassist qa` on a Label Studio export whose brush regions are on
# 12-MP images, by the code of this checkout and by the code at LS_MEMORY_BASELINE (the commit before QA
# kept masks cropped, which decoded every brush region to a full-image alpha plane plus full-size
# temporaries). Each runs in a fresh process, warmed up by a check of a small export (the codecs' compiled
# kernels load on first use); the figure is how far the peak RSS (VmHWM, reset through /proc/self/clear_refs
# after the warm-up) rose above the RSS during `check`. Both must report the same findings.

LS_MEMORY_BASELINE = "39af8ef07bdaa7dc19a25c7b7416a26d4c367718"
LS_SIZES = ((2000, 1500), (4000, 3000))  # 3 MP and 12 MP
LS_REGIONS = 12
LS_REGION_SIDE = 300  # each region is a soft-edged disc about this wide

_LS_CHILD = """
import json, sys
from pathlib import Path
from converters.qa import QAOptions, check

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])

check(Path(sys.argv[2]), QAOptions(min_area=0))  # warm-up: the codecs' compiled kernels load on first use
Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
before = status("VmRSS")
result = check(Path(sys.argv[1]), QAOptions(min_area=0))
codes = sorted((f.code, str(f.region_id)) for f in result.findings)
print(json.dumps({"growth_kib": status("VmHWM") - before, "codes": codes}))
"""


def ls_export(folder: Path, width: int, height: int) -> Path:
    """One task with LS_REGIONS soft-edged brush discs on a `width` x `height` image."""
    from converters import brush

    ys, xs = np.ogrid[0:height, 0:width]
    results = []
    for index in range(LS_REGIONS):
        cy = (index // 4 + 1) * height // 4
        cx = (index % 4 + 1) * width // 5
        distance = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)
        # Alpha 255 inside, a 2-pixel ramp at the edge (the editor's brush is anti-aliased).
        alpha = np.clip((LS_REGION_SIDE / 2 - distance) * 127, 0, 255).astype(np.uint8)
        results.append(
            {
                "id": f"r{index}",
                "type": "brushlabels",
                "from_name": "tag",
                "to_name": "image",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": brush.encode(alpha), "brushlabels": ["thing"]},
            }
        )
    task = {"id": 1, "data": {"image": "big.jpg"}, "annotations": [{"id": 1, "result": results}]}
    path = folder / f"export-{width}x{height}.json"
    path.write_text(json.dumps([task]))
    return path


def _ls_peak(code_root: Path, export: Path, warm_up: Path) -> dict:
    import os
    import subprocess
    import sys

    environment = {**os.environ, "PYTHONPATH": str(code_root)}
    output = subprocess.run(
        [sys.executable, "-c", _LS_CHILD, str(export), str(warm_up)],
        env=environment,
        stdout=subprocess.PIPE,
        check=True,
        text=True,
        cwd=code_root,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def ls_memory() -> str:
    import io
    import subprocess
    import tarfile

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        baseline = folder / "baseline"
        baseline.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", LS_MEMORY_BASELINE, "converters"],
            stdout=subprocess.PIPE,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(baseline, filter="data")
        rows = []
        warm_up = ls_export(folder, 2 * LS_REGION_SIDE, LS_REGION_SIDE)
        for width, height in LS_SIZES:
            export = ls_export(folder, width, height)
            ours, theirs = _ls_peak(repo, export, warm_up), _ls_peak(baseline, export, warm_up)
            assert ours["codes"] == theirs["codes"], "both must report the same findings"
            megapixels = width * height / 1e6
            before, now = theirs["growth_kib"], ours["growth_kib"]
            rows.append(
                f"| {width}x{height} ({megapixels:.0f} MP) | {before / 1024:.1f} | {now / 1024:.1f} | "
                f"**{before / max(now, 1):.1f}x** |"
            )
    return "\n".join(
        [
            "### Label Studio QA: peak memory (`segassist qa`, brush regions)",
            "",
            f"One task, {LS_REGIONS} soft-edged brush regions about {LS_REGION_SIDE} px wide. Peak RSS rise "
            "during `check` over the imported process, in MiB; same findings from both.",
            f"Before: the code at {LS_MEMORY_BASELINE[:9]} (a full-image alpha plane and full-size "
            "temporaries per region). Now: alpha counts from the RLE runs, masks cropped to their box.",
            "",
            "| image | before (MiB) | now (MiB) | less memory |",
            "|---|---|---|---|",
            *rows,
        ]
    )


if __name__ == "__main__":
    print(run())
    print()
    print(ls_memory())
