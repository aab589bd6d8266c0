"""`segassist eval` speed and memory against the peers, measured in the same run, same outputs checked equal.

- PQ per image pair (2048x2048 COCO panoptic PNGs, 300 segments): ours (`converters.eval.evaluate`, threads
  decoding PNGs with `converters.id_png` and one compiled pass counting id pairs) against hotcoco's
  `PanopticEval` (Rust) and panopticapi's own algorithm (`pq_compute_multi_core` / `pq_compute_single_core`,
  transcribed below because panopticapi is not installable beside numpy 2: Pillow decode, np.unique over
  gt * 2**24 + pred, a process per core). Every side may use all cores. PQ/SQ/RQ per class and TP/FP/FN
  must agree.
- Mask AP (500 images x 20 masks): `segassist eval GT RESULTS --metrics ap` against pycocotools,
  faster-coco-eval and hotcoco COCOeval, each from the same files; their six numbers must equal
  pycocotools' to 1e-9.
- Memory: peak RSS of an evaluation of 1,000 image pairs against 100 (each in a fresh process).

The process keeps freed memory for reuse, as `segassist eval` does (`converters.allocator`); the peers run in
the same process, so they get it too.

Each peer is timed alternately with ours (`timing.timed_pair`), so load from other work falls on both.
`--quick` runs every equality check on small inputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from timing import main, timed_pair

from converters.allocator import keep_freed_memory
from converters.eval.run import EvalOptions, evaluate

SIDE = 2048
SEGMENTS = 300
PAIRS = 8
REPEATS = 3
PQ_REPEATS = 7  # a PQ run is short: more repeats steady its median
AP_IMAGES = 500
AP_MASKS = 20
AP_SIDE = 256
MEMORY_PAIRS = (100, 1000)
CATEGORIES = [
    {"id": i, "name": f"class{i}", "isthing": int(i <= 20), "color": [i, i, i]} for i in range(1, 31)
]


# -- data ----------------------------------------------------------------------------------------------------


def wavy_cells(seed: int, shift: float) -> np.ndarray:
    """A 20 x 15 grid of cells with wavy borders (300 cells); `shift` moves the borders (the prediction)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    phase = rng.uniform(0, 6, size=2)
    wx = xs + 25 * np.sin(ys / 37.0 + phase[0]) + shift * np.sin(ys / 13.0)
    wy = ys + 25 * np.sin(xs / 41.0 + phase[1]) + shift * np.cos(xs / 17.0)
    row = np.clip(wy / (SIDE / 15), 0, 14).astype(np.int64)
    col = np.clip(wx / (SIDE / 20), 0, 19).astype(np.int64)
    return row * 20 + col


def write_panoptic(folder: Path, name: str, seed_shift: float, relabel: bool) -> Path:
    """PAIRS images; cell k is segment id ids[k] of category (k % 30) + 1, a few cells left void, and in the
    prediction every 7th cell relabelled and borders moved."""
    png_dir = folder / name
    png_dir.mkdir()
    annotations, images = [], []
    for index in range(PAIRS):
        rng = np.random.default_rng(index)
        ids = rng.choice(np.arange(1, 2**24), size=SEGMENTS, replace=False).astype(np.uint32)
        cells = wavy_cells(index, seed_shift)
        id_map = ids[cells]
        id_map[cells % 37 == 5] = 0  # a few void cells
        categories = [(k % 30) + 1 for k in range(SEGMENTS)]
        if relabel:
            categories = [((c + 1) % 30) + 1 if k % 7 == 3 else c for k, c in enumerate(categories)]
        rgb = np.stack([id_map & 255, (id_map >> 8) & 255, id_map >> 16], axis=-1).astype(np.uint8)
        file_name = f"{index:06d}.png"
        Image.fromarray(rgb).save(png_dir / file_name)
        present = set(np.unique(id_map).tolist())
        segments = [
            {"id": int(ids[k]), "category_id": categories[k], "iscrowd": 0, "area": 0, "bbox": [0, 0, 0, 0]}
            for k in range(SEGMENTS)
            if int(ids[k]) in present
        ]
        _fill_areas(segments, id_map)
        annotations.append({"image_id": index, "file_name": file_name, "segments_info": segments})
        images.append({"id": index, "file_name": f"{index:06d}.jpg", "width": SIDE, "height": SIDE})
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def _fill_areas(segments: list[dict], id_map: np.ndarray) -> None:
    """Areas from the pixels (panopticapi trusts the GT's declared area)."""
    unique, counts = np.unique(id_map, return_counts=True)
    areas = dict(zip(unique.tolist(), counts.tolist(), strict=True))
    for segment in segments:
        segment["area"] = areas[segment["id"]]


# -- panopticapi's algorithm (cocodataset/panopticapi evaluation.py @ 7bb4655, BSD-2-Clause), transcribed ----

OFFSET = 256 * 256 * 256


def _rgb2id(color: np.ndarray) -> np.ndarray:
    color = color.astype(np.int32)
    return color[:, :, 0] + 256 * color[:, :, 1] + 256 * 256 * color[:, :, 2]


def pq_compute_single_core(annotation_set, gt_folder, pred_folder, categories):
    stats = defaultdict(lambda: [0.0, 0, 0, 0])  # iou, tp, fp, fn
    for gt_ann, pred_ann in annotation_set:
        pan_gt = _rgb2id(np.array(Image.open(os.path.join(gt_folder, gt_ann["file_name"])), dtype=np.uint32))
        pan_pred = _rgb2id(
            np.array(Image.open(os.path.join(pred_folder, pred_ann["file_name"])), dtype=np.uint32)
        )
        gt_segms = {el["id"]: dict(el) for el in gt_ann["segments_info"]}
        pred_segms = {el["id"]: dict(el) for el in pred_ann["segments_info"]}
        pred_labels_set = set(el["id"] for el in pred_ann["segments_info"])
        labels, labels_cnt = np.unique(pan_pred, return_counts=True)
        for label, label_cnt in zip(labels, labels_cnt, strict=True):
            if label not in pred_segms:
                if label == 0:
                    continue
                raise KeyError(f"segment {label} not in the JSON")
            pred_segms[label]["area"] = label_cnt
            pred_labels_set.remove(label)
            if pred_segms[label]["category_id"] not in categories:
                raise KeyError("unknown category")
        if len(pred_labels_set) != 0:
            raise KeyError("segments in the JSON, not in the PNG")
        pan_gt_pred = pan_gt.astype(np.uint64) * OFFSET + pan_pred.astype(np.uint64)
        gt_pred_map = {}
        labels, labels_cnt = np.unique(pan_gt_pred, return_counts=True)
        for label, intersection in zip(labels, labels_cnt, strict=True):
            gt_pred_map[(label // OFFSET, label % OFFSET)] = intersection
        gt_matched, pred_matched = set(), set()
        for (gt_label, pred_label), intersection in gt_pred_map.items():
            if gt_label not in gt_segms or pred_label not in pred_segms:
                continue
            if gt_segms[gt_label]["iscrowd"] == 1:
                continue
            if gt_segms[gt_label]["category_id"] != pred_segms[pred_label]["category_id"]:
                continue
            union = (
                pred_segms[pred_label]["area"]
                + gt_segms[gt_label]["area"]
                - intersection
                - gt_pred_map.get((0, pred_label), 0)
            )
            iou = intersection / union
            if iou > 0.5:
                entry = stats[gt_segms[gt_label]["category_id"]]
                entry[1] += 1
                entry[0] += iou
                gt_matched.add(gt_label)
                pred_matched.add(pred_label)
        crowd_labels_dict = {}
        for gt_label, gt_info in gt_segms.items():
            if gt_label in gt_matched:
                continue
            if gt_info["iscrowd"] == 1:
                crowd_labels_dict[gt_info["category_id"]] = gt_label
                continue
            stats[gt_info["category_id"]][3] += 1
        for pred_label, pred_info in pred_segms.items():
            if pred_label in pred_matched:
                continue
            intersection = gt_pred_map.get((0, pred_label), 0)
            if pred_info["category_id"] in crowd_labels_dict:
                intersection += gt_pred_map.get((crowd_labels_dict[pred_info["category_id"]], pred_label), 0)
            if intersection / pred_info["area"] > 0.5:
                continue
            stats[pred_info["category_id"]][2] += 1
    return dict(stats)


def pq_compute_multi_core(gt_json: Path, pred_json: Path) -> dict[int, list]:
    gt, pred = json.loads(gt_json.read_text()), json.loads(pred_json.read_text())
    pred_by_image = {ann["image_id"]: ann for ann in pred["annotations"]}
    matched = [(ann, pred_by_image[ann["image_id"]]) for ann in gt["annotations"]]
    categories = {c["id"]: c for c in gt["categories"]}
    cpu_num = multiprocessing.cpu_count()
    splits = [matched[i::cpu_num] for i in range(cpu_num)]
    args = [
        (split, str(gt_json.with_suffix("")), str(pred_json.with_suffix("")), categories) for split in splits
    ]
    total: dict[int, list] = defaultdict(lambda: [0.0, 0, 0, 0])
    with multiprocessing.get_context("fork").Pool(cpu_num) as pool:
        for part in pool.starmap(pq_compute_single_core, args):
            for category_id, (iou, tp, fp, fn) in part.items():
                entry = total[category_id]
                entry[0] += iou
                entry[1] += tp
                entry[2] += fp
                entry[3] += fn
    return dict(total)


# -- PQ ------------------------------------------------------------------------------------------------------


def _hotcoco(gt: Path, pred: Path) -> dict:
    from hotcoco import panoptic

    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = panoptic.PanopticEval(str(gt), str(pred))
        evaluation.evaluate()
    return evaluation.results()


def _ours(gt: Path, pred: Path) -> dict:
    options = EvalOptions(
        gt_format="coco-panoptic", pred_format="coco-panoptic", metrics=("pq",), workers=os.cpu_count() or 1
    )
    return evaluate(gt, pred, options).to_dict()["pq"]


def pq_section(folder: Path) -> list[str]:
    gt = write_panoptic(folder, "gt", 0.0, relabel=False)
    pred = write_panoptic(folder, "pred", 15.0, relabel=True)
    ours, hot, api = _ours(gt, pred), _hotcoco(gt, pred), pq_compute_multi_core(gt, pred)
    names = {c["id"]: c["name"] for c in CATEGORIES}
    for category_id, (iou, tp, fp, fn) in api.items():
        mine = ours["per_class"][names[category_id]]
        theirs = hot["per_class"][category_id]
        assert (
            (mine["tp"], mine["fp"], mine["fn"]) == (tp, fp, fn) == (theirs["tp"], theirs["fp"], theirs["fn"])
        )
        assert (
            abs(mine["pq"] - iou / (tp + fp / 2 + fn / 2)) < 1e-12 and abs(mine["pq"] - theirs["pq"]) < 1e-12
        )
    assert abs(ours["all"]["pq"] - hot["All"]["pq"]) < 1e-12 and ours["all"]["n"] == hot["All"]["n"]
    peers = {
        "hotcoco PanopticEval": (lambda: _hotcoco(gt, pred), 1.0),
        "panopticapi pq_compute (its algorithm)": (lambda: pq_compute_multi_core(gt, pred), 8.0),
    }
    lines = [
        f"### PQ per image pair ({SIDE}x{SIDE} COCO panoptic PNGs, {SEGMENTS} segments, {PAIRS} pairs, "
        f"all {os.cpu_count()} cores for every tool)",
        "",
        f"PQ {ours['all']['pq']:.6f} (SQ {ours['all']['sq']:.6f}, RQ {ours['all']['rq']:.6f}, "
        f"n={ours['all']['n']}): equal per class (PQ, SQ, RQ to 1e-12, TP/FP/FN exactly) across all three. "
        "Formats given (no detection).",
        "",
        "| peer | peer ms per pair | ours ms per pair | ours faster by | target |",
        "|---|---|---|---|---|",
    ]
    for name, (peer, target) in peers.items():
        ours_seconds, peer_seconds = timed_pair(lambda: _ours(gt, pred), peer, PQ_REPEATS)
        ratio = peer_seconds / ours_seconds
        lines.append(
            f"| {name} | {1000 * peer_seconds / PAIRS:.1f} | {1000 * ours_seconds / PAIRS:.1f} "
            f"| {ratio:.2f}× | ≥ {target:g}×: {'met' if ratio >= target else 'NOT met'} |"
        )
    return lines


# -- mask AP -------------------------------------------------------------------------------------------------


def write_ap_files(folder: Path) -> tuple[Path, Path]:
    """GT: AP_IMAGES images with AP_MASKS ellipses each (RLE); results: each GT mask jittered, plus some
    misses and false alarms, scored."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    images, annotations, results = [], [], []
    ys, xs = np.mgrid[0:AP_SIDE, 0:AP_SIDE]

    def ellipse(cy: float, cx: float, ry: float, rx: float) -> dict:
        mask = (((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1).astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
        return rle

    for image_id in range(1, AP_IMAGES + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": AP_SIDE, "height": AP_SIDE})
        for _ in range(AP_MASKS):
            cy, cx = rng.uniform(20, AP_SIDE - 20, 2)
            ry, rx = rng.uniform(3, 60, 2)
            category = int(rng.integers(1, 6))
            rle = ellipse(cy, cx, ry, rx)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
            if rng.random() < 0.85:
                jitter = rng.normal(0, 3, 4)
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": category if rng.random() < 0.9 else int(rng.integers(1, 6)),
                        "segmentation": ellipse(
                            cy + jitter[0], cx + jitter[1], max(2, ry + jitter[2]), max(2, rx + jitter[3])
                        ),
                        "score": float(rng.random()),
                    }
                )
        for _ in range(2):
            cy, cx = rng.uniform(20, AP_SIDE - 20, 2)
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 6)),
                    "segmentation": ellipse(cy, cx, 10, 14),
                    "score": float(rng.random()),
                }
            )
    categories = [{"id": i, "name": f"class{i}"} for i in range(1, 6)]
    gt = folder / "ap_gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    pred = folder / "ap_results.json"
    pred.write_text(json.dumps(results))
    return gt, pred


def _cocoeval(module_coco, module_eval, gt: Path, pred: Path) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = module_coco(str(gt))
        evaluation = module_eval(coco_gt, coco_gt.loadRes(str(pred)), iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [float(v) for v in evaluation.stats[:6]]


def ap_section(folder: Path) -> list[str]:
    import faster_coco_eval
    import hotcoco
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, pred = write_ap_files(folder)
    tools = {
        "segassist eval --metrics ap": lambda: [
            -1.0 if v is None else v
            for v in evaluate(gt, pred, EvalOptions("coco", "coco-results", metrics=("ap",)))
            .to_dict()["ap"]
            .values()
        ],
        "pycocotools COCOeval": lambda: _cocoeval(COCO, COCOeval, gt, pred),
        "faster-coco-eval COCOeval_faster": lambda: _cocoeval(
            faster_coco_eval.COCO, faster_coco_eval.COCOeval_faster, gt, pred
        ),
        "hotcoco COCOeval": lambda: _cocoeval(hotcoco.COCO, hotcoco.COCOeval, gt, pred),
    }
    reference = tools["pycocotools COCOeval"]()
    ours = tools.pop("segassist eval --metrics ap")
    ours_stats = ours()
    lines = [
        "",
        f"### Mask AP ({AP_IMAGES} images x {AP_MASKS} masks, {AP_SIDE}x{AP_SIDE}; files read by each tool)",
        "",
        f"pycocotools AP = {reference[0]:.6f}, AP50 = {reference[1]:.6f}, AP75 = {reference[2]:.6f}; "
        "segassist eval's six numbers equal them to 1e-9: "
        f"{'yes' if _equal(ours_stats, reference) else 'NO'}.",
        "",
        "| COCOeval | its seconds | segassist eval seconds | its time / ours | equal to pycocotools (1e-9) |",
        "|---|---|---|---|---|",
    ]
    for name, peer in tools.items():
        equal = _equal(peer(), reference)
        ours_seconds, peer_seconds = timed_pair(ours, peer, REPEATS)
        lines.append(
            f"| {name} | {peer_seconds:.2f} | {ours_seconds:.2f} | {peer_seconds / ours_seconds:.2f}× "
            f"| {'yes' if equal else 'NO'} |"
        )
    return lines


def _equal(stats: list[float], reference: list[float]) -> bool:
    return max(abs(a - b) for a, b in zip(stats, reference, strict=True)) <= 1e-9


# -- memory --------------------------------------------------------------------------------------------------


def write_many(folder: Path, pairs: int) -> Path:
    """`pairs` 512x512 panoptic images (40 segments), all pointing at a few PNG files."""
    png_dir = folder / f"many{pairs}"
    png_dir.mkdir()
    rng = np.random.default_rng(1)
    small = rng.integers(1, 41, (8, 5)).astype(np.uint32)
    id_map = np.repeat(np.repeat(small, 64, 0), 103, 1)[:512, :512]
    rgb = np.stack([id_map & 255, (id_map >> 8) & 255, id_map >> 16], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(png_dir / "shared.png")
    present = sorted(set(np.unique(id_map).tolist()))
    segments = [{"id": i, "category_id": (i % 30) + 1, "iscrowd": 0} for i in present]
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 512, "height": 512} for i in range(pairs)]
    annotations = [
        {"image_id": i, "file_name": "shared.png", "segments_info": segments} for i in range(pairs)
    ]
    path = folder / f"many{pairs}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def _peak_rss_of_evaluation(path: Path) -> int:
    """Peak RSS (KiB) of a fresh process evaluating `path` against itself (PQ and mIoU)."""
    code = (
        "import resource, sys\n"
        "from converters.allocator import keep_freed_memory\n"
        "from converters.eval.run import EvalOptions, evaluate\n"
        "keep_freed_memory()\n"
        "evaluate(sys.argv[1], sys.argv[1], EvalOptions(workers=2))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def memory_section(folder: Path) -> list[str]:
    small, large = (
        _peak_rss_of_evaluation(write_many(folder, 100)),
        _peak_rss_of_evaluation(write_many(folder, 1000)),
    )
    ratio = large / small
    return [
        "",
        "### Memory (peak RSS of a fresh process, 512x512 pairs, PQ and mIoU, 2 worker threads)",
        "",
        "| pairs | peak RSS (MiB) |",
        "|---|---|",
        f"| {MEMORY_PAIRS[0]:,} | {small / 1024:.0f} |",
        f"| {MEMORY_PAIRS[1]:,} | {large / 1024:.0f} |",
        "",
        f"{MEMORY_PAIRS[1]:,} / {MEMORY_PAIRS[0]:,} = {ratio:.3f}× "
        f"(target ≤ 1.2×: {'met' if ratio <= 1.2 else 'NOT met'}).",
    ]


def run(quick: bool) -> str:
    global SIDE, PAIRS, REPEATS, PQ_REPEATS, AP_IMAGES, MEMORY_PAIRS
    if quick:
        SIDE, PAIRS, REPEATS, PQ_REPEATS, AP_IMAGES, MEMORY_PAIRS = 256, 2, 1, 1, 10, (5, 10)
    keep_freed_memory()  # as `segassist eval` does; the peers run in this same process
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines = pq_section(folder) + ap_section(folder) + memory_section(folder)
    intro = [
        "## Eval: `segassist eval`",
        "",
        "Peers timed alternately with ours in the same run (`timing.timed_pair`, warm-up first, median of "
        f"{PQ_REPEATS} for PQ, {REPEATS} for AP), in one process that keeps freed memory for reuse as "
        f"`segassist eval` does (`converters.allocator`). Load average {load_before:.1f} before the run and "
        f"{os.getloadavg()[0]:.1f} after it, on {os.cpu_count()} cores: other work on the machine takes "
        "cores from every tool, absolute times are inflated and noisy.",
        "",
    ]
    return "\n".join(intro + lines)


if __name__ == "__main__":
    main(run)
