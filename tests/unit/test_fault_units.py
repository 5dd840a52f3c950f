"""Fault handling pinned with fakes (the same faults run for real in tests/integration/test_faults.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchbed.errors import StoreError
from benchbed.targets.base import CommandResult, LineHandler
from tests.unit.test_lifecycle import hello, run_one, sample


class EngineGone(Exception):
    """Stands in for requests' ConnectionError or libvirtError: a client library's own exception type."""


class FakeKind:
    def transport_errors(self) -> tuple[type[BaseException], ...]:
        return (EngineGone,)


@pytest.fixture
def kind_with_transport_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("benchbed.lifecycle.kind", lambda name: FakeKind())


def raising(err: BaseException) -> Any:
    def script(on_line: LineHandler) -> CommandResult:
        on_line(hello())
        on_line(sample(0))
        raise err

    return script


@pytest.mark.usefixtures("kind_with_transport_errors")
def test_a_client_librarys_transport_error_is_a_failed_case(tmp_path: Path) -> None:
    cases, target, sink = run_one(raising(EngineGone("socket gone")), tmp_path)
    (record,) = sink.cases
    assert record["status"] == "failed"
    assert record["reason"] == "target 't': connection lost (EngineGone: socket gone)"
    assert target.torn_down
    assert cases.failed_targets == {"t": record["reason"]}


@pytest.mark.usefixtures("kind_with_transport_errors")
def test_a_bug_is_not_taken_for_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        run_one(raising(ZeroDivisionError("bug")), tmp_path)


@pytest.mark.usefixtures("kind_with_transport_errors")
def test_a_full_store_ends_the_run_instead_of_failing_a_case(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        run_one(raising(StoreError("results store full")), tmp_path)
