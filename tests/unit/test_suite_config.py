"""The suite's own rules (tests/conftest.py, pytest's config in pyproject.toml), run in a child pytest on a
copy of the conftest whose ../shared/realdata does not exist."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
NEEDS_REALDATA = """
def test_reads_fixtures(realdata):
    assert realdata.is_dir()
"""
SHOWS_PROFILE = """
from hypothesis import settings

def test_profile():
    assert settings().derandomize is {expected}
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    # parents[2] of the copied conftest is pytester's base temp folder: it has no shared/realdata.
    shutil.copy(CONFTEST, pytester.path / "conftest.py")
    assert not (pytester.path.parents[1] / "shared" / "realdata").exists()
    return pytester


def test_missing_realdata_skips_with_the_reason_outside_ci(suite, monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    suite.makepyfile(NEEDS_REALDATA)
    result = suite.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*real fixtures not found at *shared/realdata*"])


@pytest.mark.parametrize("value", ["true", "1"])
def test_missing_realdata_fails_each_test_that_needs_it_under_ci(suite, monkeypatch, value) -> None:
    monkeypatch.setenv("CI", value)
    suite.makepyfile(NEEDS_REALDATA + NEEDS_REALDATA.replace("test_reads", "test_also_reads"))
    result = suite.runpytest_subprocess()
    result.assert_outcomes(errors=2)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*real fixtures not found*CI must not skip*"])


@pytest.mark.parametrize(("ci", "expected"), [("true", True), ("false", False), ("", False)])
def test_hypothesis_is_derandomized_under_ci_only(suite, monkeypatch, ci, expected) -> None:
    monkeypatch.setenv("CI", ci)
    suite.makepyfile(SHOWS_PROFILE.format(expected=expected))
    suite.runpytest_subprocess().assert_outcomes(passed=1)


def test_every_test_has_a_timeout(pytestconfig) -> None:
    assert float(pytestconfig.getini("timeout")) > 0
