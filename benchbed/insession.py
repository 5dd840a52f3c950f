"""One instance inside a provisioned session: ship the agent, stream its lines to disk, judge the outcome.

Split from `lifecycle.Cases` (which provisions, journals and counts) so each stays small: this part knows the agent
protocol — the payload, the fingerprint of a target's first instance, the stack digest, serve.latency's controller
side — and returns (status, reason, extra) for the case record.
"""

from __future__ import annotations

import json
import logging
import shlex
import threading
import time
from typing import Any

from benchbed.agent.build import Agent
from benchbed.casestate import CaseState, Sink, outcome
from benchbed.envbook import EnvBook
from benchbed.errors import AgentMismatch, Interrupted, ProtocolError
from benchbed.plan import Case
from benchbed.protocol import PROTOCOL
from benchbed.schema import AnyTarget
from benchbed.servedrive import ServeDriver
from benchbed.targets.base import Session

log = logging.getLogger("benchbed.lifecycle")


class InSession:
    """Shared across a run's lanes: the agent, the env book, which targets are fingerprinted, the stop flag."""

    def __init__(
        self, agent: Agent, book: EnvBook, fingerprinted: set[str], stopping: threading.Event, attempt: int
    ) -> None:
        self.agent = agent
        self.book = book
        self.fingerprinted = fingerprinted
        self.stopping = stopping
        self.attempt = attempt

    def __call__(
        self,
        case: Case,
        session: Session,
        writer: Sink,
        spec: AnyTarget,
        phases: dict[str, float],
        described: dict[str, Any],
        case_t0: float,
    ) -> tuple[str, str | None, dict[str, Any]]:
        agent = self.agent
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
            "settle_s": case.settle_s,
            "hold_s": case.hold_s,
            "fingerprint": want_fp,
            "scratch_dir": spec.scratch_dir or f"{session.workdir}/scratch",
            "expect_sha256": agent.sha256,
            "protocol": PROTOCOL,
            "stack_cache": session.stack_cache,
            "serve": session.serve_net(),
        }

        def on_fp(data: dict[str, Any]) -> None:
            self.book.fingerprint(case.target, {"kind": spec.kind, **data, **described}, writer)
            self.fingerprinted.add(case.target)

        st = CaseState(case, agent.sha256, time.perf_counter(), writer, on_fp, attempt=self.attempt)
        ctx = {
            "target": case.target,
            "workload": case.workload,
            "params": case.params,
            "instance": case.instance,
            "case": case.index,
            **({"attempt": self.attempt} if self.attempt else {}),  # a resumed try's samples say so, as CaseState's
        }
        driver = ServeDriver(session, ctx, case_t0, phases, writer.sample)
        st.on_serve = lambda rec: driver.on_serve(rec, st.ready_s)
        argv = [spec.python, remote, "run", json.dumps(payload, separators=(",", ":"))]
        log.debug("case %d: %s", case.index, shlex.join(argv))

        def on_line(line: str) -> None:
            if self.stopping.is_set():  # sessions without abort() notice a stop at their next line
                raise Interrupted(f"target {case.target!r}: run stopping")
            st.on_line(line)

        try:
            res = session.stream(argv, on_line, timeout=case.timeout_s)
        except (AgentMismatch, ProtocolError) as err:
            return "failed", str(err), {}
        finally:
            driver.join()
        if st.ready_s is not None:
            phases["agent_ready"] = st.ready_s
            phases["workload"] = max(0.0, res.wall_s - st.ready_s)
        status, reason = outcome(st, res, case.timeout_s)
        extra: dict[str, Any] = {"samples": st.samples, "rc": res.rc}
        if st.stack is not None:
            extra.update(self.book.stack(case.target, st.stack, writer))
            phases["stack_digest"] = st.stack_s
            if "workload" in phases:
                phases["workload"] = max(0.0, phases["workload"] - st.stack_s)
        if st.settle is not None:
            extra["settle"] = st.settle
            waited = float(st.settle.get("waited_s") or 0.0)
            phases["settle"] = waited
            if "workload" in phases:
                phases["workload"] = max(0.0, phases["workload"] - waited)
        if status == "failed":
            extra["stderr_tail"] = (res.stderr[-4000:] + "\n".join(st.noise))[-8000:]
        return status, reason, extra
