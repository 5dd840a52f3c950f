"""Executes a plan: provision → ship agent → stream samples to disk → tear down, one instance at a time.

Every sample is written the moment its line arrives. A failing instance becomes a `failed` case with its
reason and stderr tail; the suite goes on. Ctrl-C tears down what is provisioned and marks the run incomplete.

With `parallel > 1` the plan is split into lanes, one per machine (an SSH host:port; everything that runs on
the controller — local, docker, libvirt — shares one lane, run on the main thread). Lanes run concurrently,
each in plan order, so two instances never share a machine; writes and progress callbacks are serialized.
"""

from __future__ import annotations

import json
import logging
import platform
import shlex
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchbed import __version__
from benchbed.agent.build import Agent, build_agent
from benchbed.config import AnyTarget, LoadedSuite
from benchbed.errors import BenchbedError, ResultsFormatError
from benchbed.interrupts import held_signals
from benchbed.pilot import assess
from benchbed.plan import Case, Plan, make_plan
from benchbed.results import RunWriter, load_run
from benchbed.targets.base import CommandResult, Session, Target, kind_class, make_target

log = logging.getLogger(__name__)
TargetSpecs = dict[str, AnyTarget]
CONTROLLER = "controller"
JOIN_GRACE_S = 60.0  # after Ctrl-C: how long lanes get to kill their remote agents and remove workdirs


class Observer(Protocol):
    def started(self, plan: Plan, run_dir: Path) -> None: ...
    def case_started(self, case: Case) -> None: ...
    def case_finished(self, case: Case, record: dict[str, Any]) -> None: ...


class AgentMismatch(BenchbedError):
    """The agent that answered is not the one this run shipped."""


class Interrupted(BenchbedError):
    """The run is stopping (Ctrl-C, or a bug in another lane): this lane ends its case early."""


class Sink(Protocol):
    def sample(self, record: dict[str, Any]) -> None: ...
    def case(self, record: dict[str, Any]) -> None: ...
    def env(self, target: str, data: dict[str, Any]) -> None: ...


class SerialSink:
    """RunWriter behind a lock, for lanes in threads. After close() writes are dropped: a lane that outlived
    the grace period must never write into a file descriptor the OS has handed to someone else."""

    def __init__(self, writer: RunWriter) -> None:
        self.writer = writer
        self.lock = threading.Lock()
        self.closed = False

    def sample(self, record: dict[str, Any]) -> None:
        with self.lock:
            if not self.closed:
                self.writer.sample(record)

    def case(self, record: dict[str, Any]) -> None:
        with self.lock:
            if not self.closed:
                self.writer.case(record)

    def env(self, target: str, data: dict[str, Any]) -> None:
        with self.lock:
            if not self.closed:
                self.writer.env(target, data)

    def close(self) -> None:
        with self.lock:
            self.closed = True


def lane_of(spec: Any) -> str:
    """The machine a target runs on: its SSH endpoint, or the controller for everything hosted here."""
    host = getattr(spec, "host", None)
    return f"{host}:{getattr(spec, 'port', '')}" if host else CONTROLLER


@dataclass
class CaseState:
    """What one agent told us while it ran."""

    case: Case
    agent_sha: str
    spawn_t: float
    writer: Sink
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
    if res.rc != 0 and res.reason:  # the target knows why (OOM-killed, container stopped): say that
        return "failed", res.reason
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
        parallel: int = 1,
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
        self.parallel = max(1, parallel)
        self.live: dict[str, Session] = {}  # the journal: target → session provisioned right now
        self._lock = threading.RLock()  # counts, journal, observer
        self._stop = threading.Event()
        # Every target's implementation (with its optional dependency) loads before the first case: a missing
        # binding is one line and exit 2 up front, not a column of failed instances after the baseline ran.
        for name in plan.targets:
            kind_class(name, specs[name])

    def _meta(self, agent: Agent) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "benchbed_version": __version__,
            "suite": {"name": self.loaded.suite.name, "path": str(self.loaded.path), "text": self.loaded.source_text},
            "targets": {n: s.model_dump(mode="json") for n, s in self.specs.items() if n in self.plan.targets},
            "baseline": self.plan.baseline,
            "seed": self.plan.seed,
            "parallel": self.parallel,
            "plan": [c.to_json() for c in self.plan.cases],
            "agent": {
                "sha256": agent.sha256,
                "size": agent.size,
                "modules": [p.name for p in self.loaded.module_paths],
                "bundles": {name: str(path) for name, path in sorted(self.loaded.bundles.items())},
            },
            "controller": {"host": platform.node(), "python": sys.version.split()[0], "argv": sys.argv},
        }

    def execute(self) -> RunWriter:
        try:
            self.run_dir.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ResultsFormatError(
                f"{self.run_dir.parent}: cannot create the results store ({err.strerror or err})",
                hint="pick another --out",
            ) from err
        status = "incomplete"
        writer: RunWriter | None = None
        sink: SerialSink | None = None
        try:
            with held_signals():  # an interrupt during setup lands once the run exists, so it ends up marked
                staging = self.run_dir.parent / f".{self.run_id}.agent"
                agent = build_agent(staging, self.loaded.module_paths, self.loaded.bundles)
                writer = RunWriter(self.run_dir, {})
                (self.run_dir / "agent.pyz").write_bytes(agent.path.read_bytes())
                agent.path.unlink()
                staging.rmdir()
                agent = Agent(self.run_dir / "agent.pyz", agent.sha256, agent.size)
                writer.update(**self._meta(agent))
                sink = SerialSink(writer)
            if self.observer:
                self.observer.started(self.plan, self.run_dir)
            self._run_cases(self.plan.cases, agent, sink)
            if self.plan.pilot and not self._stop.is_set():
                rest = self._after_pilot(writer)
                self._run_cases(rest, agent, sink)
            status = "complete"
        finally:
            with held_signals():  # a second Ctrl-C or SIGTERM waits until targets are released and the run marked
                if sink is not None:
                    sink.close()
                self.close_targets()
                if writer is not None:
                    writer.finish(status, counts=self.counts, failed_targets=self.failed_targets)
        return writer

    def _run_cases(self, cases: list[Case], agent: Agent, sink: Sink) -> None:
        if self.parallel > 1:
            self._run_lanes(agent, sink, cases)
        else:
            for case in cases:
                self._run_case(case, agent, sink)

    def _after_pilot(self, writer: RunWriter) -> list[Case]:
        """`instances: auto`: the pilot (the plan so far) has run on the baseline; choose N per case from its
        noise, plan the remaining instances of every target, and record both in run.json."""
        pilot = self.plan
        suite = self.loaded.suite
        samples = load_run(self.run_dir).samples
        assessed = assess(samples[samples["target"] == pilot.baseline], suite, pilot.pilot)
        rest = make_plan(
            suite,
            list(self.specs),
            seed=pilot.seed,
            only=pilot.only,
            instances_per_key={k: c.instances for k, c in assessed.items()},
            done=dict.fromkeys(pilot.pilot, suite.defaults.pilot_instances),  # pilot instances count
            first_index=len(pilot.cases),
        )
        self.plan = Plan([*pilot.cases, *rest.cases], pilot.seed, pilot.targets, pilot.baseline, [], pilot.only)
        writer.update(plan=[c.to_json() for c in self.plan.cases], pilot={k: c.to_json() for k, c in assessed.items()})
        replanned = getattr(self.observer, "replanned", None)
        if callable(replanned):
            with self._lock:
                replanned(self.plan)
        return rest.cases

    def close_targets(self) -> None:
        """Targets may hold controller-side resources for the whole run (an engine client): an optional
        `close()` releases them once the run is over."""
        for name, target in self.targets.items():
            close = getattr(target, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as err:  # teardown of one target must not hide the run's outcome
                    log.warning("target %r: close failed: %s", name, err)

    def lanes(self, cases: list[Case] | None = None) -> dict[str, list[Case]]:
        """Cases grouped by machine, each lane in plan order; lanes in order of first appearance."""
        out: dict[str, list[Case]] = {}
        for case in self.plan.cases if cases is None else cases:
            out.setdefault(lane_of(self.specs[case.target]), []).append(case)
        return out

    def _run_lanes(self, agent: Agent, sink: Sink, cases: list[Case]) -> None:
        lanes = self.lanes(cases)
        here = lanes.pop(CONTROLLER, [])
        queue = deque(lanes.values())
        errors: list[BaseException] = []

        def work() -> None:
            while not self._stop.is_set():
                with self._lock:
                    if not queue:
                        return
                    lane = queue.popleft()
                try:
                    for case in lane:
                        if self._stop.is_set():
                            return
                        self._run_case(case, agent, sink)
                except BaseException as err:  # a bug, not a target failure: stop all lanes, re-raise in main
                    errors.append(err)
                    self.stop()
                    return

        n = min(len(queue), self.parallel - (1 if here else 0))
        threads = [threading.Thread(target=work, name=f"benchbed-lane-{i}", daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        try:
            for case in here:  # controller-hosted targets: main thread, so Ctrl-C reaches them directly
                if self._stop.is_set():
                    break
                self._run_case(case, agent, sink)
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except BaseException:
            self.stop()
            end = time.monotonic() + JOIN_GRACE_S
            for t in threads:
                t.join(max(0.0, end - time.monotonic()))
            raise
        if errors:
            raise errors[0]

    def stop(self) -> None:
        """End the run early: lanes finish no new case, and live sessions that can abort do so now."""
        self._stop.set()
        with self._lock:
            live = list(self.live.values())
        for session in live:
            abort = getattr(session, "abort", None)
            if abort is not None:
                try:
                    abort()
                except Exception:  # best effort: the lane's own teardown still runs
                    log.debug("abort failed", exc_info=True)

    def _notify(self, event: str, *args: Any) -> None:
        if self.observer:
            with self._lock:
                getattr(self.observer, event)(*args)

    def _target(self, name: str) -> Target:
        if name not in self.targets:
            self.targets[name] = make_target(name, self.specs[name], self.run_id)
        return self.targets[name]

    def _run_case(self, case: Case, agent: Agent, writer: Sink) -> None:
        self._notify("case_started", case)
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
                with self._lock:
                    self.live[case.target] = session
                try:
                    if self._stop.is_set():  # stop() ran before this session was in the journal
                        raise Interrupted(f"target {case.target!r}: run stopping")
                    phases.update(target.startup_phases())
                    described: dict[str, Any] = getattr(target, "describe", dict)()
                    status, reason, extra = self._in_session(case, session, agent, writer, spec, phases, described)
                    body_end = time.perf_counter()
                finally:
                    with self._lock:
                        self.live.pop(case.target, None)
            phases["teardown"] = time.perf_counter() - body_end
        except BenchbedError as err:
            status, reason, extra = "failed", str(err), {}
        if self._stop.is_set():  # interrupted instance: like Ctrl-C in a sequential run, no case record
            return
        total = time.perf_counter() - t0
        phases["other"] = max(0.0, total - sum(phases.values()))  # harness bookkeeping between named phases
        phases["total"] = total
        record.update(status=status, reason=reason, phases=phases, wall_s=phases["total"], **extra)
        with self._lock:
            self.counts[status] += 1
            if status == "failed":
                self.failed_targets.setdefault(case.target, reason or "failed")
        writer.case(record)
        self._notify("case_finished", case, record)

    def _in_session(
        self,
        case: Case,
        session: Session,
        agent: Agent,
        writer: Sink,
        spec: AnyTarget,
        phases: dict[str, float],
        described: dict[str, Any],
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
            "timeout_s": case.timeout_s,
            "fingerprint": want_fp,
            "scratch_dir": spec.scratch_dir or f"{session.workdir}/scratch",
            "expect_sha256": agent.sha256,
        }

        def on_fp(data: dict[str, Any]) -> None:
            writer.env(case.target, {"kind": spec.kind, **data, **described})
            self.fingerprinted.add(case.target)

        st = CaseState(case, agent.sha256, time.perf_counter(), writer, on_fp)
        argv = [spec.python, remote, "run", json.dumps(payload, separators=(",", ":"))]
        log.debug("case %d: %s", case.index, shlex.join(argv))

        def on_line(line: str) -> None:
            if self._stop.is_set():  # sessions without abort() notice a stop at their next line
                raise Interrupted(f"target {case.target!r}: run stopping")
            st.on_line(line)

        try:
            res = session.stream(argv, on_line, timeout=case.timeout_s)
        except AgentMismatch as err:
            return "failed", str(err), {}
        if st.ready_s is not None:
            phases["agent_ready"] = st.ready_s
            phases["workload"] = max(0.0, res.wall_s - st.ready_s)
        status, reason = _outcome(st, res, case.timeout_s)
        extra: dict[str, Any] = {"samples": st.samples, "rc": res.rc}
        if status == "failed":
            extra["stderr_tail"] = (res.stderr[-4000:] + "\n".join(st.noise))[-8000:]
        return status, reason, extra
