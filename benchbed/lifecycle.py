"""The case lifecycle: provision ▸ ship the agent ▸ stream its lines to disk ▸ tear down, for one instance.

`Cases` owns what the lifecycle shares across a run: the targets made so far (closed at the end), the journal of
live sessions (aborted by `stop()`), which targets are fingerprinted, and the counts. A failing instance becomes a
`failed` case with its reason and stderr tail; an interrupted one leaves no case record.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from benchbed.agent.build import Agent
from benchbed.casestate import Sink
from benchbed.envbook import EnvBook
from benchbed.errors import BenchbedError, Interrupted, StoreError
from benchbed.insession import InSession
from benchbed.plan import Case, Plan
from benchbed.results import RunWriter
from benchbed.schema import AnyTarget
from benchbed.targets.base import Session, Target
from benchbed.targets.registry import kind, make_target

log = logging.getLogger(__name__)


class Observer(Protocol):
    def started(self, plan: Plan, run_dir: Path) -> None: ...
    def case_started(self, case: Case) -> None: ...
    def case_finished(self, case: Case, record: dict[str, Any]) -> None: ...
    def replanned(self, plan: Plan) -> None: ...


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


class Cases:
    """Runs cases one at a time per caller (lanes call it from several threads; shared state is locked)."""

    def __init__(
        self, specs: dict[str, AnyTarget], run_id: str, agent: Agent, observer: Observer | None, attempt: int = 0
    ) -> None:
        self.specs = specs
        self.attempt = attempt  # > 0: a resumed run; records and samples carry it
        self.run_id = run_id
        self.agent = agent
        self.observer = observer
        self.targets: dict[str, Target] = {}
        self.fingerprinted: set[str] = set()
        self.book = EnvBook()  # env/<target>.json: fingerprint + stacks
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.failed_targets: dict[str, str] = {}
        self.live: dict[str, Session] = {}  # the journal: target → session provisioned right now
        self._lock = threading.RLock()  # counts, journal, observer
        self.stopping = threading.Event()
        self.in_session = InSession(agent, self.book, self.fingerprinted, self.stopping, attempt)

    def count_done(self, records: list[dict[str, Any]]) -> None:
        """A resumed run's kept instances count in its totals."""
        for rec in records:
            status = str(rec.get("status"))
            self.counts[status] = self.counts.get(status, 0) + 1
            if status == "failed":
                self.failed_targets.setdefault(str(rec.get("target")), str(rec.get("reason") or "failed"))

    def stop(self) -> None:
        """End the run early: lanes finish no new case, and live sessions that can abort do so now."""
        self.stopping.set()
        for target in list(self.targets.values()):  # a provision still waiting (a queued Slurm job) gives up
            try:
                target.stop()
            except Exception:
                log.debug("stop failed", exc_info=True)
        with self._lock:
            live = list(self.live.values())
        for session in live:
            try:
                session.abort()
            except Exception:  # best effort: the lane's own teardown still runs
                log.debug("abort failed", exc_info=True)

    def close_targets(self) -> None:
        """Targets may hold controller-side resources for the whole run (an engine client): `close()` releases
        them once the run is over."""
        for name, target in self.targets.items():
            try:
                target.close()
            except Exception as err:  # teardown of one target must not hide the run's outcome
                log.warning("target %r: close failed: %s", name, err)

    def _target(self, name: str) -> Target:
        if name not in self.targets:
            self.targets[name] = make_target(name, self.specs[name], self.run_id)
        return self.targets[name]

    def run(self, case: Case, writer: Sink) -> None:
        if self.observer:
            with self._lock:
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
        if self.attempt:
            record["attempt"] = self.attempt
        phases: dict[str, float] = {}
        try:
            target = self._target(case.target)
            target.next_case(case.workload)
            with target.provision() as session:
                with self._lock:
                    self.live[case.target] = session
                try:
                    if self.stopping.is_set():  # stop() ran before this session was in the journal
                        raise Interrupted(f"target {case.target!r}: run stopping")
                    phases.update(target.startup_phases())
                    if started := target.instance_start():
                        record["start"] = started
                    described = target.describe()
                    status, reason, extra = self.in_session(case, session, writer, spec, phases, described, t0)
                    body_end = time.perf_counter()
                finally:
                    with self._lock:
                        self.live.pop(case.target, None)
            phases["teardown"] = time.perf_counter() - body_end
        except StoreError:
            raise  # the results store cannot take more: the run ends (runner), it is no case's failure
        except BenchbedError as err:
            status, reason, extra = "failed", str(err), {}
        except Exception as err:
            if not isinstance(err, kind(spec.kind).transport_errors()):
                raise  # a bug, not a fault of the target: the traceback is what is wanted
            status, reason, extra = (
                "failed",
                f"target {case.target!r}: connection lost ({type(err).__name__}: {err})",
                {},
            )
        if self.stopping.is_set():  # interrupted instance: like Ctrl-C in a sequential run, no case record
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
        if self.observer:
            with self._lock:
                self.observer.case_finished(case, record)
