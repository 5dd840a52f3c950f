"""serve.latency: an inference server inside the target, loaded on two paths, and its time to first inference.

The agent starts `serving.py` as a child (a fresh interpreter: its start-up is the cold start being measured),
waits for it to listen, sends the first request, then drives the load plan:
- in-target: `loadgen` in the agent, over the target's loopback (compute and the server's own stack);
- across: the agent announces the port with a `serve` protocol line; the controller runs the same `loadgen` through
  the boundary's network path (published port, host network, forwarded port) and posts its results back to the
  server, which hands them to the agent. The controller also stamps `time_to_first_inference` (provision
  requested ▸ first correct response) when that line arrives.
A server that dies mid-load fails the case with the server's stderr tail.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import benchbed
from benchbed.workloads import loadgen
from benchbed.workloads.base import Context, Sample, Skipped, workload
from benchbed.workloads.hdr import Histogram
from benchbed.workloads.serving import OUT

PATHS = ("in-target", "across", "both")
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))
_CHILD = "import sys; sys.path.insert(0, sys.argv.pop(1)); from benchbed.workloads.serving import main; main()"


@dataclass(frozen=True)
class ServeLatency:
    backend: str = "auto"  # auto (torch, else numpy, else pure python) | torch | numpy | python
    width: int = 256  # model size: inputs and hidden units per layer
    layers: int = 2
    batch: int = 1  # rows per request
    rates: str = "50,200"  # open-loop requests/s, comma-separated (a YAML list would be a grid axis: one server each)
    duration_s: float = 2.0  # per open-loop rate
    closed_s: float = 2.0  # closed-loop run for peak throughput (0: none)
    connections: int = 4
    threads: int = 1  # BLAS/torch threads in the server (1: requests are the parallelism, no spinning pools)
    path: str = "both"  # in-target | across | both
    crash_after: int = 0  # fault injection for tests: the server exits after this many requests (0: never)
    python: str = ""  # "" = the agent's interpreter

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise ValueError(f"serve.latency: path {self.path!r} is not one of {', '.join(PATHS)}")
        if self.backend not in ("auto", "torch", "numpy", "python"):
            raise ValueError(f"serve.latency: backend {self.backend!r} is not auto, torch, numpy or python")
        try:
            rates = [float(r) for r in str(self.rates).split(",") if r.strip()]
        except ValueError:
            rates = []
        if not rates or any(r <= 0 for r in rates):
            raise ValueError(f"serve.latency: rates {self.rates!r} must be requests/s > 0, comma-separated")
        if min(self.width, self.layers, self.batch, self.connections, self.threads) < 1:
            raise ValueError("serve.latency: width, layers, batch, connections, threads must be ≥ 1")


def thread_env(threads: int) -> dict[str, str]:
    """The thread count every BLAS and OpenMP runtime reads at import (torch too: set_num_threads in the child)."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n, "BENCHBED_SERVE_THREADS": n}


class Server:
    """The child process, its stdout lines and a stderr file for the tail a failure shows."""

    def __init__(self, p: ServeLatency, bind: str, port: int) -> None:
        root = str(Path(benchbed.__file__).resolve().parent.parent)  # the zipapp (or the checkout)
        cfg = {
            "backend": p.backend,
            "width": p.width,
            "layers": p.layers,
            "bind": bind,
            "port": port,
            "crash_after": p.crash_after,
        }
        self.errf: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by stop()
        self.t_spawn = time.monotonic()
        try:
            env = {**os.environ, **thread_env(p.threads)}
            self.proc = subprocess.Popen(
                [p.python or sys.executable, "-c", _CHILD, root, json.dumps(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self.errf,
                env=env,
            )
        except FileNotFoundError as err:
            raise Skipped(f"interpreter {p.python!r} does not exist in this target") from err
        self.steps: dict[str, dict[str, Any]] = {}

    def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = self.proc.stdout.readline()
        if not raw:
            raise self.died("before it was ready" if "listening" not in self.steps else "")
        rec: dict[str, Any] = json.loads(raw)
        self.steps[rec["step"]] = rec
        return rec

    def wait_for(self, step: str) -> dict[str, Any]:
        while True:
            rec = self.line()
            if rec["step"] == step:
                return rec

    def tail(self) -> str:
        self.errf.seek(0)
        return self.errf.read()[-2000:].decode("utf-8", errors="replace").strip()

    def died(self, when: str = "") -> RuntimeError:
        rc = self.proc.poll()
        if rc is None:
            try:
                rc = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                rc = None
        tail = self.tail()
        sys.stderr.write(f"--- inference server stderr ---\n{tail}\n")
        how = f"exited {rc}" if rc is not None else "stopped answering"
        last = (tail.splitlines() or ["no stderr"])[-1]
        return RuntimeError(f"inference server {how}{' ' + when if when else ' mid-load'}: {last}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.errf.close()


def level_samples(res: dict[str, Any], where: str, p: ServeLatency, via: str | None) -> Iterator[Sample]:
    """p50/p90/p99/p99.9 (ms) and achieved throughput (requests/s) of one load level."""
    hist = Histogram.from_json(res["hist"])
    level = f"{res['rate']:g}" if res["mode"] == "open" else "closed"
    labels = {
        "path": where,
        "via": via,  # the network path: loopback in the target, or the controller's (published-port, ssh-tunnel...)
        "mode": res["mode"],
        "rate": res["rate"],
        "requests": hist.total,
        "batch": p.batch,
        "width": p.width,
        "connections": p.connections,
    }
    tag = f"{where}.{'open' if res['mode'] == 'open' else 'closed'}"
    prefix = f"{tag}@{level}" if res["mode"] == "open" else tag
    phase, rep = res["phase"], res["repetition"]
    for name, q in PERCENTILES:
        yield Sample(f"{prefix}.{name}", hist.percentile(q) / 1e6, "ms", "lower", phase, rep, labels=labels)
    if res["mode"] == "open" and res.get("lag"):  # the generator's own lateness: when it is large, the client limits
        lag = Histogram.from_json(res["lag"])
        yield Sample(f"{prefix}.send_lag_p99", lag.percentile(99) / 1e6, "ms", "lower", phase, rep, labels=labels)
    rps = hist.total / res["elapsed_s"] if res["elapsed_s"] > 0 else math.nan
    yield Sample(f"{prefix}.throughput", rps, "req/s", "higher", phase, rep, labels=labels)


def _plan(p: ServeLatency, ctx: Context) -> dict[str, Any]:
    schedule = [(ph, rep) for ph, rep in ctx.schedule() if ph != "cold"]
    return {
        "rates": [float(r) for r in p.rates.split(",") if r.strip()],
        "duration_s": p.duration_s,
        "closed_s": p.closed_s,
        "connections": p.connections,
        "body_bytes": p.batch * p.width * 4,
        "schedule": schedule,
    }


def _first_request(server: Server, port: int, p: ServeLatency) -> float:
    body = bytes(p.batch * p.width * 4)
    try:
        conn = loadgen.Conn("127.0.0.1", port, 60.0)
        status, length = conn.call(loadgen.request_bytes("127.0.0.1", body))
        conn.close()
    except OSError as err:
        raise server.died(f"at the first request ({err})") from err
    if status != 200 or length != p.batch * OUT * 4:
        raise RuntimeError(f"inference server's first answer is wrong (HTTP {status}, {length} bytes)")
    return time.monotonic()


@workload("serve.latency", params=ServeLatency, tags={"serve", "net"})
def serve_latency(p: ServeLatency, ctx: Context) -> Iterator[Sample]:
    """Inference server in the target: latency percentiles and throughput per load level, in-target and across the
    boundary, and the cold start (interpreter, import, model load, first request) in ms."""
    net = ctx.serve or {}
    across = p.path in ("across", "both")
    if across and net.get("port") is None:
        if p.path == "across":
            why = net.get("why") or "docker: `publish:` or network host"
            raise Skipped(f"this target exposes no port to the controller ({why})")
        across = False
    server = Server(p, str(net.get("bind") or "127.0.0.1"), int(net.get("port") or 0))
    try:
        listening = server.wait_for("listening")
        port = int(listening["port"])
        t_first = _first_request(server, port, p)
        st = server.steps
        backend = st["imported"].get("backend")
        cold = {
            "interpreter": st["main"]["t"] - server.t_spawn,
            "import": st["imported"]["t"] - st["main"]["t"],
            "model_load": st["loaded"]["t"] - st["imported"]["t"],
            "listen": listening["t"] - st["loaded"]["t"],
            "first_request": t_first - listening["t"],
        }
        labels = {"backend": backend, "width": p.width, "layers": p.layers, "batch": p.batch}
        # each instance is one fresh server, so its start-up is that instance's measurement (phase measure): the
        # instances of a case are the cold-start replicates
        for step, seconds in cold.items():
            yield Sample(f"start.{step}", seconds * 1e3, "ms", "lower", "measure", 0, labels=labels)
        yield Sample("start.total", (t_first - server.t_spawn) * 1e3, "ms", "lower", "measure", 0, labels=labels)
        plan = _plan(p, ctx)
        # the controller stamps time_to_first_inference on this line, and drives the across path if `plan` is set
        if ctx.announce is not None:
            ctx.announce(port=port, steps=cold, plan=plan if across else None)
        if p.path in ("in-target", "both"):
            yield from _results(loadgen.run_plan("127.0.0.1", port, plan), "in-target", p, server)
        if across:
            got = server.wait_for("result")["data"]
            if got.get("error"):
                raise RuntimeError(f"controller could not drive the across path: {got['error']}")
            yield from _results(got["levels"], "across", p, server, got.get("via"))
    finally:
        server.stop()


def _results(
    levels: list[dict[str, Any]], where: str, p: ServeLatency, server: Server, via: str | None = "loopback"
) -> Iterator[Sample]:
    for res in levels:
        if res["errors"]:
            if server.proc.poll() is not None or "closed" in res["first_error"] or "refused" in res["first_error"]:
                raise server.died()
            raise RuntimeError(f"{where} load at {res['rate']:g} req/s: {res['errors']} failed ({res['first_error']})")
        yield from level_samples(res, where, p, via)
