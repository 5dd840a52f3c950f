"""BENCHBED_REQUIRE must turn skips into failures (checked with pytest's own pytester)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

pytest_plugins = ["pytester"]

BODY = """
import pytest
from tests.conftest import need

@pytest.mark.ssh
def test_needs_sshd():
    need("ssh", "no sshd here")

@pytest.mark.ssh
def test_plain_skip():
    pytest.skip("skipped some other way")
"""


@pytest.mark.parametrize(("require", "expected"), [("", {"skipped": 2}), ("ssh", {"failed": 2})])
def test_required_component_cannot_skip(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, require: str, expected: dict[str, int]
) -> None:
    monkeypatch.setenv("BENCHBED_REQUIRE", require)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makepyfile(test_x=BODY)
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-m", "ssh or not ssh", "--strict-markers", "-o", "markers=ssh"
    )
    result.assert_outcomes(**expected)
