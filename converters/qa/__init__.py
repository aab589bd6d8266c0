"""Dataset QA: checks with stable codes for Label Studio, COCO instance, COCO panoptic and semantic datasets.

Python API: `check(path, QAOptions(...)) -> QAResult` (its `.findings`), `converters.qa.fix.fix(path, output,
...)` for a repaired copy; the registry of checks is `CHECKS`.
"""

from converters.qa.findings import CHECKS, Finding, Severity
from converters.qa.run import QAOptions, QAResult, check

__all__ = ["CHECKS", "Finding", "QAOptions", "QAResult", "Severity", "check"]
