"""Load generators for `serve.latency`, stdlib-only: the agent runs them inside the target (over loopback) and the
controller runs the same code across the boundary, so the two paths differ only by the network in between.

Open loop: request i is *scheduled* at t0 + i/rate and its latency is measured from that intended time, not from
when a connection got free, so a slow server cannot hide its queue (no coordinated omission; wrk2's rule). Any of
`connections` keep-alive connections takes the next request in line; a request that waits for a connection has
that wait in its latency. Closed loop: each connection sends its next request as soon as the last one came back;
its throughput is the server's peak (or the generator's: see `docs/performance.md` for the ceiling).

The HTTP client is a raw socket with a prebuilt request (Content-Length framing only): http.client's per-request
cost would be the generator's ceiling long before a small server's.
"""

from __future__ import annotations

import contextlib
import gc
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from benchbed.workloads.hdr import Histogram


def request_bytes(host: str, body: bytes) -> bytes:
    head = f"POST /infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Conn:
    """One keep-alive connection; `call` returns (status, body length) or raises OSError."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def call(self, req: bytes) -> tuple[int, int]:
        self.sock.sendall(req)
        while (got := self.take()) is None:
            self.more()
        return got

    def take(self) -> tuple[int, int] | None:
        """The buffer's first whole response, taken off it: (status, body length); None while it is not whole."""
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return None
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            return None
        self.buf = rest[length:]
        return status, length

    def more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


@dataclass
class Run:
    """One load level's outcome: the latency histogram (ns) and its counts."""

    mode: str  # open | closed
    rate: float  # requests/s asked for (0 for closed loop)
    hist: Histogram = field(default_factory=Histogram)
    lag: Histogram = field(default_factory=Histogram)  # open loop: actual send − scheduled time (the generator's)
    service: Histogram = field(default_factory=Histogram)  # open loop: from the actual send (wrk's and h2load's
    # timing point, with coordinated omission: only for comparing with them; `hist` is the figure reported)
    sent: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    first_error: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "rate": self.rate,
            "hist": self.hist.to_json(),
            "lag": self.lag.to_json(),
            "sent": self.sent,
            "errors": self.errors,
            "elapsed_s": self.elapsed_s,
            "first_error": self.first_error,
        }


SPIN_NS = 400_000


def until(due_ns: int) -> None:
    """Wait for `due_ns` (perf_counter_ns). sleep() wakes 50-100 µs late (timer slack), and that lateness would
    count as the server's latency: sleep to SPIN_NS before, then yield in a loop. sched_yield releases the GIL, so
    a waiting request never delays one whose answer has come back; sleep(0) would, too, but it is a timer and
    wakes after the same 50 µs of slack."""
    wait = due_ns - time.perf_counter_ns()
    if wait > SPIN_NS:
        time.sleep((wait - SPIN_NS) / 1e9)
    while time.perf_counter_ns() < due_ns:
        os.sched_yield()


def _connect(host: str, port: int, n: int, timeout: float) -> list[Conn]:
    return [Conn(host, port, timeout) for _ in range(n)]


def open_loop(
    host: str, port: int, body: bytes, rate: float, duration_s: float, connections: int, timeout: float = 10.0
) -> Run:
    """`rate` requests/s for `duration_s`, latency from each request's scheduled time."""
    run = Run("open", rate)
    req = request_bytes(host, body)
    total = max(1, int(rate * duration_s))
    conns = _connect(host, port, connections, timeout)
    lock = threading.Lock()
    nxt = [0]
    t0 = time.perf_counter_ns() + 1_000_000
    period = 1e9 / rate

    def worker(conn: Conn) -> None:
        while True:
            with lock:
                i = nxt[0]
                if i >= total or run.errors:
                    return
                nxt[0] += 1
            due = t0 + int(i * period)
            until(due)
            sent = time.perf_counter_ns()
            try:
                status, _ = conn.call(req)
                ok = status == 200
            except OSError as err:
                status, ok = 0, False
                with lock:
                    run.first_error = run.first_error or f"{err.__class__.__name__}: {err}"
            end = time.perf_counter_ns()
            with lock:
                run.sent += 1
                run.lag.record(sent - due)
                if ok:
                    run.hist.record(end - due)
                    run.service.record(end - sent)
                else:
                    run.errors += 1
                    run.first_error = run.first_error or f"HTTP status {status}"
            if not ok:
                return

    _drive(conns, worker)
    run.elapsed_s = (time.perf_counter_ns() - t0) / 1e9
    return run


def closed_loop(host: str, port: int, body: bytes, duration_s: float, connections: int, timeout: float = 10.0) -> Run:
    """Each connection back-to-back for `duration_s`: peak throughput and the latency at it.

    One thread waits on all connections in one epoll set, as wrk's and h2load's event loops do. With a thread per
    connection a response that had come back waited for the GIL while another connection's thread ran, and that
    wait was timed as the server's: +18 % on p50 at 4 connections against h2load (docs/performance.md)."""
    run = Run("closed", 0.0)
    req = request_bytes(host, body)
    conns = _connect(host, port, connections, timeout)
    sel = selectors.DefaultSelector()
    sent: dict[Conn, int] = {}
    t0 = time.perf_counter_ns()
    stop = t0 + int(duration_s * 1e9)
    with no_gc():
        try:
            for conn in conns:
                sel.register(conn.sock, selectors.EVENT_READ, conn)
                sent[conn] = time.perf_counter_ns()
                conn.sock.sendall(req)
            while sent and not run.errors:
                ready = sel.select(timeout)
                if not ready:
                    run.errors += 1
                    run.first_error = f"TimeoutError: no response in {timeout:g} s"
                for key, _ in ready:
                    _closed_step(run, sel, key.data, sent, req, stop)
        except OSError as err:
            run.errors += 1
            run.first_error = run.first_error or f"{err.__class__.__name__}: {err}"
        finally:
            sel.close()
            for conn in conns:
                conn.close()
    run.elapsed_s = (time.perf_counter_ns() - t0) / 1e9
    return run


def _closed_step(
    run: Run, sel: selectors.BaseSelector, conn: Conn, sent: dict[Conn, int], req: bytes, stop: int
) -> None:
    """`conn` is readable: take what came; a whole response is timed, then the next request goes (until `stop`)."""
    conn.more()
    got = conn.take()
    if got is None:
        return
    end = time.perf_counter_ns()
    run.sent += 1
    if got[0] != 200:
        run.errors += 1
        run.first_error = run.first_error or f"HTTP status {got[0]}"
        return
    run.hist.record(end - sent[conn])
    if end < stop:
        sent[conn] = time.perf_counter_ns()
        conn.sock.sendall(req)
    else:
        sel.unregister(conn.sock)
        del sent[conn]


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic GC off for one load level (as it was after). A full collection holds the GIL for the whole heap:
    in the controller, with pandas and the report loaded, that measured 80-580 ms on the 2-vCPU CI VM, and a pause
    inside a request's timing is the generator's, not the server's. The generator makes no reference cycles, so
    nothing piles up while it is off; reference counting still frees everything at once."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _drive(conns: list[Conn], worker: Any) -> None:
    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in conns]
    with no_gc():
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for c in conns:
        c.close()


def run_plan(host: str, port: int, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The whole load schedule of one case: for each (phase, repetition), every open-loop rate then the closed loop.
    Stops at the first level with errors (the server is gone or broken; the caller says why)."""
    body = bytes(int(plan["body_bytes"]))
    out: list[dict[str, Any]] = []
    for phase, rep in plan["schedule"]:
        levels: list[tuple[str, float]] = [("open", float(r)) for r in plan["rates"]]
        if plan["closed_s"] > 0:
            levels.append(("closed", 0.0))
        for mode, rate in levels:
            try:
                if mode == "open":
                    run = open_loop(host, port, body, rate, plan["duration_s"], plan["connections"])
                else:
                    run = closed_loop(host, port, body, plan["closed_s"], plan["connections"])
            except OSError as err:
                run = Run(mode, rate, errors=1, first_error=f"cannot connect: {err}")
            out.append({**run.summary(), "phase": phase, "repetition": rep})
            if run.errors:
                return out
    return out
