"""What QA reports: the registry of checks (stable code, severity, one-line explanation) and the findings.

The registry is the one list of checks; the README table is generated from it (`checks_table_markdown`), so
the documentation cannot drift from the code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any

from converters import naming


class Severity(IntEnum):
    """Ordered so that `severity >= threshold` means "at least as bad as"."""

    INFO = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


@dataclass(frozen=True)
class Check:
    code: str
    severity: Severity
    formats: str
    explanation: str


# Short names keep the registry below a table.
_E, _W, _I = Severity.ERROR, Severity.WARNING, Severity.INFO

CHECKS: dict[str, Check] = {
    check.code: check
    for check in (
        # Structure and references, all formats.
        Check("JSON_STRUCTURE", _E, "all", "a required key is missing or has the wrong type"),
        Check("DUPLICATE_IMAGE_ID", _E, "coco, panoptic", "two images share one id"),
        Check("DUPLICATE_ANNOTATION_ID", _E, "coco, labelstudio", "two annotations share one id"),
        Check("DUPLICATE_CATEGORY_ID", _E, "coco, panoptic, semantic", "two categories share one id"),
        Check("DUPLICATE_TASK_ID", _E, "labelstudio", "two tasks share one id"),
        Check("DUPLICATE_REGION_ID", _E, "labelstudio", "two regions of one annotation share one id"),
        Check(
            "IMAGE_REF_MISSING",
            _E,
            "coco, panoptic",
            "an annotation names an image id that is not in `images`",
        ),
        Check(
            "CATEGORY_REF_MISSING", _E, "coco, panoptic", "a segment names a category id that is not listed"
        ),
        Check("CATEGORY_ID_ZERO", _W, "coco, panoptic", "category id 0 (many tools treat 0 as background)"),
        Check("IMAGE_FILE_MISSING", _E, "all (with --images)", "the image file is not in the images folder"),
        Check("IMAGE_UNREADABLE", _E, "all (with --images)", "the image file exists but cannot be opened"),
        Check(
            "IMAGE_SIZE_MISMATCH",
            _E,
            "all (with --images)",
            "the annotated width/height differ from the image file's (EXIF orientation applied)",
        ),
        # Masks and geometry.
        Check(
            "MASK_UNDECODABLE",
            _E,
            "coco, labelstudio",
            "the mask (RLE, brush RLE, bitmask PNG) does not decode",
        ),
        Check(
            "MASK_SIZE_MISMATCH",
            _E,
            "coco, labelstudio",
            "the size encoded in the mask differs from the image's",
        ),
        Check("SEGMENT_EMPTY", _E, "coco, labelstudio", "the segment covers no pixel"),
        Check("SEGMENT_TINY", _W, "all", "the segment covers fewer pixels than --min-area"),
        Check("POLYGON_TOO_FEW_POINTS", _E, "coco, labelstudio", "a polygon part has fewer than 3 points"),
        Check("POLYGON_ODD_COORDINATES", _E, "coco", "a polygon part has an odd number of coordinates"),
        Check("POLYGON_SELF_INTERSECTION", _W, "coco, labelstudio", "a polygon part crosses itself"),
        Check("POLYGON_OUT_OF_IMAGE", _W, "coco, labelstudio", "polygon points lie outside the image"),
        Check("BBOX_INVALID", _E, "coco, panoptic", "bbox is not 4 finite numbers with width and height > 0"),
        Check(
            "BBOX_MISMATCH",
            _E,
            "coco, panoptic",
            "bbox differs from the mask's tight box beyond the tolerance",
        ),
        Check(
            "AREA_MISMATCH",
            _E,
            "coco, panoptic",
            "area differs from the mask's pixel count beyond the tolerance",
        ),
        Check("ISCROWD_INVALID", _E, "coco, panoptic", "iscrowd is not the integer 0 or 1"),
        Check(
            "SEGMENTS_OVERLAP",
            _E,
            "coco, labelstudio (with --target panoptic|semantic)",
            "two segments claim the same pixels, which the target format forbids",
        ),
        # COCO panoptic.
        Check("PAN_PNG_MISSING", _E, "panoptic", "the segment PNG named by the annotation does not exist"),
        Check(
            "PAN_PNG_NOT_RGB", _E, "panoptic", "the segment PNG is not 8-bit RGB (palette, grey, 16-bit ...)"
        ),
        Check(
            "PAN_PNG_ALPHA", _W, "panoptic", "the segment PNG has an alpha channel that is not fully opaque"
        ),
        Check(
            "PAN_PNG_SIZE_MISMATCH", _E, "panoptic", "the segment PNG's size differs from the image entry's"
        ),
        Check(
            "PAN_PNG_ID_MISSING_IN_JSON", _E, "panoptic", "a non-zero id in the PNG is not in segments_info"
        ),
        Check("PAN_JSON_ID_MISSING_IN_PNG", _E, "panoptic", "a segments_info id has no pixel in the PNG"),
        Check("PAN_SEGMENT_ID_ZERO", _E, "panoptic", "segments_info uses id 0, which is void"),
        Check("PAN_SEGMENT_ID_DUPLICATE", _E, "panoptic", "segments_info lists one id twice in an image"),
        Check("PAN_IMAGE_ANNOTATED_TWICE", _E, "panoptic", "two panoptic annotations name the same image"),
        Check("PAN_IMAGE_NOT_ANNOTATED", _W, "panoptic", "an image has no panoptic annotation"),
        Check(
            "PAN_STUFF_SEVERAL_SEGMENTS", _W, "panoptic", "a stuff category has several segments in one image"
        ),
        Check("PAN_CROWD_ON_STUFF", _W, "panoptic", "iscrowd=1 on a stuff category (crowd is for things)"),
        Check("PAN_ISTHING_INVALID", _E, "panoptic", "a category lacks isthing, or it is not 0/1"),
        # Label Studio.
        Check("LS_LABEL_NOT_IN_CONFIG", _E, "labelstudio", "a region's label is not in the labeling config"),
        Check(
            "LS_CONTROL_MISMATCH",
            _E,
            "labelstudio",
            "from_name/to_name/type do not match the labeling config",
        ),
        Check("LS_REGION_NO_LABEL", _E, "labelstudio", "a region carries no label"),
        Check(
            "LS_SIZE_MISSING",
            _W,
            "labelstudio",
            "a region lacks original_width/height; its mask is not checked",
        ),
        Check("LS_SIZE_INCONSISTENT", _E, "labelstudio", "regions of one task disagree on the image size"),
        Check(
            "LS_IMAGE_ROTATION",
            _W,
            "labelstudio",
            "the image was rotated in the editor (image_rotation != 0)",
        ),
        Check(
            "LS_BRUSH_ANTIALIASED",
            _I,
            "labelstudio",
            "a brush mask has soft edges; the alpha threshold matters",
        ),
        Check(
            "LS_ANNOTATION_CANCELLED",
            _I,
            "labelstudio",
            "an annotation was cancelled (skipped) by its annotator",
        ),
        Check(
            "LS_ANNOTATORS_DISAGREE",
            _W,
            "labelstudio",
            "two annotations of a task match below --agreement IoU",
        ),
        # Semantic label maps.
        Check("SEM_PNG_MISSING", _E, "semantic", "a label map named in labelmap.json does not exist"),
        Check("SEM_PNG_SIZE_MISMATCH", _E, "semantic", "a label map's size differs from its image entry's"),
        Check(
            "SEM_PNG_NOT_SINGLE_CHANNEL", _E, "semantic", "a label map is not a single-channel 8/16-bit PNG"
        ),
        Check(
            "SEM_UNKNOWN_VALUE",
            _E,
            "semantic",
            "a label map holds a value that is neither a category nor void",
        ),
    )
}


@dataclass
class Finding:
    """One problem at one place. Location fields that do not apply stay None."""

    code: str
    message: str
    file: str | None = None
    image_id: Any = None
    file_name: str | None = None
    task_id: Any = None
    annotation_id: Any = None
    region_id: Any = None
    segment_id: Any = None
    # Numbers behind the finding (expected/actual area, pixel counts, IoU ...).
    numbers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CHECKS:
            raise KeyError(f"unknown QA code {self.code!r}: add it to converters.qa.findings.CHECKS")

    @property
    def severity(self) -> Severity:
        return CHECKS[self.code].severity

    def image_key(self) -> tuple[str, str]:
        """Which image (or task) the finding belongs to, for grouping in reports."""
        if self.task_id is not None:
            return ("task", str(self.task_id))
        if self.image_id is not None:
            return ("image", str(self.image_id))
        return ("dataset", "")

    def place(self) -> str:
        """Where inside its image or task the finding is: "annotation 3, region r1, segment 5", or ""."""
        return naming.describe(
            annotation_id=self.annotation_id, region_id=self.region_id, segment_id=self.segment_id
        )

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        numbers = record.pop("numbers")
        ordered = {"code": self.code, "severity": self.severity.label, "message": self.message}
        ordered.update((key, value) for key, value in record.items() if key not in ordered)
        ordered.update(numbers)
        return ordered


def badness(findings: list[Finding]) -> tuple[int, ...]:
    """Smaller is worse: minus the counts of errors, then warnings, then infos (how reports rank images)."""
    counts = Counter(finding.severity for finding in findings)
    return tuple(-counts[severity] for severity in reversed(Severity))


def checks_table_markdown() -> str:
    """The README table of QA codes, straight from the registry."""
    lines = ["| code | severity | formats | meaning |", "|---|---|---|---|"]
    for check in CHECKS.values():
        lines.append(f"| `{check.code}` | {check.severity.label} | {check.formats} | {check.explanation} |")
    return "\n".join(lines)
