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
    suite.makepyfile(NEEDS_REALDATA + SHOWS_PROFILE.format(expected=False))
    result = suite.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1, passed=1)
    result.stdout.fnmatch_lines(["*real fixtures not found at *shared/realdata*"])


def test_missing_realdata_fails_each_test_that_needs_it_under_ci(suite, monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    twice = NEEDS_REALDATA + NEEDS_REALDATA.replace("test_reads", "test_also_reads")
    suite.makepyfile(twice + SHOWS_PROFILE.format(expected=True))
    result = suite.runpytest_subprocess()
    result.assert_outcomes(errors=2, passed=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*real fixtures not found*CI must not skip*"])


def test_ci_false_is_not_ci_for_hypothesis_either(suite, monkeypatch) -> None:
    # Hypothesis alone would take any value of CI, even "false", for a CI run.
    monkeypatch.setenv("CI", "false")
    suite.makepyfile(SHOWS_PROFILE.format(expected=False))
    suite.runpytest_subprocess().assert_outcomes(passed=1)


def test_every_test_has_a_timeout_and_slow_tests_a_longer_one(suite) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.slow
        def test_slow(request):
            assert request.node.get_closest_marker("timeout").args == (900,)

        @pytest.mark.slow
        @pytest.mark.timeout(1500)
        def test_own(request):
            assert request.node.get_closest_marker("timeout").args == (1500,)

        def test_sleeps_past_the_limit():
            import time
            time.sleep(30)
        """
    )
    result = suite.runpytest_subprocess("-p", "timeout", "-o", "timeout=2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*Timeout*"])


def test_the_suites_default_timeout_is_set(pytestconfig) -> None:
    assert float(pytestconfig.getini("timeout")) > 0
