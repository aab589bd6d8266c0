"""The types of a QA run, shared by the run, the format checks, the reports and --fix.

A format's checks (`converters.qa.<format>.start`) read the input through the format's reader and give a
`Run`: the dataset-level findings, the items (images, tasks, label maps) and the picklable function that
checks one item. Each checked item gives an `ItemReport`: its findings, and, when the run is asked for
them, the pictures the HTML report shows and what --fix needs to repair the item. So the reports and the
fixed copy come from the one read that found the problems.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from converters.io import Outputs
from converters.qa.findings import Finding, Severity
from converters.qa.overlay import Pictures

TARGETS = ("instance", "panoptic", "semantic")


@dataclass(frozen=True)
class QAOptions:
    format: str = "auto"
    images_dir: Path | None = None
    label_config: Path | None = None
    # COCO panoptic PNG folder; default: the JSON path without ".json" (COCO's layout).
    png_dir: Path | None = None
    # What the data is meant for: "panoptic"/"semantic" make overlapping segments an error.
    target: str = "instance"
    min_area: int = 10
    alpha_threshold: int = 128
    agreement: float = 0.5
    polygon_area_tolerance: float = 0.01
    bbox_tolerance: float = 1.0
    workers: int = 1


@dataclass(frozen=True)
class FixRequest:
    """`--fix OUTPUT`: where the repaired copy goes (reserved in the command's `outputs`, which commits it
    with the command's other outputs), and the overlap policy that makes COCO exclusive."""

    output: Path
    outputs: Outputs
    overlap_policy: str | None = None
    things_over_stuff: bool = False
    min_kept_fraction: float = 0.0


@dataclass
class FixResult:
    output: Path
    changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ItemReport:
    """One checked item: its findings, and what the reports and --fix need of it (only when asked)."""

    key: tuple[str, str]  # ("image", "5") or ("task", "#1"), as Finding.image_key() gives it
    findings: list[Finding]
    file_name: str | None = None  # the image file's name, which titles the item in the reports
    pictures: Pictures | None = None
    repair: Any = None


class Fixer(Protocol):
    """Writes the repaired copy through the format's writer, item by item, as the run checks them."""

    def take(self, report: ItemReport) -> None: ...

    def finish(self) -> FixResult: ...


@dataclass
class Run:
    """What a format's checks start a run with."""

    findings: list[Finding]  # dataset-level findings known before the items are checked
    items: Iterable[Any]
    # check(item, draw=..., repair=...) -> ItemReport; picklable, so that workers can run it.
    check: Callable[..., ItemReport]
    unit: str  # what an item is, for the progress bar: "images", "tasks", "label maps"
    total: int | None = None
    # Findings that are complete only once the items have streamed by (Label Studio's export-wide id checks).
    late_findings: list[Finding] = field(default_factory=list)
    # Builds the --fix writer for this input; None where the format cannot be repaired.
    fixer: Callable[[FixRequest], Fixer] | None = None


@dataclass
class QAResult:
    input: Path
    format: str
    findings: list[Finding] = field(default_factory=list)
    # Items (images, tasks, label maps) looked at.
    checked: int = 0
    # The image file name of each image key, where the findings name another file (a panoptic PNG).
    image_names: dict[tuple[str, str], str] = field(default_factory=dict)
    # The pictures of the worst flagged items (made only when the HTML report is asked for).
    pictures: dict[tuple[str, str], Pictures] = field(default_factory=dict)
    fix: FixResult | None = None

    def count(self, at_least: Severity) -> int:
        return sum(1 for finding in self.findings if finding.severity >= at_least)
