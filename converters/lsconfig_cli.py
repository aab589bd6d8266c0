"""`segassist ls-config CATEGORIES [-o FILE] [--control TYPE]`: a labeling config from a category file.

It writes an `<Image>` plus one labels control whose names and colours come from the categories, with the same
control and image names (`tag`, `image`) that `segassist convert --to labelstudio` writes by default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converters.formats.common import read_categories_file
from converters.io import write_text
from converters.lsconfig import DEFAULT_FROM_NAME, DEFAULT_TO_NAME, WRITABLE_TYPES, label_config_xml


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ls-config",
        help="write a Label Studio labeling config from a category file",
        description="Write a Label Studio labeling config (labels with names and colours) from a COCO-style "
        "category list (JSON list or a COCO file with `categories`).",
    )
    parser.add_argument("categories", type=Path, help="category file (id, name, isthing, color)")
    parser.add_argument("-o", "--output", type=Path, help="config file to write (default: standard output)")
    parser.add_argument("--control", choices=WRITABLE_TYPES, default="brushlabels")
    parser.add_argument("--from-name", default=DEFAULT_FROM_NAME, help="name of the labels control")
    parser.add_argument("--to-name", default=DEFAULT_TO_NAME, help="name of the Image tag")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    xml = label_config_xml(
        read_categories_file(args.categories),
        control_type=args.control,
        from_name=args.from_name,
        to_name=args.to_name,
    )
    if args.output is None:
        sys.stdout.write(xml)
        return 0
    write_text(args.output, xml)
    return 0
