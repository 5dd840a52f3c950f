"""Executes a plan: provision → ship agent → stream samples to disk → tear down, one instance at a time.

Every sample is written the moment its line arrives. A failing instance becomes a `failed` case with its
reason and stderr tail; the suite goes on. Ctrl-C tears down what is provisioned and marks the run incomplete.
"""

from __future__ import annotations

import json
import logging
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchbed import __version__
from benchbed.agent.build import Agent, build_agent
from benchbed.config import LoadedSuite, LocalTarget, SshTarget
from benchbed.errors import BenchbedError
from benchbed.plan import Case, Plan
from benchbed.results import RunWriter
from benchbed.targets.base import CommandResult, Session, Target, make_target

log = logging.getLogger(__name__)
TargetSpecs = dict[str, LocalTarget | SshTarget]


class Observer(Protocol):
    def started(self, plan: Plan, run_dir: Path) -> None: ...
    def case_started(self, case: Case) -> None: ...
    def case_finished(self, case: Case, record: dict[str, Any]) -> None: ...


class AgentMismatch(BenchbedError):
    """The agent that answered is not the one this run shipped."""


@dataclass
class CaseState:
    """What one agent told us while it ran."""

    case: Case
    agent_sha: str
    spawn_t: float
    writer: RunWriter
    on_fingerprint: Callable[[dict[str, Any]], None]
    ready_s: float | None = None
    samples: int = 0
    skipped: str | None = None
    error: str | None = None
    done: bool = False
    noise: list[str] = field(default_factory=list)

    def on_line(self, line: str) -> None:
        try:
            rec = json.loads(line)
            kind = rec["t"]
        except (json.JSONDecodeError, TypeError, KeyError):
            if line.strip() and len(self.noise) < 20:
                self.noise.append(line[:500])
            return
        if kind == "hello":
            self.ready_s = time.perf_counter() - self.spawn_t
            if rec.get("sha256") != self.agent_sha:
                raise AgentMismatch(
                    f"agent in target {self.case.target!r} has sha256 {rec.get('sha256')}, "
                    f"this run shipped {self.agent_sha}"
                )
        elif kind == "fingerprint":
            self.on_fingerprint(rec.get("data", {}))
        elif kind == "sample":
            c = self.case
            rec.pop("t")
            self.writer.sample(
                {
                    "target": c.target,
                    "workload": c.workload,
                    "params": c.params,
                    "instance": c.instance,
                    "case": c.index,
                    **rec,
                }
            )
            self.samples += 1
        elif kind == "skipped":
            self.skipped = str(rec.get("reason"))
        elif kind == "error":
            self.error = f"{rec.get('error')}: {rec.get('message')}"
            if rec.get("traceback"):
                self.noise.append(str(rec["traceback"]))
        elif kind == "done":
            self.done = True


def _outcome(st: CaseState, res: CommandResult, timeout: float) -> tuple[str, str | None]:
    if res.timed_out:
        return "failed", f"timed out after {timeout:g} s"
    if st.error:
        return "failed", st.error
    if res.rc != 0:
        last = (res.stderr.strip().splitlines() or ["no stderr"])[-1]
        how = f"killed by signal {-res.rc}" if res.rc < 0 else f"exited {res.rc}"
        return "failed", f"agent {how}: {last}"
    if st.skipped is not None:
        return "skipped", st.skipped
    if not st.done:
        return "failed", "agent ended without reporting 'done'"
    return "ok", None


class Runner:
    def __init__(
        self,
        loaded: LoadedSuite,
        specs: TargetSpecs,
        plan: Plan,
        out_dir: Path,
        run_id: str,
        observer: Observer | None = None,
    ) -> None:
        self.loaded = loaded
        self.specs = specs
        self.plan = plan
        self.run_dir = out_dir / run_id
        self.run_id = run_id
        self.observer = observer
        self.targets: dict[str, Target] = {}
        self.fingerprinted: set[str] = set()
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.failed_targets: dict[str, str] = {}

    def _meta(self, agent: Agent) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "benchbed_version": __version__,
            "suite": {"name": self.loaded.suite.name, "path": str(self.loaded.path), "text": self.loaded.source_text},
            "targets": {n: s.model_dump(mode="json") for n, s in self.specs.items() if n in self.plan.targets},
            "baseline": self.plan.baseline,
            "seed": self.plan.seed,
            "plan": [c.to_json() for c in self.plan.cases],
            "agent": {
                "sha256": agent.sha256,
                "size": agent.size,
                "modules": [p.name for p in self.loaded.module_paths],
            },
            "controller": {"host": platform.node(), "python": sys.version.split()[0], "argv": sys.argv},
        }

    def execute(self) -> RunWriter:
        self.run_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = self.run_dir.parent / f".{self.run_id}.agent"
        agent = build_agent(staging, self.loaded.module_paths)
        writer = RunWriter(self.run_dir, {})
        (self.run_dir / "agent.pyz").write_bytes(agent.path.read_bytes())
        agent.path.unlink()
        staging.rmdir()
        agent = Agent(self.run_dir / "agent.pyz", agent.sha256, agent.size)
        writer.update(**self._meta(agent))
        if self.observer:
            self.observer.started(self.plan, self.run_dir)
        status = "incomplete"
        try:
            for case in self.plan.cases:
                self._run_case(case, agent, writer)
            status = "complete"
        finally:
            writer.finish(status, counts=self.counts, failed_targets=self.failed_targets)
        return writer

    def _target(self, name: str) -> Target:
        if name not in self.targets:
            self.targets[name] = make_target(name, self.specs[name], self.run_id)
        return self.targets[name]

    def _run_case(self, case: Case, agent: Agent, writer: RunWriter) -> None:
        if self.observer:
            self.observer.case_started(case)
        spec = self.specs[case.target]
        t0 = time.perf_counter()
        record: dict[str, Any] = {
            "case": case.index,
            "target": case.target,
            "workload": case.workload,
            "params": case.params,
            "instance": case.instance,
        }
        phases: dict[str, float] = {}
        try:
            target = self._target(case.target)
            with target.provision() as session:
                phases.update(target.startup_phases())
                status, reason, extra = self._in_session(case, session, agent, writer, spec, phases)
        except BenchbedError as err:
            status, reason, extra = "failed", str(err), {}
        phases["total"] = time.perf_counter() - t0
        record.update(status=status, reason=reason, phases=phases, wall_s=phases["total"], **extra)
        self.counts[status] += 1
        if status == "failed":
            self.failed_targets.setdefault(case.target, reason or "failed")
        writer.case(record)
        if self.observer:
            self.observer.case_finished(case, record)

    def _in_session(
        self,
        case: Case,
        session: Session,
        agent: Agent,
        writer: RunWriter,
        spec: LocalTarget | SshTarget,
        phases: dict[str, float],
    ) -> tuple[str, str | None, dict[str, Any]]:
        t0 = time.perf_counter()
        remote = f"{session.workdir}/agent.pyz"
        session.put(agent.path, remote)
        phases["put_agent"] = time.perf_counter() - t0
        want_fp = case.target not in self.fingerprinted
        payload = {
            "workload": case.workload,
            "params": case.params,
            "instance": case.instance,
            "repetitions": case.repetitions,
            "warmup": case.warmup,
            "fingerprint": want_fp,
            "scratch_dir": spec.scratch_dir or f"{session.workdir}/scratch",
            "expect_sha256": agent.sha256,
        }

        def on_fp(data: dict[str, Any]) -> None:
            writer.env(case.target, {"kind": spec.kind, **data})
            self.fingerprinted.add(case.target)

        st = CaseState(case, agent.sha256, time.perf_counter(), writer, on_fp)
        argv = [spec.python, remote, "run", json.dumps(payload, separators=(",", ":"))]
        log.debug("case %d: %s", case.index, shlex.join(argv))
        try:
            res = session.stream(argv, st.on_line, timeout=case.timeout_s)
        except AgentMismatch as err:
            return "failed", str(err), {}
        if st.ready_s is not None:
            phases["agent_ready"] = st.ready_s
        status, reason = _outcome(st, res, case.timeout_s)
        extra: dict[str, Any] = {"samples": st.samples, "rc": res.rc}
        if status == "failed":
            extra["stderr_tail"] = (res.stderr[-4000:] + "\n".join(st.noise))[-8000:]
        return status, reason, extra
