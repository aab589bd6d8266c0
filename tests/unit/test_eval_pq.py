"""PQ on cases worked out by hand (the IoU > 0.5 boundary, void, crowd), the pair counter against np.unique,
and the command's errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters.cli import main
from converters.eval.core import IdImage, PairCounts
from converters.eval.pairs import pair_counts
from converters.eval.pq import match_image
from tests import eval_helpers as h

CATEGORIES = [
    {"id": 1, "name": "cat", "isthing": 1},
    {"id": 2, "name": "dog", "isthing": 1},
    {"id": 3, "name": "grass", "isthing": 0},
]


def _strip(*runs: tuple[int, int, int], width: int = 20) -> np.ndarray:
    """A 1 x width id map with id `v` on [start, stop) for each (v, start, stop)."""
    ids = np.zeros((1, width), np.int64)
    for value, start, stop in runs:
        ids[0, start:stop] = value
    return ids


def _image(
    ids: np.ndarray, *segments: tuple[int, int, int], name: str = "a.jpg", image_id: int = 1
) -> h.PanImage:
    entry = {"id": image_id, "file_name": name, "width": ids.shape[1], "height": ids.shape[0]}
    return h.PanImage(entry, ids, [{"id": s, "category_id": c, "iscrowd": crowd} for s, c, crowd in segments])


def _pq(tmp_path, gt: list[h.PanImage], pred: list[h.PanImage], *args: str) -> tuple[int, dict]:
    gt_path = h.write_panoptic(h.PanDataset(CATEGORIES, gt), tmp_path / "gt.json")
    pred_path = h.write_panoptic(h.PanDataset(CATEGORIES, pred), tmp_path / "pred.json")
    out = tmp_path / "scores.json"
    code = main(["eval", str(gt_path), str(pred_path), "--json", str(out), *args])
    return code, (json.loads(out.read_text()) if code == 0 else {})


def test_iou_just_above_one_half_matches(tmp_path):
    # GT cat on [0, 10), grass on [10, 20); prediction cat on [3, 13), grass on the rest: for each class the
    # intersection is 7 and the union 13, IoU 7/13 = 0.538 > 0.5.
    gt = _image(_strip((1, 0, 10), (2, 10, 20)), (1, 1, 0), (2, 3, 0))
    pred = _image(_strip((6, 0, 3), (5, 3, 13), (6, 13, 20)), (5, 1, 0), (6, 3, 0))
    code, scores = _pq(tmp_path, [gt], [pred])
    assert code == 0
    for name in ("cat", "grass"):
        entry = scores["pq"]["per_class"][name]
        assert (entry["tp"], entry["fp"], entry["fn"]) == (1, 0, 0)
        assert (
            entry["sq"] == pytest.approx(7 / 13)
            and entry["pq"] == pytest.approx(7 / 13)
            and entry["rq"] == 1.0
        )
    assert scores["semantic"]["per_class"]["cat"] == pytest.approx(7 / 13)
    assert scores["semantic"]["pixel_accuracy"] == pytest.approx(14 / 20)


def test_iou_of_exactly_one_half_does_not_match(tmp_path):
    # GT cat on [0, 4), prediction on [0, 8) with GT grass on [4, 8): IoU 4/8 = 0.5, not > 0.5.
    gt = _image(_strip((1, 0, 4), (2, 4, 8)), (1, 1, 0), (2, 3, 0))
    pred = _image(_strip((7, 0, 8)), (7, 1, 0))
    code, scores = _pq(tmp_path, [gt], [pred])
    cat, grass = scores["pq"]["per_class"]["cat"], scores["pq"]["per_class"]["grass"]
    assert (cat["tp"], cat["fp"], cat["fn"]) == (0, 1, 1) and cat["pq"] == 0.0
    assert (grass["tp"], grass["fp"], grass["fn"]) == (0, 0, 1)
    assert scores["pq"]["all"]["n"] == 2 and scores["pq"]["things"]["n"] == 1


def test_predicted_pixels_on_gt_void_leave_the_union(tmp_path):
    # GT cat on [0, 4), void on [4, 8); prediction on [0, 8): union 8 + 4 - 4 - 4 (on void) = 4, IoU 1.
    code, scores = _pq(
        tmp_path, [_image(_strip((1, 0, 4)), (1, 1, 0))], [_image(_strip((3, 0, 8)), (3, 1, 0))]
    )
    cat = scores["pq"]["per_class"]["cat"]
    assert (cat["tp"], cat["fp"], cat["fn"], cat["pq"]) == (1, 0, 0, 1.0)


@pytest.mark.parametrize(("on_void", "is_fp"), [(6, False), (5, True)])
def test_unmatched_prediction_mostly_on_void_is_no_false_positive(tmp_path, on_void, is_fp):
    # A 10-pixel dog prediction with `on_void` pixels on GT void, the rest on a GT cat: no match either way;
    # more than half on void excuses it (6/10), exactly half does not (5/10).
    gt = _image(_strip((1, on_void, 20)), (1, 1, 0))
    pred = _image(_strip((4, 0, 10), (5, 10, 20)), (4, 2, 0), (5, 1, 0))
    code, scores = _pq(tmp_path, [gt], [pred])
    per_class = scores["pq"]["per_class"]
    assert ("dog" in per_class) == is_fp
    if is_fp:
        assert per_class["dog"]["fp"] == 1


def test_crowd_gt_never_matches_and_excuses_predictions_of_its_class(tmp_path):
    # GT: a crowd of cats on [0, 10), a dog on [10, 20). Prediction: a cat on [0, 10) (IoU 1 with the crowd,
    # yet no match, and no FP since it lies on the crowd), and the dog.
    gt = _image(_strip((1, 0, 10), (2, 10, 20)), (1, 1, 1), (2, 2, 0))
    pred = _image(_strip((8, 0, 10), (9, 10, 20)), (8, 1, 0), (9, 2, 0))
    code, scores = _pq(tmp_path, [gt], [pred])
    per_class = scores["pq"]["per_class"]
    assert "cat" not in per_class  # crowd: neither FN nor matched; the prediction on it is no FP
    assert (per_class["dog"]["tp"], per_class["dog"]["fp"], per_class["dog"]["fn"]) == (1, 0, 0)


def test_match_image_on_id_images():
    gt = IdImage(np.array([[1, 1, 2, 2, 0]], np.uint32), {1: (1, False), 2: (2, False)})
    pred = IdImage(np.array([[3, 3, 3, 4, 4]], np.uint32), {3: (1, False), 4: (2, False)})
    match = match_image(gt, pred, PairCounts.of(gt, pred))
    # cat: inter 2, union 3 + 2 - 2 = 3 -> 2/3. dog: inter 1, union 2 + 2 - 1 - 1 (on void) = 2 -> 1/2: no.
    assert match.matches == [(1, 3, pytest.approx(2 / 3))]
    assert match.false_negatives == [2] and match.false_positives == [4]


def _runs(rng: np.random.Generator, size: int, ids: int) -> np.ndarray:
    """Ids in runs of 1 to 80 pixels (label maps are long runs; the counter scans 16 pixels at a time)."""
    lengths = rng.integers(1, 81, size)
    return np.repeat(rng.integers(0, ids, size), lengths)[:size]


def test_pair_counts_equal_np_unique_of_the_combined_map():
    rng = np.random.default_rng(0)
    for shape, ids in (((300, 200), 50), ((64, 64), 3000), ((1, 1), 1)):
        gt = rng.integers(0, ids, shape).astype(np.uint32)
        pred = np.where(rng.random(shape) < 0.7, gt, rng.integers(0, 2**24, shape)).astype(np.uint32)
        _check_pair_counts(gt, pred)
    for shape in ((397, 211), (1, 37), (3, 5)):  # sizes that are not whole blocks of 16
        size = shape[0] * shape[1]
        gt = _runs(rng, size, 40)
        pred = np.where(_runs(rng, size, 4) > 0, gt, _runs(rng, size, 40))
        _check_pair_counts(gt.reshape(shape).astype(np.uint32), pred.reshape(shape).astype(np.uint32))


def _check_pair_counts(gt: np.ndarray, pred: np.ndarray) -> None:
    keys, counts = np.unique(gt.astype(np.uint64) * 2**24 + pred, return_counts=True)
    got_gt, got_pred, got_counts = pair_counts(gt, pred)
    assert np.array_equal(got_gt, keys >> 24) and np.array_equal(got_pred, keys & (2**24 - 1))
    assert np.array_equal(got_counts, counts)


# -- bad input -----------------------------------------------------------------------------------------------


def test_categories_that_differ_are_listed_and_a_map_resolves_them(tmp_path, capsys):
    gt = [_image(_strip((1, 0, 10)), (1, 1, 0))]
    pred = [_image(_strip((1, 0, 10)), (1, 1, 0))]
    gt_path = h.write_panoptic(h.PanDataset(CATEGORIES, gt), tmp_path / "gt.json")
    renamed = [dict(c, name="kitty") if c["name"] == "cat" else c for c in CATEGORIES]
    pred_path = h.write_panoptic(h.PanDataset(renamed, pred), tmp_path / "pred.json")
    assert main(["eval", str(gt_path), str(pred_path)]) == 2
    error = capsys.readouterr().err
    assert "only in PRED: ['kitty']" in error and "only in GT: ['cat']" in error
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"kitty": "cat"}))
    out = tmp_path / "s.json"
    assert (
        main(["eval", str(gt_path), str(pred_path), "--category-map", str(mapping), "--json", str(out)]) == 0
    )
    assert json.loads(out.read_text())["pq"]["per_class"]["cat"]["pq"] == 1.0


def test_images_on_one_side_only_are_listed(tmp_path, capsys):
    gt = [_image(_strip((1, 0, 10)), (1, 1, 0), image_id=i, name=f"{i}.jpg") for i in (1, 2, 3)]
    pred = [_image(_strip((1, 0, 10)), (1, 1, 0), image_id=i, name=f"{i}.jpg") for i in (2, 4)]
    code, _ = _pq(tmp_path, gt, pred)
    assert code == 2
    error = capsys.readouterr().err
    assert "2 only in GT: 1, 3" in error and "1 only in PRED: 4" in error


def test_sizes_that_differ_name_the_image(tmp_path, capsys):
    gt = [_image(_strip((1, 0, 10), width=20), (1, 1, 0), name="dog.jpg", image_id=7)]
    pred = [_image(_strip((1, 0, 10), width=21), (1, 1, 0), name="dog.jpg", image_id=7)]
    code, _ = _pq(tmp_path, gt, pred)
    assert code == 2
    error = capsys.readouterr().err
    assert "image 7" in error and "20x1 in GT but 21x1 in PRED" in error and "dog.jpg" in error


def test_png_ids_missing_from_segments_info_are_an_error(tmp_path, capsys):
    gt = [_image(_strip((1, 0, 10)), (1, 1, 0))]
    pred = [_image(_strip((1, 0, 10), (2, 10, 12)), (1, 1, 0))]
    code, _ = _pq(tmp_path, gt, pred)
    assert code == 2
    assert "segments_info does not list: [2]" in capsys.readouterr().err


def test_html_report_shows_the_worst_image_first_gt_beside_prediction(tmp_path, realdata):
    sample = h.read_panoptic(realdata / "panopticapi_sample" / "panoptic_examples.json")
    gt_path = h.write_panoptic(sample, tmp_path / "gt.json")
    damaged = sample.copy()
    damaged.images[1] = h.relabelled(h.PanDataset(sample.categories, [sample.images[1]]), 1).images[0]
    pred_path = h.write_panoptic(damaged, tmp_path / "pred.json")
    report = tmp_path / "report.html"
    assert main(["eval", str(gt_path), str(pred_path), "--html", str(report)]) == 0
    text = report.read_text()
    assert "<h2>Panoptic quality</h2>" in text and "<h2>Semantic</h2>" in text and "scores in %" in text
    worst, best = sample.images[1].entry["file_name"], sample.images[0].entry["file_name"]
    assert text.index(f"<h3>{worst} (PQ 0.00 %)") < text.index(f"<h3>{best} (PQ 100.00 %)")
    assert text.count('<a class="zoom"') == 4  # GT and prediction for each of the two images
