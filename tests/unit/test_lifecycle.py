"""The case lifecycle against a scripted fake session: outcomes, timeouts, agent death, interrupt — in milliseconds.

The same paths run end to end against real targets in tests/integration; here each branch is pinned exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from benchbed.agent.build import Agent
from benchbed.lifecycle import Cases
from benchbed.plan import Case
from benchbed.protocol import PROTOCOL, Line, Sample, encode
from benchbed.targets.base import CommandResult, LineHandler, SessionImpl, TargetImpl
from benchbed.targets.local import LocalTarget

SHA = "a" * 64
Script = Callable[[LineHandler], CommandResult]


def hello(protocol: int = PROTOCOL, sha: str = SHA) -> str:
    return encode(Line.HELLO, protocol=protocol, agent="test", sha256=sha, pid=1, python="3")


def sample(i: int) -> str:
    return encode(Line.SAMPLE, **Sample("m", float(i), "s", "lower", repetition=i).to_json())


def result(rc: int = 0, *, timed_out: bool = False, stderr: str = "") -> CommandResult:
    return CommandResult(("python3",), rc, "", stderr, 0.01, timed_out)


class FakeSession(SessionImpl):
    def __init__(self, script: Script) -> None:
        self.workdir = "/fake"
        self.script = script
        self.aborted = False
        self.put_to: list[str] = []

    def put(self, local: Path, remote: str) -> None:
        self.put_to.append(remote)

    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        return self.script(on_line)

    def abort(self) -> None:
        self.aborted = True


class FakeTarget(TargetImpl):
    def __init__(self, session: FakeSession) -> None:
        super().__init__("t", LocalTarget(), "run")
        self.session = session
        self.torn_down = False

    @contextmanager
    def provision(self) -> Iterator[FakeSession]:
        self._clock.add("create", 0.001)
        try:
            yield self.session
        finally:
            self.torn_down = True


class Sink:
    def __init__(self) -> None:
        self.samples: list[dict[str, Any]] = []
        self.cases: list[dict[str, Any]] = []
        self.envs: dict[str, dict[str, Any]] = {}

    def sample(self, record: dict[str, Any]) -> None:
        self.samples.append(record)

    def case(self, record: dict[str, Any]) -> None:
        self.cases.append(record)

    def env(self, target: str, data: dict[str, Any]) -> None:
        self.envs[target] = data


def run_one(script: Script, tmp_path: Path) -> tuple[Cases, FakeTarget, Sink]:
    target = FakeTarget(FakeSession(script))
    cases = Cases({"t": LocalTarget()}, "run", Agent(tmp_path / "agent.pyz", SHA, 1), None)
    cases.targets["t"] = target
    sink = Sink()
    cases.run(Case(0, "t", "w", {}, 0, 3, 0, 7.0), sink)
    return cases, target, sink


def lines(*text: str, end: CommandResult | None = None) -> Script:
    def script(on_line: LineHandler) -> CommandResult:
        for line in text:
            on_line(line)
        return end or result()

    return script


def test_ok_case_writes_samples_with_their_case_and_phases(tmp_path: Path) -> None:
    fp = encode(Line.FINGERPRINT, data={"kernel": "k"})
    cases, target, sink = run_one(lines(hello(), fp, sample(0), sample(1), encode(Line.DONE)), tmp_path)
    (record,) = sink.cases
    assert (record["status"], record["samples"], record["reason"]) == ("ok", 2, None)
    assert {"create", "put_agent", "agent_ready", "workload", "teardown", "total"} <= set(record["phases"])
    assert [(s["target"], s["case"], s["repetition"]) for s in sink.samples] == [("t", 0, 0), ("t", 0, 1)]
    assert sink.envs["t"] == {"kind": "local", "kernel": "k"}
    assert target.torn_down
    assert cases.counts == {"ok": 1, "skipped": 0, "failed": 0}


def test_timeout_is_a_failed_case_naming_the_limit(tmp_path: Path) -> None:
    _, target, sink = run_one(lines(hello(), sample(0), end=result(-9, timed_out=True)), tmp_path)
    assert (sink.cases[0]["status"], sink.cases[0]["reason"]) == ("failed", "timed out after 7 s")
    assert target.torn_down


def test_agent_death_names_the_signal_and_keeps_stderr(tmp_path: Path) -> None:
    _, _, sink = run_one(lines(hello(), sample(0), end=result(-9, stderr="Killed\n")), tmp_path)
    (record,) = sink.cases
    assert (record["status"], record["reason"]) == ("failed", "agent killed by signal 9: Killed")
    assert "Killed" in record["stderr_tail"]
    assert len(sink.samples) == 1  # what arrived before the death is kept


def test_agent_without_done_is_failed(tmp_path: Path) -> None:
    _, _, sink = run_one(lines(hello(), "a stray print", sample(0)), tmp_path)
    assert sink.cases[0]["reason"] == "agent ended without reporting 'done'"
    assert "a stray print" in sink.cases[0]["stderr_tail"]


@pytest.mark.parametrize(
    ("first", "why"),
    [(hello(protocol=PROTOCOL + 1), "speaks protocol"), (hello(sha="b" * 64), "this run shipped")],
)
def test_another_agent_is_refused(first: str, why: str, tmp_path: Path) -> None:
    _, _, sink = run_one(lines(first, sample(0), encode(Line.DONE)), tmp_path)
    assert sink.cases[0]["status"] == "failed"
    assert why in sink.cases[0]["reason"]
    assert sink.samples == []


def test_interrupt_aborts_the_session_and_writes_no_case(tmp_path: Path) -> None:
    holder: dict[str, Cases] = {}

    def script(on_line: LineHandler) -> CommandResult:
        on_line(hello())
        on_line(sample(0))
        holder["cases"].stop()  # Ctrl-C, or a bug in another lane
        on_line(sample(1))  # the lifecycle notices at the next line
        raise AssertionError("not reached")

    target = FakeTarget(FakeSession(script))
    cases = Cases({"t": LocalTarget()}, "run", Agent(tmp_path / "agent.pyz", SHA, 1), None)
    holder["cases"] = cases
    cases.targets["t"] = target
    sink = Sink()
    cases.run(Case(0, "t", "w", {}, 0, 3, 0, 7.0), sink)
    assert target.session.aborted
    assert target.torn_down
    assert sink.cases == []  # an interrupted instance leaves no case record
    assert len(sink.samples) == 1


def test_stack_line_gives_the_case_its_digest_and_env_each_distinct_stack(tmp_path: Path) -> None:
    fp = encode(Line.FINGERPRINT, data={"kernel": "k"})
    record = {"digest": "d1", "files": {"/usr/bin/python3": "aa"}, "driver": {"/usr/lib/libcuda.so.1": "cc"}}
    stack = encode(Line.STACK, data=record, seconds=0.25)
    _, _, sink = run_one(lines(hello(), fp, sample(0), stack, encode(Line.DONE)), tmp_path)
    (case,) = sink.cases
    assert case["stack_digest"] == "d1"
    assert case["driver_digest"] is not None
    assert case["phases"]["stack_digest"] == 0.25
    assert sink.envs["t"]["stacks"] == {"d1": record}
    assert sink.envs["t"]["kernel"] == "k"
