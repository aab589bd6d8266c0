"""`segassist eval GT PRED`: PQ/SQ/RQ, mask AP and mIoU between two datasets in any of the formats.
`segassist eval EXPORT.json --predictions-vs-annotations`: how much annotators changed the pre-labels.
`segassist eval EXPORT.json --annotators`: PQ between the annotators of the same tasks.

Prints a per-class table; --json writes the scores in a fixed layout (fractions between 0 and 1), --html a
report with the image pairs that scored lowest (in the export modes: tasks, prediction or annotator beside
the annotation or the other annotator). Exit codes: 0 done, 2 when the input cannot be evaluated
(unreadable, categories that differ, images on one side only, sizes that differ).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converters import overlap
from converters.allocator import keep_freed_memory
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
        "pred",
        type=Path,
        nargs="?",
        help="predictions: the same formats, or a COCO results list (for AP); none with the export modes",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--predictions-vs-annotations",
        action="store_true",
        help="GT is a Label Studio export: compare each task's predictions with its final annotation",
    )
    mode.add_argument(
        "--annotators", action="store_true", help="GT is a Label Studio export: PQ between its annotators"
    )
    parser.add_argument("--model-version", help="with --predictions-vs-annotations: only this model_version")
    parser.add_argument("--label-config", type=Path, help="Label Studio labeling config (the label list)")
    parser.add_argument(
        "--images", type=Path, help="image folder, for Label Studio tasks whose size is unknown"
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
    export_mode = args.predictions_vs_annotations or args.annotators
    if export_mode == (args.pred is not None):
        print(
            "segassist eval: error: give GT and PRED, or one Label Studio export with "
            "--predictions-vs-annotations or --annotators",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    options = EvalOptions(
        gt_format=args.gt_format,
        pred_format=args.pred_format,
        metrics=args.metrics,
        category_map=args.category_map,
        overlap=args.overlap,
        workers=max(1, args.workers),
        alpha_threshold=args.alpha_threshold,
        label_config=args.label_config,
        images=args.images,
    )
    keep_freed_memory()  # each pair's id maps reuse the last pair's memory (before the threads exist)
    from converters.eval.acceptance import annotator_agreement, predictions_vs_annotations
    from converters.eval.report import acceptance_report, agreement_report, text_report, to_json

    try:
        with Outputs() as outputs:  # reserved (so checked) before the work, committed together at the end
            json_path = outputs.file(args.json) if args.json else None
            html_path = outputs.file(args.html) if args.html else None
            if export_mode:
                if args.predictions_vs_annotations:
                    exported = predictions_vs_annotations(
                        args.gt,
                        model_version=args.model_version,
                        reading=options.reading(),
                        workers=options.workers,
                        worst=options.worst,
                    )
                    print(acceptance_report(exported.scores), end="")
                else:
                    exported = annotator_agreement(
                        args.gt, reading=options.reading(), workers=options.workers, worst=options.worst
                    )
                    print(agreement_report(exported.scores), end="")
                scores = exported.scores
                if html_path is not None:
                    from converters.eval.html import write_export_html

                    write_export_html(exported, args.images, html_path)
            else:
                result = evaluate(args.gt, args.pred, options)
                scores = result.to_dict()
                print(text_report(scores), end="")
                if html_path is not None:
                    from converters.eval.html import write_html

                    write_html(result, options, html_path)
            if json_path is not None:
                json_path.write_text(to_json(scores))
            outputs.commit()
    except SegassistError as error:
        print(f"segassist eval: error: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    return EXIT_OK
