"""Shared test plumbing.

`BENCHBED_REQUIRE=ssh,docker,libvirt` (set by .ci/run) turns "component absent → skip" into a failure, so CI
cannot go green by skipping the real thing. Integration tests call `need(component, reason)` instead of
pytest.skip when a real component is missing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def required() -> set[str]:
    return {c.strip() for c in os.environ.get("BENCHBED_REQUIRE", "").split(",") if c.strip()}


def need(component: str, reason: str) -> None:
    """Skip because `component` is unavailable — or fail if BENCHBED_REQUIRE says it must be there."""
    if component in required():
        pytest.fail(f"{component} is required (BENCHBED_REQUIRE) but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{component} unavailable: {reason}")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Any skip of a test whose marker names a required component becomes a failure, however it skipped."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped:
        return
    hit = sorted(m.name for m in item.iter_markers() if m.name in required())
    if hit:
        report.outcome = "failed"
        report.longrepr = f"skipped, but BENCHBED_REQUIRE includes {', '.join(hit)}: {report.longrepr}"


def interruptible() -> None:
    """preexec_fn for a `benchbed run` a test will Ctrl-C: a shell's background job starts with SIGINT ignored
    (POSIX), and Python keeps it ignored, so restore the default to let the child get its KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _signal_handlers_put_back() -> Iterator[None]:
    """Every test leaves SIGINT and SIGTERM as it found them. A handler left installed (a held section never
    closed, a runner that did not restore its own) swallows a later test's Ctrl-C far from where it leaked."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    after = {s: signal.getsignal(s) for s in before}
    assert after == before, f"signal handlers changed by this test: {before} -> {after}"
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask, "this test left signals blocked in the main thread"
