"""`segassist serve` and `segassist weights`: registered into the `segassist` parser by entry points."""

from __future__ import annotations

import argparse


def register_serve(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the Label Studio ML backend")
    parser.set_defaults(handler=_not_built)


def register_weights(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="list or download model weights")
    parser.set_defaults(handler=_not_built)


def _not_built(args: argparse.Namespace) -> int:
    raise SystemExit(f"segassist {args.command}: not built yet")
