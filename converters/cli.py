"""`segassist` command line: one parser, subcommands registered by their own modules.

Each command module has `register(subparsers)`, which adds its subparser and sets `handler` to a function
taking the parsed arguments and returning the exit code. Commands outside `converters` (the ML backend's
`serve`, `weights`) register through the `segassist.commands` entry-point group, so this package never
imports them by name.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import entry_points

from converters.errors import SegassistError

# Modules inside `converters` that provide commands (each has a `register(subparsers)` function).
BUILTIN_COMMANDS: tuple[str, ...] = (
    "converters.convert",
    "converters.lsconfig_cli",
    "converters.qa.cli",
    "converters.eval.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segassist",
        description="Segmentation pre-labeling for Label Studio, dataset conversion and QA.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in BUILTIN_COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    for entry in sorted(entry_points(group="segassist.commands"), key=lambda e: e.name):
        entry.load()(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SegassistError as error:
        print(f"segassist {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
