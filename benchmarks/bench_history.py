"""Results database speed: publishing a 100 000-sample run, and a history query over 200 runs, on each backend.

* publish: a synthetic run shaped like `benchbed run`'s (1 target × 10 workloads × 10 instances × 1000 measured
  repetitions = 100 000 samples, cases.jsonl, a fingerprint), published with raw samples into a fresh database:
  timed in-process (`publish()`: read the directory, medians, one transaction) and as a whole `benchbed publish`
  process (imports and connect included). Goal: ≤ 5 s on PostgreSQL.
* history: 200 runs of one target (4 workloads × 10 instances × 20 repetitions each, a driver change at run 120)
  published, then the trend of one workload/metric: timed in-process (`trend()`: query + change points) and as a
  whole `benchbed history` process. Goal: ≤ 1 s on PostgreSQL.

PostgreSQL is the server of scripts/setup-postgres (each round in a database of its own).

    python benchmarks/bench_history.py [--rounds 3] [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

PG = os.environ.get("BENCHBED_TEST_PG_URL", "postgresql://benchbed:benchbed@127.0.0.1:55432/benchbed_test")
REPO = Path(__file__).resolve().parent.parent


def make_run(root: Path, run_id: str, *, day: int, workloads: int, instances: int, reps: int, level: float,
             driver: str, seed: int) -> Path:  # fmt: skip
    rng = np.random.default_rng(seed)
    d = root / run_id
    (d / "env").mkdir(parents=True)
    t0 = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=day)
    meta = {"schema_version": 1, "run_id": run_id, "status": "complete", "started": t0.isoformat(),
            "finished": (t0 + timedelta(minutes=30)).isoformat(), "suite": {"name": "bench", "text": ""},
            "targets": {"gpu": {"kind": "local"}}, "seed": seed}  # fmt: skip
    (d / "run.json").write_text(json.dumps(meta))
    env = {"kind": "local", "hostname": "n1", "kernel": "6.1.0", "gpus": [{"index": 0, "driver": driver}]}
    (d / "env" / "gpu.json").write_text(json.dumps(env))
    lines, cases, case = [], [], 0
    for w in range(workloads):
        for i in range(instances):
            values = level * (1 + 0.01 * rng.standard_normal(reps))
            head = f'{{"target": "gpu", "workload": "w{w}", "params": {{"n": 1}}, "instance": {i}, "case": {case}, '
            lines += [head + f'"metric": "tflops", "value": {v!r}, "unit": "TFLOP/s", "better": "higher", '
                      f'"phase": "measure", "repetition": {r}, "valid": true, "reason": null, "labels": {{}}}}\n'
                      for r, v in enumerate(values.tolist())]  # fmt: skip
            cases.append(json.dumps({"case": case, "target": "gpu", "workload": f"w{w}", "params": {"n": 1},
                                     "instance": i, "status": "ok"}) + "\n")  # fmt: skip
            case += 1
    (d / "samples.jsonl").write_text("".join(lines))
    (d / "cases.jsonl").write_text("".join(cases))
    return d


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/{uuid.uuid4().hex}.sqlite"
        return
    import psycopg

    name = f"bbbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
        try:
            yield PG.rsplit("/", 1)[0] + "/" + name
        finally:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def cli(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchbed.cli", *args], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - t


def bench_publish(backend: str, big: Path, tmp: Path, rounds: int) -> dict[str, list[float]]:
    from benchbed.history.engine import open_db
    from benchbed.history.publish import publish

    inproc, process = [], []
    for _ in range(rounds):
        with database(backend, tmp) as url:
            db = open_db(url)  # schema created outside the timing: a fleet's database exists already
            t = time.perf_counter()
            done = publish(db, big)
            inproc.append(time.perf_counter() - t)
            db.close()
            assert done.samples == 100_000, done
        with database(backend, tmp) as url:
            open_db(url).close()
            process.append(cli("publish", str(big), "--db", url))
    return {"publish() in-process": inproc, "`benchbed publish` process": process}


def bench_history(backend: str, runs: list[Path], tmp: Path, rounds: int) -> dict[str, list[float]]:
    from benchbed.history.engine import open_db
    from benchbed.history.publish import publish
    from benchbed.history.query import trend

    with database(backend, tmp) as url:
        db = open_db(url)
        for r in runs:
            publish(db, r)
        inproc = []
        for _ in range(rounds):
            t = time.perf_counter()
            tr = trend(db, "gpu", "w0", "tflops")
            inproc.append(time.perf_counter() - t)
        assert len(tr.series[0].points) == len(runs), tr
        assert [s.index for s in tr.series[0].shifts] == [120], tr
        db.close()
        process = [cli("history", "-t", "gpu", "-w", "w0", "--db", url) for _ in range(rounds)]
    return {"trend() in-process": inproc, "`benchbed history` process": process}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp_s:
        tmp = Path(tmp_s)
        big = make_run(tmp, "big", day=0, workloads=10, instances=10, reps=1000, level=100.0, driver="550", seed=1)
        runs = [
            make_run(
                tmp / "h",
                f"r{i:03d}",
                day=i,
                workloads=4,
                instances=10,
                reps=20,
                level=95.0 if i >= 120 else 100.0,
                driver="560" if i >= 120 else "550",
                seed=i,
            )
            for i in range(200)
        ]
        for backend in backends:
            results = {
                **bench_publish(backend, big, tmp, args.rounds),
                **bench_history(backend, runs, tmp, args.rounds),
            }
            for what, times in results.items():
                print(f"{backend:8s} {what:30s} median {statistics.median(times):6.3f} s  (min {min(times):.3f}, "
                      f"max {max(times):.3f}, {len(times)} rounds)")  # fmt: skip


if __name__ == "__main__":
    main()
