"""serve.latency's pieces without a target: the histogram's precision, the open loop's freedom from coordinated
omission (against a real stdlib server on 127.0.0.1 that stalls), the model backends, the docker publish option."""

from __future__ import annotations

import gc
import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
from pydantic import ValidationError

from benchbed.report.runinfo import SERVE_STEPS, workload_steps
from benchbed.targets import vmspec
from benchbed.targets.docker import DockerTarget
from benchbed.targets.libvirt import LibvirtTarget
from benchbed.targets.podman import PodmanTarget
from benchbed.workloads import loadgen
from benchbed.workloads.hdr import PRECISION, Histogram
from benchbed.workloads.serve import ServeLatency
from benchbed.workloads.serving import OUT, Model


def exact(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * int(q * 10) // 1000) - 1)]


def test_histogram_percentiles_are_within_its_stated_precision() -> None:
    rnd = random.Random(1)
    values = [int(rnd.lognormvariate(13, 1.5)) for _ in range(20_000)]  # ~0.4 ms median, long tail
    h = Histogram()
    for v in values:
        h.record(v)
    assert h.total == len(values)
    assert (h.min, h.max) == (min(values), max(values))
    for q in (50.0, 90.0, 99.0, 99.9):
        want = exact(values, q)
        assert abs(h.percentile(q) - want) <= want * PRECISION + 1, q


def test_histogram_json_round_trip_and_merge() -> None:
    a, b = Histogram(), Histogram()
    for v in range(1000):
        a.record(v * 1000)
        b.record(v * 3000)
    back = Histogram.from_json(json.loads(json.dumps(a.to_json())))
    assert (back.total, back.min, back.max, back.percentile(99)) == (a.total, a.min, a.max, a.percentile(99))
    a.merge(b)
    assert a.total == 2000
    assert a.max == 999 * 3000
    assert Histogram().percentile(50) != Histogram().percentile(50)  # NaN when empty


class Stalling(BaseHTTPRequestHandler):
    """Answers at once, except that one request stalls `stall_s`: the server a closed-loop client under-reports."""

    protocol_version = "HTTP/1.1"
    stall_s = 0.3
    count = 0
    gc_seen: ClassVar[set[bool]] = set()

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).count += 1
        type(self).gc_seen.add(gc.isenabled())  # this server runs in the generator's process: GC state shows
        if type(self).count == 10:
            time.sleep(self.stall_s)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def stalling() -> Iterator[int]:
    Stalling.count = 0
    Stalling.gc_seen = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_open_loop_counts_the_queue_behind_a_stall(stalling: int) -> None:
    """100 req/s on one connection with one 300 ms stall: the ~30 requests scheduled during the stall waited, so
    more than 10 % of latencies are ≥ 100 ms. Measured from the actual send (coordinated omission) only one is."""
    run = loadgen.open_loop("127.0.0.1", stalling, b"x", rate=100, duration_s=2.0, connections=1)
    assert run.errors == 0
    assert run.hist.total == 200
    assert run.hist.percentile(90) >= 100e6
    assert run.hist.max >= 0.3e9
    assert run.service.total == 200  # the same requests timed from their actual send, as wrk and h2load do:
    assert run.service.percentile(90) < 100e6  # there the queue behind the stall is gone
    assert run.service.max >= 0.3e9  # only the stalled request itself shows it
    assert Stalling.gc_seen == {False}  # no collector pause inside any request's timing
    assert gc.isenabled()  # and the GC is back on afterwards


def raw_server(answer: Any) -> int:
    """A one-connection server on 127.0.0.1 whose replies `answer(conn, n)` writes, byte for byte."""
    import socket

    lsock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn, lsock:
            buf, n = b"", 0
            while True:
                while b"\r\n\r\nx" not in buf:  # the tests' body is one byte, b"x"
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf.split(b"\r\n\r\nx", 1)[1]
                n += 1
                if not answer(conn, n):
                    return

    threading.Thread(target=serve, daemon=True).start()
    return int(lsock.getsockname()[1])


def test_closed_loop_times_a_response_that_comes_in_pieces_from_send_to_its_last_byte() -> None:
    def answer(conn: Any, n: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Len")  # a head split mid-line, then the body late
        time.sleep(0.005)
        conn.sendall(b"gth: 4\r\n\r\nab")
        time.sleep(0.02)
        conn.sendall(b"cd")
        return True

    port = raw_server(answer)
    run = loadgen.closed_loop("127.0.0.1", port, b"x", duration_s=0.3, connections=1)
    assert run.errors == 0
    assert run.sent == run.hist.total >= 5
    assert run.hist.min >= 25e6  # the last piece came 25 ms after the send: never timed before it came


def test_closed_loop_fails_on_a_bad_status_a_closed_connection_and_a_silent_server() -> None:
    port = raw_server(lambda conn, n: conn.sendall(b"HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n") or True)
    run = loadgen.closed_loop("127.0.0.1", port, b"x", duration_s=1.0, connections=1)
    assert (run.errors, run.first_error) == (1, "HTTP status 503")
    port = raw_server(lambda conn, n: False)  # closes without answering
    run = loadgen.closed_loop("127.0.0.1", port, b"x", duration_s=1.0, connections=1)
    assert run.errors == 1
    assert "closed the connection" in run.first_error
    port = raw_server(lambda conn, n: time.sleep(1.0) or False)  # says nothing for longer than the timeout
    run = loadgen.closed_loop("127.0.0.1", port, b"x", duration_s=1.0, connections=1, timeout=0.2)
    assert run.errors == 1
    assert run.first_error.startswith("TimeoutError")


def test_closed_loop_and_errors_stop_at_a_dead_server(stalling: int) -> None:
    run = loadgen.closed_loop("127.0.0.1", stalling, b"x", duration_s=0.5, connections=2)
    assert run.errors == 0
    assert run.hist.total > 10
    plan = {
        "body_bytes": 4,
        "schedule": [("measure", 0)],
        "rates": [50.0],
        "duration_s": 0.2,
        "closed_s": 0.2,
        "connections": 1,
    }
    levels = loadgen.run_plan("127.0.0.1", 1, plan)  # port 1: nothing listens
    assert len(levels) == 1
    assert levels[0]["errors"] == 1
    assert "cannot connect" in levels[0]["first_error"]


def test_backends_compute_the_same_function() -> None:
    np = pytest.importorskip("numpy")
    x = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32).tobytes()
    fast = np.frombuffer(Model("numpy", 8, 2)(x), dtype=np.float32)
    slow = np.frombuffer(Model("python", 8, 2)(x), dtype=np.float32)
    assert fast.shape == (2 * OUT,)
    torch = pytest.importorskip("torch")
    assert np.allclose(fast, np.frombuffer(Model("torch", 8, 2)(x), dtype=np.float32), atol=1e-5)
    del torch
    assert np.allclose(fast, slow, atol=1e-4)  # one seeded set of weights for every backend


def test_bad_parameters_and_publish_without_a_network_are_refused() -> None:
    with pytest.raises(ValueError, match="rates"):
        ServeLatency(rates="fast")
    with pytest.raises(ValueError, match="path"):
        ServeLatency(path="sideways")
    with pytest.raises(ValidationError, match="publish: 8700 needs network: bridge"):
        DockerTarget(kind="docker", image="x", publish=8700)
    assert DockerTarget(kind="docker", image="x", network="bridge", publish=8700).publish == 8700
    with pytest.raises(ValidationError, match="publish: 8700 needs network: bridge"):
        PodmanTarget(kind="podman", image="x", network="host", publish=8700)
    assert PodmanTarget(kind="podman", image="x", network="bridge", publish=8700).publish == 8700


def test_vm_serve_port_is_a_second_loopback_forward_next_to_ssh(tmp_path: Path) -> None:
    s = LibvirtTarget.model_validate({"kind": "libvirt", "image": "/img.raw", "ssh": {"serve_port": 8700}})
    kw: dict[str, Any] = {"name": "n", "run_id": "r", "target": "vm", "overlay": tmp_path / "o", "pci": []}
    xml = vmspec.render_domain(s, host_port=2200, console_log=None, serve_host_port=40001, **kw)
    assert "hostfwd=tcp:127.0.0.1:2200-:22,hostfwd=tcp:127.0.0.1:40001-:8700'" in xml
    plain = vmspec.render_domain(s, host_port=2200, console_log=None, **kw)
    assert "hostfwd=tcp:127.0.0.1:2200-:22'" in plain


def test_start_up_chart_stacks_the_servers_steps_per_target() -> None:
    rows = [
        {"workload": "serve.latency", "params": "{}", "metric": f"start.{step}", "target": t, "instance": i,
         "median": ms, "n": 1}
        for t in ("local", "box")
        for i, ms in enumerate((10.0, 30.0))
        for step in SERVE_STEPS
    ]  # fmt: skip
    steps = workload_steps(pd.DataFrame(rows))
    assert list(steps.phase.unique()) == [f"serve: {s.replace('_', ' ')}" for s in SERVE_STEPS]
    assert set(steps.median_s) == {0.02}  # median of the instance medians, in seconds
    assert set(steps.target) == {"local", "box"}
