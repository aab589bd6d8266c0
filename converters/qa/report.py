"""QA reports: the JSON report and the terminal summary (counts by code, worst images first)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from converters import naming
from converters.qa.findings import CHECKS, Finding, Severity, badness
from converters.qa.run import QAResult

WORST_SHOWN = 10
MESSAGES_PER_IMAGE = 3


def summary(result: QAResult) -> dict[str, Any]:
    by_code = Counter(finding.code for finding in result.findings)
    by_severity = Counter(finding.severity.label for finding in result.findings)
    return {
        "input": str(result.input),
        "format": result.format,
        "checked": result.checked,
        "by_severity": {
            severity.label: by_severity.get(severity.label, 0) for severity in reversed(Severity)
        },
        "by_code": {code: by_code[code] for code in sorted(by_code, key=_code_order)},
    }


def _code_order(code: str) -> tuple[int, str]:
    return (-CHECKS[code].severity, code)


def report_json(result: QAResult, fix_changes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    report = {"summary": summary(result), "findings": [finding.to_json() for finding in result.findings]}
    if fix_changes is not None:
        report["fix"] = fix_changes
    return report


def write_json(result: QAResult, target: Path, fix_changes: list[dict[str, Any]] | None = None) -> None:
    """Write the JSON report into `target` (a path reserved in the command's `Outputs`); `fix_changes` from
    --fix."""
    target.write_text(json.dumps(report_json(result, fix_changes), indent=1, default=str) + "\n")


def worst_images(findings: list[Finding]) -> list[tuple[tuple[str, str], list[Finding]]]:
    """Findings grouped by image (or task), the groups with most errors, then warnings, first; inside a
    group, errors before warnings before infos."""
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in findings:
        groups[finding.image_key()].append(finding)

    # sorted() is stable: ties keep the order in which images were checked, and findings their check order.
    return [
        (key, sorted(group, key=lambda finding: -finding.severity))
        for key, group in sorted(groups.items(), key=lambda item: badness(item[1]))
    ]


def group_title(result: QAResult, key: tuple[str, str], group: list[Finding]) -> str:
    """`task 7`, `task #1`, `image 5 (a.jpg)`: an image is named by its image file (not, for panoptic data,
    by its PNG), as the run recorded it."""
    kind, value = key
    if kind == "dataset":
        return "dataset"
    if kind == "task":
        return naming.describe(task_id=value)
    file_name = result.image_names.get(key) or next((f.file_name for f in group if f.file_name), None)
    return naming.describe(image_id=value, file_name=file_name)


def terminal_summary(result: QAResult) -> str:
    counts = summary(result)
    severities = ", ".join(f"{label}: {n}" for label, n in counts["by_severity"].items())
    lines = [f"QA of {result.input} ({result.format}): {result.checked} checked; {severities}"]
    if not result.findings:
        lines.append("no findings")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"{'count':>7}  {'severity':<8} code")
    for code, n in counts["by_code"].items():
        check = CHECKS[code]
        lines.append(f"{n:>7}  {check.severity.label:<8} {code}: {check.explanation}")
    lines.append("")
    lines.append("worst first:")
    for key, group in worst_images(result.findings)[:WORST_SHOWN]:
        tally = Counter(finding.severity.label for finding in group)
        lines.append(
            f"  {group_title(result, key, group)}: "
            + ", ".join(f"{s.label}: {tally[s.label]}" for s in reversed(Severity))
        )
        for finding in group[:MESSAGES_PER_IMAGE]:
            place = finding.place()
            where = f"{place}: " if place else ""
            lines.append(f"    {finding.severity.label:<7} {finding.code}: {where}{finding.message}")
        if len(group) > MESSAGES_PER_IMAGE:
            lines.append(f"    ... {len(group) - MESSAGES_PER_IMAGE} more in the JSON/HTML report")
    return "\n".join(lines)
