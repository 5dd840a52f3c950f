"""Fidelity check: serve.latency's load generator against two independent C generators, like for like, hitting the
same inference server (benchbed.workloads.serving: ThreadingHTTPServer, numpy MLP, one BLAS thread) on loopback.

- Closed loop, same connection count: `wrk` 4.1 (Lua: POST, percentiles from its µs histogram) and `h2load`
  (nghttp2, `--h1`; every request's time from `--log-file`, exact percentiles) against `loadgen.closed_loop`.
  All three time a request from its actual send to the end of its response.
- Open loop at a fixed rate, one connection: `h2load --rps` (Debian has no wrk2; wrk's Lua `delay()` is a think
  time after each response, a closed loop, and has only ms resolution) against `loadgen.open_loop`. h2load keeps
  the schedule (requests due while the connection is busy are queued and sent as it frees) but times each request
  from its actual send, so benchbed's like-for-like figure is its `service` histogram (also from the actual send);
  its reported figure, from the scheduled send (no coordinated omission), is printed next to it.
- Ceilings: each generator closed-loop (4 connections) against the inference server and a canned-response asyncio
  server, the fastest stdlib server we have: a generator's figure there is its own limit on this machine.

Rounds interleave the generators (order rotated per round) so drifting machine load hits each alike; medians of
rounds. Goal: benchbed's p50 within ±10 % of the reference, p99 within ±20 %.

Needs Debian's `wrk` and `nghttp2-client` (h2load): `apt-get install wrk nghttp2-client`.

    python benchmarks/bench_serve_vs_wrk.py [--rounds 5] [--seconds 3] [--width 256] [--rates 50,100,400]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchbed.workloads import loadgen
from benchbed.workloads.hdr import Histogram
from benchbed.workloads.serve import thread_env

ROOT = Path(__file__).resolve().parent.parent
LUA = """
wrk.method = "POST"
wrk.body = string.rep("\\0", %(body)d)
wrk.headers["Content-Type"] = "application/octet-stream"
function done(summary, latency, requests)
  io.write(string.format('{"p50": %%d, "p99": %%d, "requests": %%d, "us": %%d}\\n', latency:percentile(50),
    latency:percentile(99), summary.requests, summary.duration))
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
Result = dict[str, float]  # p50, p99 (µs), rps; open loop adds i50, i99 (benchbed: from the scheduled send)


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


def nearest_rank(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(len(s) * q / 100) - 1)]


def wrk(port: int, body: int, seconds: float, conns: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % {"body": body})
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{conns}", f"-d{round(seconds)}s", "-s", f.name, f"http://127.0.0.1:{port}/infer"],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        Path(f.name).unlink()
    rec = json.loads(out.strip().splitlines()[-1])
    return {"p50": rec["p50"], "p99": rec["p99"], "rps": rec["requests"] / (rec["us"] / 1e6)}


def h2load(port: int, body: int, seconds: float, conns: int, rate: float = 0.0) -> Result:
    """Per-request times from --log-file (µs from the actual send): exact percentiles, no histogram."""
    with tempfile.TemporaryDirectory() as tmp:
        data, log = Path(tmp) / "body", Path(tmp) / "log"
        data.write_bytes(bytes(body))
        argv = ["h2load", "--h1", f"-c{conns}", "-t1", "-D", f"{seconds:g}", "-d", str(data), "--log-file", str(log)]
        argv += ["-H", "Content-Type: application/octet-stream", f"http://127.0.0.1:{port}/infer"]
        if rate:
            argv[2:2] = ["--rps", f"{rate / conns:g}"]
        subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60)
        rows = [line.split("\t") for line in log.read_text().splitlines()]
    ok = sorted((int(r[0]), float(r[2])) for r in rows if r[1] == "200")
    times = [us for _, us in ok]
    span = (max(t + us for t, us in ok) - min(t for t, _ in ok)) / 1e6
    out = {"p50": nearest_rank(times, 50), "p99": nearest_rank(times, 99), "rps": len(ok) / span}
    if rate and conns == 1:  # how evenly it paced: a request sent < half a period after the one before is a burst's
        burst = [b[0] - a[0] < 0.5e6 / rate for a, b in itertools.pairwise(ok)]
        spaced = [us for (_, us), short in zip(ok[1:], burst, strict=True) if not short]
        out.update(burst=sum(burst) / len(burst), s50=nearest_rank(spaced, 50) if spaced else math.nan)
    return out


def ours_closed(port: int, body: int, seconds: float, conns: int) -> Result:
    run = loadgen.closed_loop("127.0.0.1", port, bytes(body), seconds, connections=conns)
    return {**_q(run.hist), "rps": run.hist.total / run.elapsed_s}


def ours_open(port: int, body: int, seconds: float, rate: float) -> Result:
    run = loadgen.open_loop("127.0.0.1", port, bytes(body), rate, seconds, connections=1)
    intended = _q(run.hist)
    return {**_q(run.service), "i50": intended["p50"], "i99": intended["p99"], "rps": run.hist.total / run.elapsed_s}


def _q(h: Histogram) -> Result:
    return {"p50": h.percentile(50) / 1e3, "p99": h.percentile(99) / 1e3}


def rounds(gens: dict[str, Callable[[], Result]], n: int) -> dict[str, Result]:
    """Each generator n times, order rotated per round; the median of each figure."""
    names = list(gens)
    got: dict[str, list[Result]] = {k: [] for k in names}
    for r in range(n):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            got[k].append(gens[k]())
    out = {k: {f: statistics.median(x[f] for x in v) for f in v[0]} for k, v in got.items()}
    for k, v in got.items():  # a generator's own round-to-round spread of p99: the noise any Δp99 sits in
        out[k].update(p99lo=min(x["p99"] for x in v), p99hi=max(x["p99"] for x in v))
    return out


def delta(ours: float, ref: float) -> str:
    return f"{ours / ref - 1:+.1%}"


def _term(*_: object) -> None:
    raise SystemExit(143)  # run the finally that stops the servers


def main() -> None:
    signal.signal(signal.SIGTERM, _term)
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rates", default="50,100,400", help="open-loop requests/s (one connection)")
    ap.add_argument("--parts", default="closed,open,ceiling", help="which comparisons to run")
    ap.add_argument("--width", type=int, default=256, help="model size (a bigger model: more server time)")
    a = ap.parse_args()
    body, sec = a.width * 4, a.seconds
    cfg = json.dumps({"backend": "numpy", "width": a.width, "layers": 2, "bind": "127.0.0.1", "port": 0})
    server, port = start([sys.executable, "-m", "benchbed.workloads.serving", cfg], "listening")
    canned, cport = start([sys.executable, "-c", CANNED], None)
    try:
        ours_closed(port, body, 1.0, 4)  # warm-up: first-touch of the model's pages, the server's threads
        print(f"# width {a.width}, {a.rounds} rounds of {sec:g} s, load average {os.getloadavg()[0]:.1f}")
        print(
            "\n| closed loop | wrk p50 / p99 (µs) | h2load p50 / p99 | benchbed p50 / p99 | Δp50 vs h2load, wrk ",
            end="",
        )
        print("| Δp99 vs h2load, wrk | req/s wrk / h2load / benchbed |\n|---|---|---|---|---|---|---|")
        for conns in (1, 4) if "closed" in a.parts else ():
            m = rounds(
                {
                    "wrk": lambda c=conns: wrk(port, body, sec, c),
                    "h2": lambda c=conns: h2load(port, body, sec, c),
                    "ours": lambda c=conns: ours_closed(port, body, sec, c),
                },
                a.rounds,
            )
            w, h, o = m["wrk"], m["h2"], m["ours"]
            print(
                f"| {conns} conn | {w['p50']:.0f} / {w['p99']:.0f} | {h['p50']:.0f} / {h['p99']:.0f} | "
                f"{o['p50']:.0f} / {o['p99']:.0f} | {delta(o['p50'], h['p50'])}, {delta(o['p50'], w['p50'])} | "
                f"{delta(o['p99'], h['p99'])}, {delta(o['p99'], w['p99'])} | "
                f"{w['rps']:.0f} / {h['rps']:.0f} / {o['rps']:.0f} |"
            )
        print(
            "\n| open loop, 1 conn | rate h2load / benchbed | h2load p50 / p99 (µs) | benchbed from send p50 / p99 ",
            end="",
        )
        print("| Δp50 | Δp99 | p99 range over rounds h2load; benchbed | benchbed from schedule p50 / p99 ", end="")
        print("| h2load: sent in bursts | h2load p50 of spaced ones |\n|---|---|---|---|---|---|---|---|---|---|")
        for rate in [float(r) for r in a.rates.split(",")] if "open" in a.parts else []:
            m = rounds(
                {
                    "h2": lambda r=rate: h2load(port, body, sec, 1, r),
                    "ours": lambda r=rate: ours_open(port, body, sec, r),
                },
                a.rounds,
            )
            h, o = m["h2"], m["ours"]
            print(
                f"| {rate:g}/s | {h['rps']:.0f} / {o['rps']:.0f} | {h['p50']:.0f} / {h['p99']:.0f} | "
                f"{o['p50']:.0f} / {o['p99']:.0f} | {delta(o['p50'], h['p50'])} | {delta(o['p99'], h['p99'])} | "
                f"{h['p99lo']:.0f}–{h['p99hi']:.0f}; {o['p99lo']:.0f}–{o['p99hi']:.0f} | "
                f"{o['i50']:.0f} / {o['i99']:.0f} | {h['burst']:.0%} | {h['s50']:.0f} |"
            )
        if "ceiling" in a.parts:
            print("\n| ceiling, closed loop, 4 conns | wrk (req/s) | h2load | benchbed |\n|---|---|---|---|")
        servers = (("inference server", port, body), ("canned asyncio server", cport, 64))
        for what, p, size in servers if "ceiling" in a.parts else ():
            m = rounds(
                {
                    "wrk": lambda p=p, s=size: wrk(p, s, sec, 4),
                    "h2": lambda p=p, s=size: h2load(p, s, sec, 4),
                    "ours": lambda p=p, s=size: ours_closed(p, s, sec, 4),
                },
                max(1, a.rounds // 2),
            )
            print(f"| {what} | {m['wrk']['rps']:.0f} | {m['h2']['rps']:.0f} | {m['ours']['rps']:.0f} |")
    finally:
        for proc in (server, canned):
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
