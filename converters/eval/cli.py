"""`segassist eval GT PRED`: PQ/SQ/RQ, mask AP and mIoU between two datasets in any of the formats.

Prints a per-class table; --json writes the scores in a fixed layout (fractions between 0 and 1), --html a
report with the images that scored lowest. Exit codes: 0 done, 2 when the input cannot be evaluated
(unreadable, categories that differ, images on one side only, sizes that differ).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converters import overlap
from converters.errors import SegassistError
from converters.eval.inputs import COCO_RESULTS, FITS
from converters.eval.run import METRICS, WORST_IMAGES, EvalOptions, evaluate
from converters.io import Outputs

EXIT_OK, EXIT_UNUSABLE = 0, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure quality: PQ/SQ/RQ, mask AP and mIoU between ground truth and predictions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "gt", type=Path, help="ground truth: LS export, COCO, COCO panoptic JSON or semantic folder"
    )
    parser.add_argument(
        "pred", type=Path, help="predictions: the same formats, or a COCO results list (for AP)"
    )
    formats = tuple(FITS)
    parser.add_argument(
        "--gt-format", choices=[f for f in formats if f != COCO_RESULTS], help="default: detected"
    )
    parser.add_argument("--pred-format", choices=formats, help="default: detected")
    parser.add_argument(
        "--metrics",
        type=lambda text: tuple(part.strip() for part in text.split(",") if part.strip()),
        help=f"comma-separated, of {','.join(METRICS)} (default: whichever fit both formats)",
    )
    parser.add_argument(
        "--category-map",
        type=Path,
        metavar="FILE",
        help="JSON object mapping PRED category names to GT names (null leaves a category out)",
    )
    parser.add_argument(
        "--overlap",
        choices=overlap.POLICIES,
        default="order",
        help="who owns a pixel two segments of an instance format claim, for PQ and mIoU (default: order)",
    )
    parser.add_argument("--alpha-threshold", type=int, default=128, help="brush alpha >= this is foreground")
    parser.add_argument("--workers", type=int, default=1, help="threads loading and counting image pairs")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the scores as JSON")
    parser.add_argument(
        "--html", type=Path, metavar="FILE", help=f"write an HTML report ({WORST_IMAGES} worst images)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options = EvalOptions(
        gt_format=args.gt_format,
        pred_format=args.pred_format,
        metrics=args.metrics,
        category_map=args.category_map,
        overlap=args.overlap,
        workers=max(1, args.workers),
        alpha_threshold=args.alpha_threshold,
    )
    from converters.eval.report import text_report, to_json

    try:
        with Outputs() as outputs:  # reserved (so checked) before the work, committed together at the end
            json_path = outputs.file(args.json) if args.json else None
            result = evaluate(args.gt, args.pred, options)
            scores = result.to_dict()
            print(text_report(scores), end="")
            if json_path is not None:
                json_path.write_text(to_json(scores))
            outputs.commit()
    except SegassistError as error:
        print(f"segassist eval: error: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    return EXIT_OK
