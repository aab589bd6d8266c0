"""`segassist qa INPUT ...`: run the checks, print the summary, write the reports, optionally a fixed copy.

Exit codes: 0 when nothing at or above --fail-on was found, 1 when something was, 2 when the input could not
be read at all (or the options are unusable).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from converters import naming, overlap, registry
from converters.errors import SegassistError
from converters.io import STDOUT, Outputs, check_writable
from converters.qa.findings import Severity
from converters.qa.run import TARGETS, FixRequest, QAOptions, check

EXIT_CLEAN, EXIT_FOUND, EXIT_UNREADABLE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "qa",
        help="check a dataset (Label Studio, COCO, COCO panoptic, semantic) and report what is wrong where",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "input", type=Path, help="LS export JSON, COCO JSON, COCO panoptic JSON, or semantic folder"
    )
    parser.add_argument("--format", default="auto", choices=("auto", *registry.FORMATS))
    parser.add_argument(
        "--images", type=Path, help="folder of the image files (enables the image-size checks)"
    )
    parser.add_argument("--label-config", type=Path, help="Label Studio labeling config XML (label checks)")
    parser.add_argument(
        "--png-dir", type=Path, help="COCO panoptic PNG folder (default: the JSON path minus .json)"
    )
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="write the JSON report")
    parser.add_argument("--html", type=Path, metavar="FILE.html", help="write the HTML report with overlays")
    parser.add_argument("--fail-on", default="error", choices=("error", "warning", "never"))
    parser.add_argument(
        "--fix", type=Path, metavar="OUTPUT", help="write a repaired copy (coco, coco-panoptic)"
    )
    parser.add_argument(
        "--overlap",
        choices=overlap.POLICIES[1:],
        help="with --fix: make overlapping COCO instances exclusive with this policy",
    )
    parser.add_argument(
        "--things-over-stuff", action="store_true", help="with --overlap: things win over stuff"
    )
    parser.add_argument("--min-kept-fraction", type=float, default=0.0, help="with --overlap (default 0)")
    parser.add_argument(
        "--target",
        default="instance",
        choices=TARGETS,
        help="what the data is for: panoptic/semantic make overlapping segments an error (default instance)",
    )
    parser.add_argument("--min-area", type=int, default=10, help="segments below this many px are tiny (10)")
    parser.add_argument(
        "--alpha-threshold", type=int, default=128, help="brush alpha >= this is foreground (128)"
    )
    parser.add_argument(
        "--agreement", type=float, default=0.5, help="IoU below which annotators disagree (0.5)"
    )
    parser.add_argument(
        "--polygon-area-tolerance",
        type=float,
        default=0.01,
        help="allowed relative polygon area error (0.01)",
    )
    parser.add_argument("--bbox-tolerance", type=float, default=1.0, help="allowed COCO bbox error in px (1)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that `segassist --help` does not pay for the report modules.
    from converters.qa.html import write_html
    from converters.qa.report import terminal_summary, write_json

    options = QAOptions(
        format=args.format,
        images_dir=args.images,
        label_config=args.label_config,
        png_dir=args.png_dir,
        target=args.target,
        min_area=args.min_area,
        alpha_threshold=args.alpha_threshold,
        agreement=args.agreement,
        polygon_area_tolerance=args.polygon_area_tolerance,
        bbox_tolerance=args.bbox_tolerance,
        workers=max(1, args.workers),
    )
    # Standard output carries a report written to '-'; the messages then go to standard error.
    say = sys.stderr if STDOUT in (str(args.report), str(args.html), str(args.fix)) else sys.stdout
    with Outputs() as outputs:  # reserved (so checked) before the work, committed together at the end
        report = outputs.file(args.report) if args.report else None
        html = outputs.file(args.html) if args.html else None
        fix = None
        if args.fix:
            check_writable(args.fix)  # the format's writer reserves its outputs once the format is known
            fix = FixRequest(args.fix, outputs, args.overlap, args.things_over_stuff, args.min_kept_fraction)
        try:
            # One read of the input: the findings, the HTML pictures and the fixed copy all come from it.
            result = check(args.input, options, pictures=html is not None, fix=fix)
        except SegassistError as error:
            print(f"segassist qa: error: {error}", file=sys.stderr)
            return EXIT_UNREADABLE
        print(terminal_summary(result), file=say)
        changes = result.fix.changes if result.fix is not None else None
        if report:
            write_json(result, report, fix_changes=changes)
        if html:
            write_html(result, html)
        outputs.commit()
    if changes is not None:
        print(f"fixed copy: {args.fix} ({naming.plural(len(changes), 'change')})", file=say)
        for change in changes:
            print("  " + json.dumps(change, default=str), file=say)
    if args.report:
        print(f"JSON report: {args.report}", file=say)
    if args.html:
        print(f"HTML report: {args.html}", file=say)
    if args.fail_on == "never":
        return EXIT_CLEAN
    return EXIT_FOUND if result.count(Severity.parse(args.fail_on)) else EXIT_CLEAN
