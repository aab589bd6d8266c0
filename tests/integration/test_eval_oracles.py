"""PQ/SQ/RQ per class against hotcoco's PanopticEval (panopticapi's rules) and torchmetrics' PanopticQuality,
and mask AP against pycocotools' COCOeval run directly, on the real COCO fixtures and perturbed copies."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hotcoco import panoptic
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.detection import PanopticQuality

from converters.eval.run import EvalOptions, evaluate
from tests import eval_helpers as h

PERTURBATIONS = {
    "eroded": lambda d: h.eroded(d, 3),
    "eroded_hard": lambda d: h.eroded(d, 12),
    "dropped": lambda d: h.dropped(d, 3),
    "relabelled": lambda d: h.relabelled(d, 4),
    "split": lambda d: h.split(d, 2),
    "merged": h.merged,
    "eroded_split_dropped": lambda d: h.dropped(h.split(h.eroded(d, 2), 3), 5),
}


@pytest.fixture(scope="module")
def sample(realdata: Path) -> h.PanDataset:
    return h.read_panoptic(realdata / "panopticapi_sample" / "panoptic_examples.json")


def _ours(gt: Path, pred: Path) -> dict:
    return evaluate(gt, pred, EvalOptions(metrics=("pq",))).to_dict()["pq"]


def _hotcoco(gt: Path, pred: Path) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = panoptic.PanopticEval(str(gt), str(pred))
        evaluation.evaluate()
    return evaluation.results()


def _assert_equal_to_hotcoco(ours: dict, theirs: dict, categories: list[dict]) -> None:
    names = {c["id"]: c["name"] for c in categories}
    occurring = {
        names[int(cid)]: entry
        for cid, entry in theirs["per_class"].items()
        if entry["tp"] + entry["fp"] + entry["fn"] > 0
    }
    assert set(ours["per_class"]) == set(occurring)
    for name, entry in occurring.items():
        mine = ours["per_class"][name]
        assert (mine["tp"], mine["fp"], mine["fn"]) == (entry["tp"], entry["fp"], entry["fn"]), name
        for key in ("pq", "sq", "rq"):
            assert mine[key] == pytest.approx(entry[key], abs=1e-12), (name, key)
    for group, their_group in (("all", "All"), ("things", "Things"), ("stuff", "Stuff")):
        assert ours[group]["n"] == theirs[their_group]["n"]
        for key in ("pq", "sq", "rq"):
            assert ours[group][key] == pytest.approx(theirs[their_group][key], abs=1e-12), (group, key)


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_pq_per_class_equals_hotcoco_on_perturbed_real_data(sample, tmp_path, name):
    gt = h.write_panoptic(sample, tmp_path / "gt.json")
    pred = h.write_panoptic(PERTURBATIONS[name](sample), tmp_path / "pred.json")
    ours, theirs = _ours(gt, pred), _hotcoco(gt, pred)
    _assert_equal_to_hotcoco(ours, theirs, sample.categories)
    assert ours["all"]["pq"] < 1.0
    for entry in ours["per_class"].values():
        assert entry["pq"] == pytest.approx(entry["sq"] * entry["rq"], abs=1e-12)


def test_pq_with_crowd_regions_equals_hotcoco(sample, tmp_path):
    """GT crowd segments never match; a prediction lying mostly on a crowd region of its class is no FP."""
    crowd_gt = h.with_crowd(sample, 2)
    gt = h.write_panoptic(crowd_gt, tmp_path / "gt.json")
    pred = h.write_panoptic(h.eroded(h.split(sample, 3), 1), tmp_path / "pred.json")
    ours, theirs = _ours(gt, pred), _hotcoco(gt, pred)
    _assert_equal_to_hotcoco(ours, theirs, sample.categories)
    # The real sample holds 3 crowd segments already; with more, some predictions must have been excused.
    crowd = sum(info["iscrowd"] for image in crowd_gt.images for info in image.segments)
    assert crowd > 3


def test_real_sample_against_itself_is_perfect(realdata):
    gt = realdata / "panopticapi_sample" / "panoptic_examples.json"
    result = evaluate(gt, gt).to_dict()
    for group in ("all", "things", "stuff"):
        assert (result["pq"][group]["pq"], result["pq"][group]["sq"], result["pq"][group]["rq"]) == (1, 1, 1)
    assert result["semantic"]["miou"] == 1.0 and result["semantic"]["pixel_accuracy"] == 1.0


def _torchmetrics_input(dataset: h.PanDataset) -> torch.Tensor:
    """(B, H, W, 2) of (category, instance) with -1 for void; images padded to one size with void."""
    height = max(image.ids.shape[0] for image in dataset.images)
    width = max(image.ids.shape[1] for image in dataset.images)
    out = torch.full((len(dataset.images), height, width, 2), -1, dtype=torch.long)
    for b, image in enumerate(dataset.images):
        category = np.full(image.ids.shape, -1, np.int64)
        for info in image.segments:
            category[image.ids == info["id"]] = info["category_id"]
        out[b, : image.ids.shape[0], : image.ids.shape[1], 0] = torch.from_numpy(category)
        out[b, : image.ids.shape[0], : image.ids.shape[1], 1] = torch.from_numpy(image.ids)
    return out


TORCHMETRICS_CASES = {
    **{name: PERTURBATIONS[name] for name in ("eroded", "dropped", "relabelled", "merged")},
    "split_things": lambda d: h.split(d, 2, things_only=True),
}


@pytest.mark.parametrize("name", sorted(TORCHMETRICS_CASES))
def test_pq_per_class_equals_torchmetrics(sample, tmp_path, name):
    """torchmetrics knows no crowd, joins the segments of a stuff class, and leaves predicted void out of the
    union (panopticapi does none of these): so the GT's crowd segments are made ordinary, only things are
    split, and the prediction's void pixels go to a filler stuff segment."""
    plain = sample.copy()
    for image in plain.images:
        for info in image.segments:
            info["iscrowd"] = 0
    perturbed = TORCHMETRICS_CASES[name](plain)
    filler = next(c["id"] for c in plain.categories if not c["isthing"] and c["name"] == "wall-other-merged")
    for image in perturbed.images:
        if (image.ids == 0).any():
            filler_id = image.next_id()
            image.ids[image.ids == 0] = filler_id
            image.segments.append({"id": filler_id, "category_id": filler, "iscrowd": 0})
    ours = _ours(
        h.write_panoptic(plain, tmp_path / "gt.json"), h.write_panoptic(perturbed, tmp_path / "p.json")
    )
    things = sorted(c["id"] for c in plain.categories if c["isthing"])
    stuffs = sorted(c["id"] for c in plain.categories if not c["isthing"])
    metric = PanopticQuality(
        things=things,
        stuffs=stuffs,
        return_sq_and_rq=True,
        return_per_class=True,
        allow_unknown_preds_category=True,
    )
    metric.update(_torchmetrics_input(perturbed), _torchmetrics_input(plain))
    table = metric.compute().double().numpy()  # (3, classes): things then stuff, each sorted
    names = {c["id"]: c["name"] for c in plain.categories}
    column = {names[cid]: i for i, cid in enumerate(things + stuffs)}
    assert ours["per_class"]
    for name_, entry in ours["per_class"].items():
        pq, sq, rq = table[column[name_]]
        assert (entry["pq"], entry["sq"], entry["rq"]) == pytest.approx((pq, sq, rq), abs=1e-6), name_


# -- mask AP -------------------------------------------------------------------------------------------------


def _cocoeval_stats(gt_path: Path, results: list[dict]) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluation = COCOeval(gt, gt.loadRes(results), iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [float(v) for v in evaluation.stats[:6]]


def _results_from(gt_path: Path, score_seed: int, drop_every: int) -> list[dict]:
    """A detector's results list: the GT's non-crowd masks, some dropped, some shifted, all scored."""
    rng = np.random.default_rng(score_seed)
    data = json.loads(gt_path.read_text())
    results = []
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
    from pycocotools import mask as mask_utils

    for position, annotation in enumerate(data["annotations"]):
        if annotation.get("iscrowd") or position % drop_every == 0:
            continue
        mask = coco.annToMask(annotation)
        if position % 3 == 0:
            mask = np.roll(mask, 7 * (position % 5), axis=1)
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
        results.append(
            {
                "image_id": annotation["image_id"],
                "category_id": annotation["category_id"],
                "segmentation": rle,
                "score": float(rng.random()),
            }
        )
    return results


def test_ap_of_a_results_list_equals_cocoeval_run_directly(realdata, tmp_path):
    gt = realdata / "panopticapi_sample" / "panoptic_coco_detection_format.json"
    results = _results_from(gt, 1, 4)
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps(results))
    ours = evaluate(gt, pred).to_dict()["ap"]
    expected = _cocoeval_stats(gt, results)
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    for name, value in zip(names, expected, strict=True):
        assert ours[name] == (pytest.approx(value, abs=1e-12) if value >= 0 else None), name
    assert 0 < ours["AP"] < 1


def test_ap_between_two_coco_files_equals_cocoeval(realdata, tmp_path):
    """PRED as a COCO instance file (its categories matched by name, its scores used)."""
    gt = realdata / "panopticapi_sample" / "panoptic_coco_detection_format.json"
    results = _results_from(gt, 2, 5)
    data = json.loads(gt.read_text())
    pred_data = {
        "images": data["images"],
        "categories": data["categories"],
        "annotations": [{**r, "id": i, "iscrowd": 0} for i, r in enumerate(results, start=1)],
    }
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(pred_data))
    ours = evaluate(gt, pred, EvalOptions(metrics=("ap",))).to_dict()["ap"]
    expected = _cocoeval_stats(gt, results)
    assert [ours[n] if ours[n] is not None else -1 for n in ("AP", "AP50", "AP75", "APs", "APm", "APl")] == (
        pytest.approx(expected, abs=1e-12)
    )


def test_real_instances_against_themselves_give_ap_1(realdata):
    gt = realdata / "panopticapi_sample" / "panoptic_coco_detection_format.json"
    result = evaluate(gt, gt).to_dict()
    assert (
        result["ap"]["AP"] == 1.0 and result["pq"]["all"]["pq"] == 1.0 and result["semantic"]["miou"] == 1.0
    )


def test_ap_size_ranges_use_the_declared_gt_area_as_cocoeval_does(realdata, tmp_path):
    """COCOeval puts a GT object in the small / medium / large range by the `area` its file declares (in
    COCO's own files a polygon's area, not the pixel count). Declared areas moved across the range bounds
    (32², 96²) change APs/APm/APl as COCOeval run on that file computes them, and ours must follow."""
    source = realdata / "panopticapi_sample" / "panoptic_coco_detection_format.json"
    results = _results_from(source, 3, 4)
    data = json.loads(source.read_text())
    for position, annotation in enumerate(data["annotations"]):
        annotation["area"] = annotation["area"] * (3.0 if position % 2 else 0.3)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(data))
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps(results))
    expected = _cocoeval_stats(gt, copy.deepcopy(results))  # COCOeval's loadRes adds to the results
    by_pixel_count = _cocoeval_stats(source, copy.deepcopy(results))  # the fixture declares pixel counts
    assert expected[3:] != pytest.approx(by_pixel_count[3:], abs=1e-9)  # the declared areas matter here
    ours = evaluate(gt, pred).to_dict()["ap"]
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    assert [-1 if ours[n] is None else ours[n] for n in names] == pytest.approx(expected, abs=1e-9)
