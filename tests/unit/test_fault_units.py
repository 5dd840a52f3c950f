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


def test_a_short_write_is_continued_and_a_failed_one_cut_back_to_the_last_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import json
    import os

    from benchbed.results import JsonlAppender

    path = tmp_path / "samples.jsonl"
    app = JsonlAppender(path)
    app.append({"n": 1})
    real_write = os.write
    calls = {"n": 0}

    def flaky(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:3]))  # a short write: the rest must follow
        if calls["n"] == 3:
            real_write(fd, bytes(data[:5]))  # half a line reaches the disk, then it is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("benchbed.results.os.write", flaky)
    app.append({"n": 2})
    with pytest.raises(StoreError, match=r"^results store full: .*samples.jsonl: No space left on device"):
        app.append({"n": 3, "pad": "x" * 100})
    monkeypatch.undo()
    app.append({"n": 4})  # space came back: the next line follows the last complete one
    app.close()
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [1, 2, 4]


def test_results_files_follow_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from benchbed.results import RunWriter

    monkeypatch.setattr("benchbed.fileio.UMASK", 0o077)
    old = os.umask(0o077)
    try:
        writer = RunWriter(tmp_path / "run", {"x": 1})
        writer.sample({"a": 1})
        writer.finish("complete")
    finally:
        os.umask(old)
    for name in ("run.json", "samples.jsonl", "cases.jsonl"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o600, name
    assert not (tmp_path / "run" / ".reserve").exists()


def test_a_recorded_spec_keeps_env_keys_and_only_safe_values() -> None:
    from benchbed.targets.docker import DockerTarget

    spec = DockerTarget(kind="docker", image="i", env={"API_TOKEN": "t0k", "MODE": "fast"}, env_safe=["MODE"])
    recorded = spec.recorded()
    assert recorded["env"] == {"API_TOKEN": "<redacted>", "MODE": "fast"}
    assert "t0k" not in repr(recorded)
    assert spec.env["API_TOKEN"] == "t0k"  # the container still gets it


def test_resume_names_the_first_difference_of_two_specs() -> None:
    from benchbed.resume import _first_difference

    was = {"kind": "docker", "image": "a", "env": {"MODE": "fast", "K": "<redacted>"}}
    assert _first_difference(was, dict(was)) is None
    assert _first_difference(was, {**was, "image": "b"}) == "image"
    assert _first_difference(was, {**was, "env": {"MODE": "slow", "K": "<redacted>"}}) == "env.MODE"
    assert _first_difference(was, {**was, "cpus": 2}) == "cpus"
