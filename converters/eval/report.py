"""The evaluation on the terminal (a per-class table) and as JSON (a fixed layout; scores are fractions)."""

from __future__ import annotations

import json
from typing import Any


def to_json(result: dict[str, Any]) -> str:
    """Deterministic JSON: keys in the layout's order, fixed indentation."""
    return json.dumps(result, indent=1, ensure_ascii=False) + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:6.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:{'<' if i == 0 else '>'}{width}}}" for i, width in enumerate(widths))
    return [line.format(*header), *(line.format(*row) for row in rows)]


def text_report(result: dict[str, Any]) -> str:
    """Per-class tables (scores shown as percentages for reading; the JSON holds fractions)."""
    lines = [
        f"{result['images']} image pairs: GT {result['gt']['path']} ({result['gt']['format']}), "
        f"PRED {result['pred']['path']} ({result['pred']['format']})"
    ]
    pq = result.get("pq")
    if pq is not None:
        lines += ["", "Panoptic quality", *_table(PQ_HEADER, _pq_rows(pq))]
    ap = result.get("ap")
    if ap is not None:
        lines += ["", "Mask AP", *_table(list(ap), [[_number(value) for value in ap.values()]])]
    semantic = result.get("semantic")
    if semantic is not None:
        rows = [[name, _number(iou)] for name, iou in semantic["per_class"].items()]
        rows += [["mIoU", _number(semantic["miou"])], ["pixel accuracy", _number(semantic["pixel_accuracy"])]]
        lines += ["", "Semantic", *_table(["class", "IoU"], rows)]
    return "\n".join(lines) + "\n"


def _pq_rows(pq: dict[str, Any]) -> list[list[str]]:
    rows = [
        [name, _number(e["pq"]), _number(e["sq"]), _number(e["rq"]), str(e["tp"]), str(e["fp"]), str(e["fn"])]
        for name, e in pq["per_class"].items()
    ]
    return rows + [
        [
            group.capitalize(),
            _number(pq[group]["pq"]),
            _number(pq[group]["sq"]),
            _number(pq[group]["rq"]),
            f"n={pq[group]['n']}",
            "",
            "",
        ]
        for group in ("all", "things", "stuff")
    ]


PQ_HEADER = ["class", "PQ", "SQ", "RQ", "TP", "FP", "FN"]


def _acceptance_rows(label: str, counts: dict[str, Any]) -> list[str]:
    return [
        label,
        str(counts["predicted"]),
        _number(counts["accepted_share"]),
        _number(counts["edited_share"]),
        _number(counts["deleted_share"]),
        str(counts["added"]),
        _number(counts["mean_iou"]),
    ]


def acceptance_report(result: dict[str, Any]) -> str:
    acceptance = result["acceptance"]
    skipped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in result["tasks_skipped"].items() if n)
    lines = [
        f"{result['pairs']} (task, prediction) pairs in {result['export']}"
        + (f"; skipped: {skipped}" if skipped else "")
    ]
    header = ["label", "predicted", "accepted%", "edited%", "deleted%", "added", "mean IoU"]
    for version, entry in [("all model versions", acceptance), *acceptance["per_model_version"].items()]:
        rows = [_acceptance_rows(name, counts) for name, counts in entry["per_label"].items()]
        rows.append(_acceptance_rows("All", entry))
        lines += [
            "",
            f"Pre-labels kept by annotators ({version or 'no model_version'})",
            *_table(header, rows),
        ]
    lines += [
        "",
        "Panoptic quality of the predictions against the annotations",
        *_table(PQ_HEADER, _pq_rows(result["pq"])),
    ]
    return "\n".join(lines) + "\n"


def agreement_report(result: dict[str, Any]) -> str:
    lines = [f"Annotator agreement in {result['export']}", "", "PQ per pair of annotators"]
    rows = [
        [
            " vs ".join(entry["annotators"]),
            str(entry["tasks"]),
            _number(entry["pq"]["all"]["pq"]),
            _number(entry["pq"]["all"]["sq"]),
            _number(entry["pq"]["all"]["rq"]),
        ]
        for entry in result["pairs"]
    ]
    lines += _table(["annotators", "tasks", "PQ", "SQ", "RQ"], rows)
    lines += ["", "PQ per label, all pairs", *_table(PQ_HEADER, _pq_rows(result["pq"]))]
    return "\n".join(lines) + "\n"
