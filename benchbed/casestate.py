"""What one agent said while its case ran, parsed by the wire protocol (`benchbed.protocol`), and the case's
outcome (ok / skipped / failed with a reason) from that and the command's end."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from benchbed.errors import AgentMismatch, ProtocolError
from benchbed.plan import Case
from benchbed.protocol import PROTOCOL, Line, decode, sample_row
from benchbed.targets.base import CommandResult


class Sink(Protocol):
    def sample(self, record: dict[str, Any]) -> None: ...
    def case(self, record: dict[str, Any]) -> None: ...
    def env(self, target: str, data: dict[str, Any]) -> None: ...


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
    stack: dict[str, Any] | None = None  # the userland the workload ran on (agent/stack.py)
    stack_s: float = 0.0  # what taking that digest cost, inside the agent's wall time
    settle: dict[str, Any] | None = None  # what the settle gate waited and saw before the workload (agent/settle.py)
    noise: list[str] = field(default_factory=list)
    attempt: int = 0  # a resumed run's retry of an instance: its samples say so (`benchbed.resume`)
    on_serve: Callable[[dict[str, Any]], None] | None = None  # serve.latency's controller side (servedrive)

    def on_line(self, line: str) -> None:
        decoded = decode(line)
        if decoded is None:
            if line.strip() and len(self.noise) < 20:
                self.noise.append(line[:500])
            return
        kind, rec = decoded
        if kind is Line.HELLO:
            self.ready_s = time.perf_counter() - self.spawn_t
            where = f"agent in target {self.case.target!r}"
            if rec.get("protocol") != PROTOCOL:
                raise ProtocolError(f"{where} speaks protocol {rec.get('protocol')}, this benchbed {PROTOCOL}")
            if rec.get("sha256") != self.agent_sha:
                raise AgentMismatch(f"{where} has sha256 {rec.get('sha256')}, this run shipped {self.agent_sha}")
        elif kind is Line.FINGERPRINT:
            self.on_fingerprint(rec.get("data", {}))
        elif kind is Line.SAMPLE:
            c = self.case
            ctx = {
                "target": c.target,
                "workload": c.workload,
                "params": c.params,
                "instance": c.instance,
                "case": c.index,
            }
            if self.attempt:
                ctx["attempt"] = self.attempt
            self.writer.sample(sample_row(ctx, rec))
            self.samples += 1
        elif kind is Line.SKIPPED:
            self.skipped = str(rec.get("reason"))
        elif kind is Line.ERROR:
            self.error = f"{rec.get('error')}: {rec.get('message')}"
            if rec.get("traceback"):
                self.noise.append(str(rec["traceback"]))
        elif kind is Line.STACK:
            self.stack = dict(rec.get("data") or {})
            self.stack_s = float(rec.get("seconds") or 0.0)
        elif kind is Line.SERVE:
            if self.on_serve is not None:
                self.on_serve(rec)
        elif kind is Line.DONE:
            self.done = True
            if isinstance(rec.get("settle"), dict):
                self.settle = dict(rec["settle"])


def outcome(st: CaseState, res: CommandResult, timeout: float) -> tuple[str, str | None]:
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
