"""QA speed on COCO panoptic: images per second on 2048x2048 PNGs with 300 segments each.

segassist (`converters.qa.panoptic.check_image`: the id-PNG decoder of `converters.id_png`, one pass over
the pixels in row runs) against two peers, each timed like ours (one warm-up, the same repetitions, calls
alternating):
- panopticapi's algorithm: Pillow decodes the PNG, `rgb2id`, then every id's area from one `np.unique` over
  the id map as `pq_compute` counts them, and its box from the same sort (`argsort` + `reduceat` on the pixel
  coordinates); the areas, boxes and id sets are then compared with segments_info as ours are;
- hotcoco (Rust) `PanopticEval` of the dataset against itself: it decodes the PNGs, counts every segment's
  area and intersection, and checks the PNG and JSON id sets both ways (it does not check boxes).
Rows "pixel statistics" time the statistics alone, on already decoded id maps, against the np.unique peer.
Every side's output is checked first: the same ids, areas and boxes; hotcoco finds PQ = 1.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from hotcoco import panoptic as hotcoco_panoptic
from PIL import Image
from timing import main, timed_pair

from converters.formats.label_map import ids_to_rgb, rgb_to_ids
from converters.qa.panoptic import ImageJob, PanopticOptions, check_image, id_stats

SEGMENTS = 300  # a 20 x 15 grid of cells


def synthetic_id_map(side: int, seed: int) -> np.ndarray:
    """A 20 x 15 grid of cells with wavy borders: 300 segments with realistic, non-rectangular outlines."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    amplitude = 25 * side / 2048
    wx = xs + amplitude * np.sin(ys * 2048 / side / 37.0 + rng.uniform(0, 6))
    wy = ys + amplitude * np.sin(xs * 2048 / side / 41.0 + rng.uniform(0, 6))
    cell = (np.clip(wy / (side / 15), 0, 14).astype(np.int64) * 20) + np.clip(wx / (side / 20), 0, 19).astype(
        np.int64
    )
    ids = rng.choice(np.arange(1, 2**24), size=SEGMENTS, replace=False).astype(np.uint32)
    return ids[cell]


def unique_stats(ids: np.ndarray) -> dict[int, tuple[int, tuple[int, int, int, int]]]:
    """panopticapi's counting: one sort of the id map (what `np.unique(..., return_counts=True)` does) gives
    every id and its area; the pixel coordinates reduced over the same sorted runs give every box."""
    flat = ids.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_ids = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    areas = np.diff(np.r_[starts, flat.size])
    rows, cols = np.divmod(order, ids.shape[1])
    top, bottom = np.minimum.reduceat(rows, starts), np.maximum.reduceat(rows, starts)
    left, right = np.minimum.reduceat(cols, starts), np.maximum.reduceat(cols, starts)
    return {
        int(i): (int(a), (int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)))
        for i, a, x0, y0, x1, y1 in zip(sorted_ids[starts], areas, left, top, right, bottom, strict=True)
    }


def write_dataset(folder: Path, side: int, images: int) -> list[ImageJob]:
    """PNGs in `folder/panoptic` and `folder/panoptic.json` (COCO's layout), ids and stats from the maps."""
    png_dir = folder / "panoptic"
    png_dir.mkdir()
    jobs = []
    for index in range(images):
        ids = synthetic_id_map(side, index)
        name = f"{index:06d}.png"
        Image.fromarray(ids_to_rgb(ids)).save(png_dir / name, compress_level=1)
        segments = [
            {"id": segment_id, "category_id": 1, "iscrowd": 0, "area": area, "bbox": list(box)}
            for segment_id, (area, box) in unique_stats(ids).items()
        ]
        annotation = {"image_id": index, "file_name": name, "segments_info": segments}
        image = {"id": index, "file_name": f"{index:06d}.jpg", "width": side, "height": side}
        jobs.append(ImageJob(str(folder / "panoptic.json"), annotation, image, {1: True}))
    dataset = {
        "images": [job.image for job in jobs],
        "annotations": [job.annotation for job in jobs],
        "categories": [{"id": 1, "name": "cell", "isthing": 1, "supercategory": "cell"}],
    }
    (folder / "panoptic.json").write_text(json.dumps(dataset))
    return jobs


def unique_check(job: ImageJob, png_dir: Path) -> int:
    """panopticapi's way: Pillow decodes the PNG, one np.unique sort counts every id. Returns the problems."""
    ids = rgb_to_ids(np.asarray(Image.open(png_dir / job.annotation["file_name"])))
    stats = unique_stats(ids)
    segments = job.annotation["segments_info"]
    problems = sum(stats.get(s["id"]) != (s["area"], tuple(s["bbox"])) for s in segments)
    return problems + len(set(stats) - {s["id"] for s in segments} - {0})


def hotcoco_pq(json_path: Path) -> float:
    evaluation = hotcoco_panoptic.PanopticEval(str(json_path), str(json_path))
    evaluation.evaluate()
    return evaluation.results()["All"]["pq"]


def run(quick: bool) -> str:
    side, images, repeats = (256, 1, 1) if quick else (2048, 3, 3)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        jobs = write_dataset(folder, side, images)
        options = PanopticOptions(png_dir=folder / "panoptic")
        id_maps = [
            rgb_to_ids(np.asarray(Image.open(options.png_dir / j.annotation["file_name"]))) for j in jobs
        ]
        for job, ids in zip(jobs, id_maps, strict=True):  # every side agrees that the data is clean
            findings, measured = check_image(job, options)
            assert findings == [], "the benchmark data must be clean"
            assert id_stats(ids).as_dict() == unique_stats(ids) == measured
            assert unique_check(job, options.png_dir) == 0
        assert hotcoco_pq(folder / "panoptic.json") == 1.0
        ours, peer = timed_pair(
            lambda: [check_image(job, options) for job in jobs],
            lambda: [unique_check(job, options.png_dir) for job in jobs],
            repeats,
        )
        _, hotcoco = timed_pair(
            lambda: [check_image(job, options) for job in jobs],
            lambda: hotcoco_pq(folder / "panoptic.json"),
            repeats,
        )
        ours_stats, peer_stats = timed_pair(
            lambda: [id_stats(ids) for ids in id_maps],
            lambda: [unique_stats(ids) for ids in id_maps],
            repeats,
        )

    def row(stage: str, name: str, seconds: float, ours_seconds: float) -> str:
        per_image, rate, ratio = seconds / images, images / seconds, seconds / ours_seconds
        return f"| {stage} | {name} | {per_image:.3f} | {rate:.2f} | **{ratio:.2f}x** |"

    return "\n".join(
        [
            "## QA (`segassist qa`, COCO panoptic)",
            "",
            f"{images} synthetic {side}x{side} panoptic PNGs, {SEGMENTS} segments each (wavy cell borders). "
            f"Medians of {repeats} alternating calls per side after one warm-up call each.",
            "Whole check: read the PNG, every segment's area (and, but for hotcoco, its bbox) against "
            "segments_info, the id sets both ways. Pixel statistics: area and bbox of every id of an already "
            "decoded id map. The last column is each row's time over segassist's (higher: segassist faster).",
            "",
            "| stage | checker | s per image | images per s | segassist speed-up |",
            "|---|---|---|---|---|",
            row("whole check", "segassist qa: id-PNG decoder, one pass in row runs", ours, ours),
            row("whole check", "panopticapi's algorithm: Pillow, one np.unique sort", peer, ours),
            row("whole check", "hotcoco PanopticEval (Rust), areas and id sets, no bbox", hotcoco, ours),
            row("pixel statistics", "segassist `id_stats` (row runs)", ours_stats, ours_stats),
            row("pixel statistics", "np.unique sort (areas) + reduceat (boxes)", peer_stats, ours_stats),
            "",
            "Decoding the PNG is most of the whole check on every side: segassist's id-PNG decoder "
            "(`converters.id_png`, zlib-ng inflate, rows unfiltered in place) against Pillow's and hotcoco's "
            "Rust one.",
        ]
    )


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


def ls_memory(quick: bool) -> str:
    import io
    import subprocess
    import tarfile

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        if quick:  # the same-findings check only, on small images, without the baseline's checkout
            export = ls_export(folder, 2 * LS_REGION_SIDE, LS_REGION_SIDE)
            codes = {tuple(code) for code in _ls_peak(repo, export, export)["codes"]}
            assert codes == {("LS_BRUSH_ANTIALIASED", f"r{i}") for i in range(LS_REGIONS)}, codes
            return "### Label Studio QA: peak memory (quick mode: findings checked, no figures)"
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


def run_with_memory(quick: bool) -> str:
    return run(quick) + "\n\n" + ls_memory(quick)


if __name__ == "__main__":
    main(run_with_memory)
