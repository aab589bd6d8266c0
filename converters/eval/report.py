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


# A table as the terminal and the HTML report both show it: (title, header, rows of cells).
Table = tuple[str, list[str], list[list[str]]]


def _render(intro: str, tables: list[Table]) -> str:
    lines = [intro]
    for title, header, rows in tables:
        lines += ["", title, *_table(header, rows)]
    return "\n".join(lines) + "\n"


def text_report(result: dict[str, Any]) -> str:
    """Per-class tables (scores shown as percentages for reading; the JSON holds fractions)."""
    intro = (
        f"{result['images']} image pairs: GT {result['gt']['path']} ({result['gt']['format']}), "
        f"PRED {result['pred']['path']} ({result['pred']['format']})"
    )
    return _render(intro, score_tables(result))


def score_tables(result: dict[str, Any]) -> list[Table]:
    """The tables of a two-dataset evaluation: panoptic quality, mask AP, semantic, as far as computed."""
    tables: list[Table] = []
    pq = result.get("pq")
    if pq is not None:
        tables.append(("Panoptic quality", PQ_HEADER, _pq_rows(pq)))
    ap = result.get("ap")
    if ap is not None:
        tables.append(("Mask AP", list(ap), [[_number(value) for value in ap.values()]]))
    semantic = result.get("semantic")
    if semantic is not None:
        rows = [[name, _number(iou)] for name, iou in semantic["per_class"].items()]
        rows += [["mIoU", _number(semantic["miou"])], ["pixel accuracy", _number(semantic["pixel_accuracy"])]]
        tables.append(("Semantic", ["class", "IoU"], rows))
    return tables


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


def acceptance_intro(result: dict[str, Any]) -> str:
    skipped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in result["tasks_skipped"].items() if n)
    return f"{result['pairs']} (task, prediction) pairs in {result['export']}" + (
        f"; skipped: {skipped}" if skipped else ""
    )


def acceptance_tables(result: dict[str, Any]) -> list[Table]:
    """Per label and model_version, the share of pre-labels accepted, edited, deleted; then their PQ."""
    acceptance = result["acceptance"]
    header = ["label", "predicted", "accepted%", "edited%", "deleted%", "added", "mean IoU"]
    tables: list[Table] = []
    for version, entry in [("all model versions", acceptance), *acceptance["per_model_version"].items()]:
        rows = [_acceptance_rows(name, counts) for name, counts in entry["per_label"].items()]
        rows.append(_acceptance_rows("All", entry))
        tables.append((f"Pre-labels kept by annotators ({version or 'no model_version'})", header, rows))
    tables.append(
        ("Panoptic quality of the predictions against the annotations", PQ_HEADER, _pq_rows(result["pq"]))
    )
    return tables


def acceptance_report(result: dict[str, Any]) -> str:
    return _render(acceptance_intro(result), acceptance_tables(result))


def agreement_intro(result: dict[str, Any]) -> str:
    return f"Annotator agreement in {result['export']}"


def agreement_tables(result: dict[str, Any]) -> list[Table]:
    """PQ per pair of annotators, then per label over all pairs."""
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
    return [
        ("PQ per pair of annotators", ["annotators", "tasks", "PQ", "SQ", "RQ"], rows),
        ("PQ per label, all pairs", PQ_HEADER, _pq_rows(result["pq"])),
    ]


def agreement_report(result: dict[str, Any]) -> str:
    return _render(agreement_intro(result), agreement_tables(result))
