"""The eval HTML report, on the QA report's machinery (its page, overlays and zoomable pictures): the tables
the terminal shows, then the image pairs with the lowest PQ (or mIoU), side by side: GT and prediction, or
in the export modes the final annotation and a prediction, or two annotators.

Segments are filled with their category's colour (the same on both sides); on the left the segments nothing
on the right matched (false negatives) are outlined in red, on the right the unmatched ones (false
positives). Only the shown images are read again.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from converters.eval.acceptance import ExportResult
from converters.eval.core import IdImage, ImagePair
from converters.eval.pq import match_image
from converters.eval.report import (
    Table,
    acceptance_intro,
    acceptance_tables,
    agreement_intro,
    agreement_tables,
    score_tables,
)
from converters.eval.run import EvalOptions, EvalResult, reload_pairs
from converters.formats.label_map import masks_from_label_map
from converters.model import Category
from converters.qa.common import find_image
from converters.qa.html import page, zoomable_picture
from converters.qa.overlay import Overlay, pictures


def write_html(result: EvalResult, options: EvalOptions, target: Path) -> None:
    """Write the report of a two-dataset evaluation into `target` (a path reserved in the command's
    `Outputs`)."""
    parts = [
        f"<h1>Evaluation of {html.escape(str(result.pred.path))}</h1>",
        f"<p>against {html.escape(str(result.gt.path))} ({html.escape(result.gt.format)} / "
        f"{html.escape(result.pred.format)}), {result.images} image pairs; scores in %</p>",
        *_tables(score_tables(result.to_dict())),
    ]
    metric = "PQ" if result.worst_metric == "pq" else "mean IoU"
    if result.worst:
        parts.append(
            f"<h2>The {len(result.worst)} image pairs with the lowest {metric}</h2>"
            "<p>left: ground truth, unmatched segments (false negatives) outlined; right: prediction, "
            "unmatched predictions (false positives) outlined</p>"
        )
        loaded = {
            pair.key: pair for pair in reload_pairs(result, options, {key for key, _, _ in result.worst})
        }
        for key, file_name, score in result.worst:
            title = f"{file_name} ({metric} {_percent(score)} %)"
            background = find_image(options.images, file_name)
            parts.append(_pair_section(loaded[key], title, ("GT", "PRED"), result.gt.categories, background))
    target.write_text(page(f"segassist eval: {result.pred.path.name}", parts))


def write_export_html(result: ExportResult, images: Path | None, target: Path) -> None:
    """Write the report of `--predictions-vs-annotations` or `--annotators` (told apart by the scores'
    layout) into `target`; `images`: the image folder, for the overlays' backgrounds."""
    scores = result.scores
    predictions = "acceptance" in scores
    if predictions:
        heading, intro, tables = (
            "Pre-labels against annotations",
            acceptance_intro(scores),
            acceptance_tables(scores),
        )
        explained = "left: the final annotation, regions no prediction matched (added) outlined; right: the "
        explained += "prediction, regions no annotation matched (deleted) outlined"
    else:
        heading, intro = "Annotator agreement", agreement_intro(scores)
        tables = agreement_tables(scores)
        explained = "left and right: two annotators of the task, regions the other did not match outlined"
    parts = [
        f"<h1>{html.escape(heading)}</h1>",
        f"<p>{html.escape(intro)}; scores in %</p>",
        *_tables(tables),
    ]
    if result.worst:
        unit = "(task, prediction)" if predictions else "(task, annotator, annotator)"
        parts.append(f"<h2>The {len(result.worst)} {unit} pairs with the lowest PQ</h2><p>{explained}</p>")
        loaded = {pair.key: pair for pair in result.reload({key for key, _, _ in result.worst})}
        for key, file_name, score in result.worst:
            if predictions:
                task_id, version = key
                sides = ("annotation", f"prediction {version}" if version else "prediction")
            else:
                task_id, first, second = key
                sides = (f"annotator {first}", f"annotator {second}")
            title = f"task {task_id}, {sides[1]}: {file_name} (PQ {_percent(score)} %)"
            background = find_image(images, file_name)
            parts.append(_pair_section(loaded[key], title, sides, result.categories, background))
    target.write_text(page(f"segassist eval: {Path(scores['export']).name}", parts))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _tables(tables: list[Table]) -> list[str]:
    """The report's tables (their cells as the terminal shows them, padding dropped)."""
    parts = []
    for title, header, rows in tables:
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell.strip())}</td>" for cell in row) + "</tr>"
            for row in rows
        )
        parts += [f"<h2>{html.escape(title)}</h2>", f"<table><tr>{head}</tr>{body}</table>"]
    return parts


def _pair_section(
    pair: ImagePair, title: str, sides: tuple[str, str], categories: list[Category], background: Path | None
) -> str:
    """One pair: the left side (GT) and the right side (prediction) as overlays, then the match counts."""
    assert pair.gt is not None and pair.pred is not None and pair.counts is not None
    match = match_image(pair.gt, pair.pred, pair.counts)
    left = pictures(_overlay(pair.gt, set(match.false_negatives), categories, background))
    right = pictures(_overlay(pair.pred, set(match.false_positives), categories, background))
    title = html.escape(title)
    return (
        f'<div class="image">{zoomable_picture(left, f"{title} {html.escape(sides[0])}")}'
        f"{zoomable_picture(right, f'{title} {html.escape(sides[1])}')}"
        f"<div><h3>{title}</h3><p>{len(match.matches)} matched, {len(match.false_negatives)} only in "
        f"{html.escape(sides[0])} (FN), {len(match.false_positives)} only in {html.escape(sides[1])} (FP)"
        "</p></div></div>"
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
