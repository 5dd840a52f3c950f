"""Fidelity check: serve.latency's load generator against wrk, hitting the same inference server at the same rate.

The server is the one serve.latency starts in a target (benchbed.workloads.serving: ThreadingHTTPServer, numpy
MLP), here on this host's loopback. Debian has wrk, not wrk2, so wrk cannot hold a fixed rate by itself: a Lua
`delay()` spaces each connection's requests, which makes wrk's rate 1/(gap + latency) and its latency measured from
the actual send. Each round runs wrk first and then benchbed's open loop at the rate wrk *achieved*, so both see
the same rate; at these loads (server busy ≤ 20 %) coordinated omission is too rare to separate the two methods.
Goal: benchbed's p50 within ±10 % of wrk's, p99 within ±20 %.

Ceilings: each generator closed-loop (4 connections) against (a) the inference server, (b) a canned-response
asyncio server, the fastest stdlib server we have: when (b) is higher for wrk than for benchbed, benchbed's
number is its generator's own limit on this machine.

    python benchmarks/bench_serve_vs_wrk.py [--rounds 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchbed.workloads import loadgen
from benchbed.workloads.serve import thread_env

ROOT = Path(__file__).resolve().parent.parent
BODY = 256 * 4  # float32 inputs of one request (--width)
LUA = """
wrk.method = "POST"
wrk.body = string.rep("\\0", %(body)d)
wrk.headers["Content-Type"] = "application/octet-stream"
%(delay)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"p50": %%d, "p90": %%d, "p99": %%d, "p999": %%d, "requests": %%d, "us": %%d, '
    .. '"errors": %%d}\\n', latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""
CANNED = """
import asyncio, sys
RESP = b"HTTP/1.1 200 OK\\r\\nContent-Length: 64\\r\\n\\r\\n" + bytes(64)
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\\r\\n\\r\\n")
            n = 0
            for line in head.split(b"\\r\\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            await r.readexactly(n)
            w.write(RESP)
    except (asyncio.IncompleteReadError, ConnectionError):
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(s.sockets[0].getsockname()[1], flush=True)
    await s.serve_forever()
asyncio.run(main())
"""


def start(argv: list[str], ready: str | None) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, **thread_env(1), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"server {argv[:3]} died")
        if ready is None:
            return proc, int(line)
        rec = json.loads(line)
        if rec.get("step") == ready:
            return proc, int(rec["port"])


def wrk(port: int, seconds: float, gap_ms: int, conns: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        delay = f"function delay() return {gap_ms} end" if gap_ms else ""  # a zero delay() still waits a tick
        f.write(LUA % {"body": BODY, "delay": delay})
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "-s", f.name, f"http://127.0.0.1:{port}/infer"],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        Path(f.name).unlink()
    rec: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    rec["rate"] = rec["requests"] / (rec["us"] / 1e6)
    return rec


def ours(port: int, seconds: float, rate: float) -> dict[str, Any]:
    run = loadgen.open_loop("127.0.0.1", port, bytes(BODY), rate, seconds, connections=1)
    h = run.hist
    return {
        "lag50": run.lag.percentile(50) / 1e3,
        "p50": h.percentile(50) / 1e3,
        "p90": h.percentile(90) / 1e3,
        "p99": h.percentile(99) / 1e3,
        "p999": h.percentile(99.9) / 1e3,
        "rate": h.total / run.elapsed_s,
        "errors": run.errors,
    }


def ceiling(port: int, seconds: float, body: int) -> tuple[float, float]:
    w = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    wrk_rps = float(next(line for line in w.splitlines() if line.startswith("Requests/sec")).split()[1])
    run = loadgen.closed_loop("127.0.0.1", port, bytes(body), seconds, connections=4)
    return wrk_rps, run.hist.total / run.elapsed_s


def _term(*_: object) -> None:
    raise SystemExit(143)  # run the finally that stops the servers


def main() -> None:
    signal.signal(signal.SIGTERM, _term)
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--gaps", default="20,10,5", help="wrk's per-request gap in ms (one connection)")
    ap.add_argument("--width", type=int, default=256, help="model size (a bigger model: more server time)")
    a = ap.parse_args()
    global BODY
    BODY = a.width * 4
    cfg = json.dumps({"backend": "numpy", "width": a.width, "layers": 2, "bind": "127.0.0.1", "port": 0})
    server, port = start([sys.executable, "-m", "benchbed.workloads.serving", cfg], "listening")
    canned, cport = start([sys.executable, "-c", CANNED], None)
    try:
        ours(port, 1.0, 100.0)  # warm-up: first-touch of the model's pages, the server's threads
        for what, p, body in (("inference server", port, BODY), ("canned asyncio server", cport, 64)):
            for _ in range(2):  # twice: the machine's load drifts
                w_rps, o_rps = ceiling(p, a.seconds, body)
                print(f"closed loop, 4 connections, {what}: wrk {w_rps:.0f} req/s, benchbed {o_rps:.0f} req/s")
        head = "| wrk gap | rate wrk / ours (req/s) | p50 wrk / ours (µs) | Δp50 | p99 wrk / ours (µs) | Δp99 |"
        print(head + " our send lag p50 (µs) |")
        print("|---|---|---|---|---|---|---|")
        for gap in (int(g) for g in a.gaps.split(",")):
            rows = []
            for _ in range(a.rounds):
                w = wrk(port, a.seconds, gap, 1)
                o = ours(port, a.seconds, w["rate"])
                rows.append((w, o))
            med = {
                k: (statistics.median(w[k] for w, _ in rows), statistics.median(o[k] for _, o in rows))
                for k in ("rate", "p50", "p99", "p999")
            }
            lag = statistics.median(o["lag50"] for _, o in rows)
            d50 = med["p50"][1] / med["p50"][0] - 1
            d99 = med["p99"][1] / med["p99"][0] - 1
            print(
                f"| {gap} ms | {med['rate'][0]:.0f} / {med['rate'][1]:.0f} | {med['p50'][0]:.0f} / "
                f"{med['p50'][1]:.0f} | {d50:+.1%} | {med['p99'][0]:.0f} / {med['p99'][1]:.0f} | {d99:+.1%} | "
                f"{lag:.0f} |"
            )
    finally:
        for proc in (server, canned):
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
