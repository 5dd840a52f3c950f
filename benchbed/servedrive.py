"""The controller's half of serve.latency: when the agent says its server answered the first request (a `serve`
line), stamp `time_to_first_inference` and, if the agent sent a load plan, drive that plan through the boundary's
network path (`Session.endpoint`: a published, host-network or forwarded port on 127.0.0.1, an SSH tunnel, a Slurm
node's own address) with the same load generator the agent uses in the target. The results go back to the server
(POST /result), which hands them to the agent, so every sample still arrives through the agent's protocol and the
case's outcome stays the agent's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from benchbed.protocol import Sample, sample_row
from benchbed.targets.base import Endpoint, Session
from benchbed.workloads import loadgen

log = logging.getLogger(__name__)


def post_result(host: str, port: int, data: dict[str, Any], timeout: float = 30.0) -> None:
    body = json.dumps(data).encode()
    head = f"POST /result HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    conn = loadgen.Conn(host, port, timeout)
    try:
        conn.sock.sendall(head + body)
        conn.buf = b""
        while b"\r\n\r\n" not in conn.buf:
            conn.more()
    finally:
        conn.close()


class ServeDriver:
    """One case's controller side of serve.latency: at most one `serve` line is acted on."""

    def __init__(
        self,
        session: Session,
        case_ctx: dict[str, Any],
        t0: float,
        phases: dict[str, float],
        write: Callable[[dict[str, Any]], None],
    ) -> None:
        self.session = session
        self.case_ctx = case_ctx
        self.t0 = t0
        self.phases = phases
        self.write = write
        self.thread: threading.Thread | None = None

    def on_serve(self, rec: dict[str, Any], agent_ready_s: float | None = None) -> None:
        """`agent_ready_s`: agent spawn ▸ its hello line, the controller's last phase before the target's steps."""
        ttfi = time.perf_counter() - self.t0
        if self.thread is not None:
            return
        steps = {k: float(v) * 1e3 for k, v in (rec.get("steps") or {}).items()}
        # every phase recorded so far is the controller's: the kind's start-up phases (create, start, boot,
        # connect...) and put_agent; the agent's own start (spawn ▸ hello) follows
        controller = {k: v * 1e3 for k, v in self.phases.items()}
        if agent_ready_s is not None:
            controller["agent_ready"] = agent_ready_s * 1e3
        rest = ttfi * 1e3 - sum(controller.values()) - sum(steps.values())
        labels = {"controller_ms": controller, "target_ms": steps, "agent_other_ms": max(0.0, rest)}
        sample = Sample("time_to_first_inference", ttfi * 1e3, "ms", "lower", "measure", 0, labels=labels)
        self.write(sample_row(self.case_ctx, sample.to_json()))
        port, plan = int(rec.get("port") or 0), rec.get("plan")
        self.thread = threading.Thread(target=self._drive, args=(port, plan), daemon=True)
        if plan:
            self.thread.start()

    def _drive(self, port: int, plan: dict[str, Any]) -> None:
        try:
            with self.session.endpoint(port) as where:
                if where is None:  # the agent only sends a plan where serve_net gave a port: a kind's bug
                    log.warning("serve.latency: target port %d is not reachable from the controller", port)
                    return
                self._load(where, plan)
        except Exception as err:  # a tunnel that cannot open: the agent waits for its results until the timeout
            log.warning("serve.latency: cannot reach the target's port %d: %s", port, err)

    def _load(self, where: Endpoint, plan: dict[str, Any]) -> None:
        try:
            levels = loadgen.run_plan(where.host, where.port, plan)
            data: dict[str, Any] = {"levels": levels, "via": where.via}
        except Exception as err:  # the agent reports it as the case's failure
            data = {"error": f"{err.__class__.__name__}: {err}"}
        try:
            post_result(where.host, where.port, data)
        except OSError as err:  # the server is gone: the agent sees it die and fails the case with its stderr
            log.debug("serve.latency: cannot post results to %s: %s", where, err)

    def join(self, timeout: float = 30.0) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.thread.join(timeout)
