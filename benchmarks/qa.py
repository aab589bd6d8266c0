"""QA speed on COCO panoptic: images per second on 2048x2048 PNGs with 300 segments each.

segassist (`converters.qa.panoptic.check_image`: OpenCV decode, one pass over the pixels in row runs) against
two peers, each timed like ours (one warm-up, the same repetitions, calls alternating):
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
            row("whole check", "segassist qa: OpenCV decode, one pass in row runs", ours, ours),
            row("whole check", "panopticapi's algorithm: Pillow, one np.unique sort", peer, ours),
            row("whole check", "hotcoco PanopticEval (Rust), areas and id sets, no bbox", hotcoco, ours),
            row("pixel statistics", "segassist `id_stats` (row runs)", ours_stats, ours_stats),
            row("pixel statistics", "np.unique sort (areas) + reduceat (boxes)", peer_stats, ours_stats),
        ]
    )


if __name__ == "__main__":
    main(run)
