"""The SAM family's module structure: SAM and SAM 2 share `sam_family` and import neither each other nor
anything above them, not even inside a function."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ENGINES = "ml_backend.engines"


def _imports(module: str) -> set[str]:
    """Every module that `module`'s source imports, at any depth of its code (functions included)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            # `from ml_backend.engines import sam2_engine` imports a module by its attribute name.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


# What each module may import from the backend: the engine interface, the torch helpers and (for the two
# engines) the family module. Nothing else of ml_backend: no sibling engine, no registry, nothing above.
BELOW = {f"{ENGINES}.base", f"{ENGINES}.torch_utils"}


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        (f"{ENGINES}.sam_family", BELOW),
        (f"{ENGINES}.sam", BELOW | {f"{ENGINES}.sam_family"}),
        (f"{ENGINES}.sam2_engine", BELOW | {f"{ENGINES}.sam_family"}),
    ],
)
def test_sam_modules_import_no_sibling_and_nothing_above(module: str, allowed: set[str]) -> None:
    backend = {name for name in _imports(module) if name.split(".")[0] == "ml_backend"}
    outside = {name for name in backend if not any(name == ok or name.startswith(f"{ok}.") for ok in allowed)}
    assert outside == set()


def test_both_engines_build_on_the_family_module() -> None:
    assert f"{ENGINES}.sam_family" in _imports(f"{ENGINES}.sam")
    assert f"{ENGINES}.sam_family" in _imports(f"{ENGINES}.sam2_engine")
