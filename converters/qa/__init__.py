"""Dataset QA: checks with stable codes for Label Studio, COCO instance, COCO panoptic and semantic datasets.

Python API: `check(path, QAOptions(...)) -> QAResult` (its `.findings`); `check(..., fix=FixRequest(...))`
also writes a repaired copy through the format's writer, in the same read. The registry of codes is `CHECKS`;
the checks of each format are found through `converters.registry`.
"""

from converters.qa.core import FixRequest, QAOptions, QAResult
from converters.qa.findings import CHECKS, Finding, Severity
from converters.qa.run import check

__all__ = ["CHECKS", "Finding", "FixRequest", "QAOptions", "QAResult", "Severity", "check"]
