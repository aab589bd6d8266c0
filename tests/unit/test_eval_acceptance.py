"""`segassist eval EXPORT --predictions-vs-annotations` and `--annotators` on a Label Studio export built as
Label Studio writes one: brush regions encoded by label-studio-sdk's own RLE encoder, predictions with
model_version, annotations with completed_by."""

from __future__ import annotations

import json

import numpy as np
import pytest
from label_studio_sdk.converter.brush import mask2rle

from converters.cli import main

WIDTH, HEIGHT = 100, 80


def _box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    alpha = np.zeros((HEIGHT, WIDTH), np.uint8)
    alpha[top:bottom, left:right] = 255
    return alpha


def _brush(region_id: str, alpha: np.ndarray, label: str) -> dict:
    return {
        "id": region_id,
        "type": "brushlabels",
        "from_name": "tag",
        "to_name": "image",
        "original_width": WIDTH,
        "original_height": HEIGHT,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask2rle(alpha), "brushlabels": [label]},
    }


CAT_A = _box(10, 10, 40, 40)  # 900 px
DOG_B = _box(10, 50, 30, 90)  # 800 px
DOG_B_TRIMMED = _box(12, 52, 28, 88)  # 576 px inside DOG_B: IoU 0.72
CAT_C = _box(50, 60, 70, 70)  # 200 px
DOG_D = _box(45, 5, 75, 35)  # 900 px


def _annotation(annotation_id: int, who: int, *regions: dict, updated: str = "2026-01-02") -> dict:
    return {
        "id": annotation_id,
        "completed_by": who,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": updated,
        "result": list(regions),
    }


def _prediction(prediction_id: int, version: str, *regions: dict) -> dict:
    return {"id": prediction_id, "model_version": version, "score": 0.9, "result": list(regions)}


def _task(task_id: int, annotations: list[dict], predictions: list[dict]) -> dict:
    return {
        "id": task_id,
        "data": {"image": f"/data/upload/1/{task_id}.png"},
        "annotations": annotations,
        "predictions": predictions,
    }


@pytest.fixture
def export(tmp_path):
    tasks = [
        # v1 pre-labelled A (kept), B (trimmed), C (deleted); the annotator added D.
        _task(
            1,
            [
                _annotation(
                    11, 1, _brush("a", CAT_A, "cat"), _brush("b", DOG_B_TRIMMED, "dog"), updated="2026-01-03"
                ),
                # an older annotation of the same task: not the final one
                _annotation(10, 1, updated="2026-01-02"),
            ],
            [
                _prediction(
                    1, "v1", _brush("a", CAT_A, "cat"), _brush("b", DOG_B, "dog"), _brush("c", CAT_C, "cat")
                )
            ],
        ),
        # v1 and v2 on one task: v1's cat kept, v2 predicted nothing (the cat was added for v2), D added.
        _task(
            2,
            [_annotation(21, 2, _brush("a", CAT_A, "cat"), _brush("d", DOG_D, "dog"))],
            [_prediction(2, "v1", _brush("a", CAT_A, "cat")), _prediction(3, "v2")],
        ),
        _task(3, [], [_prediction(4, "v1", _brush("a", CAT_A, "cat"))]),  # not annotated yet
        _task(4, [_annotation(41, 1, _brush("a", CAT_A, "cat"))], []),  # not pre-labelled
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def _run(*args: str, tmp_path) -> dict:
    out = tmp_path / "scores.json"
    assert main(["eval", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_accepted_edited_deleted_and_added_regions_are_counted(export, tmp_path):
    result = _run(str(export), "--predictions-vs-annotations", tmp_path=tmp_path)
    assert result["pairs"] == 3
    assert result["tasks_skipped"] == {"no_annotation": 1, "no_prediction": 1, "no_regions": 0}
    v1 = result["acceptance"]["per_model_version"]["v1"]
    assert (v1["accepted"], v1["edited"], v1["deleted"], v1["added"]) == (2, 1, 1, 1)
    cat, dog = v1["per_label"]["cat"], v1["per_label"]["dog"]
    assert (cat["accepted"], cat["edited"], cat["deleted"], cat["added"]) == (2, 0, 1, 0)
    assert (dog["accepted"], dog["edited"], dog["deleted"], dog["added"]) == (0, 1, 0, 1)
    assert dog["mean_iou"] == pytest.approx(576 / 800) and cat["mean_iou"] == 1.0
    assert cat["accepted_share"] == pytest.approx(2 / 3) and cat["deleted_share"] == pytest.approx(1 / 3)
    v2 = result["acceptance"]["per_model_version"]["v2"]
    assert (v2["predicted"], v2["accepted"], v2["deleted"], v2["added"]) == (0, 0, 0, 2)
    total = result["acceptance"]
    assert (total["accepted"], total["edited"], total["deleted"], total["added"]) == (2, 1, 1, 3)
    # PQ of all pairs: cat TP 2 (IoU 1), FP 1 (C), FN 1 (v2's missing cat); dog TP 1 (0.72), FN 2 (D twice).
    cat_pq, dog_pq = result["pq"]["per_class"]["cat"], result["pq"]["per_class"]["dog"]
    assert (cat_pq["tp"], cat_pq["fp"], cat_pq["fn"]) == (2, 1, 1)
    assert cat_pq["pq"] == pytest.approx(2 / (2 + 0.5 + 0.5))
    assert (dog_pq["tp"], dog_pq["fp"], dog_pq["fn"]) == (1, 0, 2)
    assert dog_pq["sq"] == pytest.approx(0.72) and dog_pq["rq"] == pytest.approx(1 / 2)


def test_model_version_filter(export, tmp_path):
    result = _run(str(export), "--predictions-vs-annotations", "--model-version", "v2", tmp_path=tmp_path)
    assert list(result["acceptance"]["per_model_version"]) == ["v2"]
    assert result["pairs"] == 1
    assert main(["eval", str(export), "--predictions-vs-annotations", "--model-version", "v9"]) == 2


@pytest.fixture
def three_annotators(tmp_path):
    """One task: annotators 7 and 8 agree on the dog and nearly on the cat (8's is shifted: 900 px, 810
    shared with CAT_A, IoU 810 / 990); 9 drew the dog alone."""
    shifted_cat = _box(10, 13, 40, 43)
    tasks = [
        _task(
            1,
            [
                _annotation(1, 7, _brush("a", CAT_A, "cat"), _brush("b", DOG_B, "dog")),
                _annotation(2, 8, _brush("a", shifted_cat, "cat"), _brush("b", DOG_B, "dog")),
                _annotation(3, 9, _brush("b", DOG_B, "dog")),
            ],
            [],
        )
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def test_annotator_agreement_per_pair_and_per_label(three_annotators, tmp_path):
    result = _run(str(three_annotators), "--annotators", tmp_path=tmp_path)
    pairs = {tuple(entry["annotators"]): entry for entry in result["pairs"]}
    assert set(pairs) == {("7", "8"), ("7", "9"), ("8", "9")}
    assert pairs["7", "8"]["pq"]["per_class"]["cat"]["pq"] == pytest.approx(810 / 990)
    assert pairs["7", "8"]["pq"]["per_class"]["dog"]["pq"] == 1.0
    assert (
        pairs["7", "9"]["pq"]["per_class"]["cat"]["fn"],
        pairs["8", "9"]["pq"]["per_class"]["cat"]["fn"],
    ) == (1, 1)
    dog = result["pq"]["per_class"]["dog"]
    assert (dog["tp"], dog["fp"], dog["fn"], dog["pq"]) == (3, 0, 0, 1.0)


def test_an_export_listing_prediction_ids_is_an_error(tmp_path, capsys):
    """Label Studio's plain JSON export lists prediction ids; comparing needs the predictions themselves."""
    path = tmp_path / "export.json"
    path.write_text(json.dumps([_task(5, [_annotation(1, 1, _brush("a", CAT_A, "cat"))], [17])]))
    assert main(["eval", str(path), "--predictions-vs-annotations"]) == 2
    error = capsys.readouterr().err
    assert "task 5" in error and "lists prediction ids" in error


def test_export_modes_take_one_file(export, tmp_path, capsys):
    assert main(["eval", str(export), str(export), "--annotators"]) == 2
    assert main(["eval", str(export)]) == 2
    assert "give GT and PRED" in capsys.readouterr().err


def _sections(text: str) -> list[str]:
    """The titles of the pair sections of an HTML report, in order."""
    return [part.split("</h3>")[0] for part in text.split("<h3>")[1:]]


def test_html_report_of_predictions_vs_annotations(export, tmp_path):
    """The acceptance tables, then the (task, prediction) pairs from the lowest PQ up, annotation beside
    prediction. Per pair, PQ averages the labels present, worked out by hand:
    task 2 / v2 predicts nothing: cat and dog missed, PQ 0;
    task 2 / v1: cat matched (IoU 1), dog D missed: (1 + 0) / 2;
    task 1 / v1: cat A matched, C deleted: 1 / 1.5; dog B trimmed: IoU 0.72: (2/3 + 0.72) / 2."""
    report = tmp_path / "report.html"
    _run(str(export), "--predictions-vs-annotations", "--html", str(report), tmp_path=tmp_path)
    text = report.read_text()
    assert "<h2>Pre-labels kept by annotators (v1)</h2>" in text
    assert (
        "<tr><td>dog</td><td>1</td><td>0.00</td><td>100.00</td><td>0.00</td><td>1</td><td>72.00</td></tr>"
        in text
    )
    assert _sections(text) == [
        "task 2, prediction v2: 2.png (PQ 0.00 %)",
        "task 2, prediction v1: 2.png (PQ 50.00 %)",
        f"task 1, prediction v1: 1.png (PQ {100 * (2 / 3 + 0.72) / 2:.2f} %)",
    ]
    assert text.count('<a class="zoom"') == 6  # annotation and prediction for each pair
    assert "0 matched, 2 only in annotation (FN), 0 only in prediction v2 (FP)" in text
    assert "2 matched, 0 only in annotation (FN), 1 only in prediction v1 (FP)" in text


def test_html_report_of_annotator_agreement(three_annotators, tmp_path):
    report = tmp_path / "report.html"
    _run(str(three_annotators), "--annotators", "--html", str(report), tmp_path=tmp_path)
    text = report.read_text()
    assert "<h2>PQ per pair of annotators</h2>" in text and "<h2>PQ per label, all pairs</h2>" in text
    assert _sections(text) == [
        "task 1, annotator 9: 1.png (PQ 50.00 %)",  # 7 against 9: cat missed, dog matched
        "task 1, annotator 9: 1.png (PQ 50.00 %)",  # 8 against 9
        f"task 1, annotator 8: 1.png (PQ {100 * (810 / 990 + 1) / 2:.2f} %)",
    ]
    assert 'data-title="task 1, annotator 9: 1.png (PQ 50.00 %) annotator 7"' in text
    assert "1 matched, 1 only in annotator 8 (FN), 0 only in annotator 9 (FP)" in text
