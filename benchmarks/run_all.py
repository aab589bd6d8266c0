"""Run the benchmarks in this folder and write their sections of BENCHMARKS.md from the fresh run.

Each benchmark module prints its Markdown section (a table of medians and ratios against a peer measured in
the same run) when run as a script; each runs in a process of its own, as a server or a command would, so no
benchmark inherits another's threads, heap or caches. `python benchmarks/run_all.py codecs` reruns one
section and keeps the others as they were. `python benchmarks/run_all.py --quick [NAME ...]` runs the quick
modes (small inputs, one call per side: every "same output" check, no meaningful times), prints them and
writes nothing; the test suite runs it, so a broken equality fails CI.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "BENCHMARKS.md"
# Order of sections in BENCHMARKS.md.
MODULES = ("codecs", "convert", "qa", "eval", "backend", "sam", "sam_prompts", "prelabel")
# Modules whose script takes `--quick` (timing.main).
QUICK_MODULES = ("codecs", "convert", "qa", "eval")
HEADER = (
    "# Benchmarks\n\n"
    "Written by `make bench`. Every figure is a ratio against a peer run in the same process and session,\n"
    "so it travels between machines better than the absolute times, which are given for scale.\n"
)


def _section_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    known = QUICK_MODULES if quick else MODULES
    wanted = [name for name in argv if name != "--quick"] or list(known)
    unknown = set(wanted) - set(known)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    if quick:
        for name in wanted:
            subprocess.run([sys.executable, str(HERE / f"{name}.py"), "--quick"], check=True)
        return 0
    previous = TARGET.read_text() if TARGET.exists() else ""
    sections = {}
    for name in MODULES:
        found = _section_pattern(name).search(previous)
        sections[name] = found.group(0) if found else ""
    for name in wanted:
        print(f"running benchmarks/{name}.py ...", flush=True)
        stamp = (
            f"_Run {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}._\n\n"
        )
        body = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py")], stdout=subprocess.PIPE, text=True, check=True
        ).stdout
        sections[name] = f"<!-- bench:{name} -->\n{stamp}{body.strip()}\n<!-- /bench:{name} -->"
    text = HEADER + "".join(f"\n{sections[name]}\n" for name in MODULES if sections[name])
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
