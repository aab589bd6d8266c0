"""The eval HTML report, on the QA report's machinery (its page, overlays and zoomable pictures): the scores
per class, then the image pairs with the lowest PQ (or mIoU), GT and prediction side by side.

Segments are filled with their category's colour (the same on both sides); on the GT side the segments no
prediction matched (false negatives) are outlined in red, on the prediction side the unmatched predictions
(false positives). Only the shown images are read again.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from converters.eval.core import IdImage, ImagePair
from converters.eval.pq import match_image
from converters.eval.run import EvalOptions, EvalResult, reload_pairs
from converters.formats.label_map import masks_from_label_map
from converters.model import Category
from converters.qa.common import find_image
from converters.qa.html import page, zoomable_picture
from converters.qa.overlay import Overlay, pictures


def write_html(result: EvalResult, options: EvalOptions, target: Path) -> None:
    """Write the report into `target` (a path reserved in the command's `Outputs`)."""
    scores = result.to_dict()
    parts = [
        f"<h1>Evaluation of {html.escape(str(result.pred.path))}</h1>",
        f"<p>against {html.escape(str(result.gt.path))} ({html.escape(result.gt.format)} / "
        f"{html.escape(result.pred.format)}), {result.images} image pairs</p>",
    ]
    parts += _score_tables(scores)
    if result.worst:
        parts.append(
            f"<h2>The {len(result.worst)} image pairs with the lowest "
            f"{_metric_name(result.worst_metric)}</h2>"
            "<p>left: ground truth, unmatched segments (false negatives) outlined; right: prediction, "
            "unmatched predictions (false positives) outlined</p>"
        )
        loaded = {
            pair.key: pair for pair in reload_pairs(result, options, {key for key, _, _ in result.worst})
        }
        for key, file_name, score in result.worst:
            parts.append(_pair_section(loaded[key], file_name, score, result, options))
    target.write_text(page(f"segassist eval: {result.pred.path.name}", parts))


def _metric_name(metric: str | None) -> str:
    return "PQ" if metric == "pq" else "mean IoU"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _score_tables(scores: dict[str, Any]) -> list[str]:
    parts = []
    pq = scores.get("pq")
    if pq is not None:
        rows = [
            [
                name,
                _percent(e["pq"]),
                _percent(e["sq"]),
                _percent(e["rq"]),
                str(e["tp"]),
                str(e["fp"]),
                str(e["fn"]),
            ]
            for name, e in pq["per_class"].items()
        ]
        rows += [
            [
                group,
                _percent(pq[group]["pq"]),
                _percent(pq[group]["sq"]),
                _percent(pq[group]["rq"]),
                "",
                "",
                "",
            ]
            for group in ("all", "things", "stuff")
        ]
        parts += [
            "<h2>Panoptic quality (%)</h2>",
            _table(["class", "PQ", "SQ", "RQ", "TP", "FP", "FN"], rows),
        ]
    ap = scores.get("ap")
    if ap is not None:
        parts += ["<h2>Mask AP (%)</h2>", _table(list(ap), [[_percent(value) for value in ap.values()]])]
    semantic = scores.get("semantic")
    if semantic is not None:
        rows = [[name, _percent(iou)] for name, iou in semantic["per_class"].items()]
        rows += [
            ["mIoU", _percent(semantic["miou"])],
            ["pixel accuracy", _percent(semantic["pixel_accuracy"])],
        ]
        parts += ["<h2>Semantic (%)</h2>", _table(["class", "IoU"], rows)]
    return parts


def _pair_section(
    pair: ImagePair, file_name: str, score: float, result: EvalResult, options: EvalOptions
) -> str:
    assert pair.gt is not None and pair.pred is not None and pair.counts is not None
    match = match_image(pair.gt, pair.pred, pair.counts)
    background = find_image(options.images, file_name)
    categories = result.gt.categories
    title = html.escape(f"{file_name} ({_metric_name(result.worst_metric)} {_percent(score)} %)")
    gt = pictures(_overlay(pair.gt, set(match.false_negatives), categories, background))
    pred = pictures(_overlay(pair.pred, set(match.false_positives), categories, background))
    return (
        f'<div class="image">{zoomable_picture(gt, title + " GT")}{zoomable_picture(pred, title + " PRED")}'
        f"<div><h3>{title}</h3><p>{len(match.matches)} matched, {len(match.false_negatives)} missed (FN), "
        f"{len(match.false_positives)} false positives</p></div></div>"
    )


def _overlay(
    image: IdImage, outlined: set[int], categories: list[Category], background: Path | None
) -> Overlay:
    """Segments filled by category (label k = the k-th GT category), void and background left clear."""
    index = {category.id: position for position, category in enumerate(categories, start=1)}
    ids, inverse = np.unique(image.id_map, return_inverse=True)
    lookup = np.array(
        [index[image.segments[i][0]] if i in image.segments else 0 for i in ids.tolist()], np.int32
    )
    labels = lookup[inverse.reshape(image.id_map.shape)]
    masks = [
        mask for segment_id, mask in masks_from_label_map(image.id_map).items() if segment_id in outlined
    ]
    height, width = image.id_map.shape
    return Overlay(height, width, labels=labels, outlined=masks, background=background)
