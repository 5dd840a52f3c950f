"""Harness overhead per sample, measured from real `benchbed run`s of util.noop (10 ms busy-wait samples).

For every instance, residual = wall (provision → teardown) − Σ sample durations: everything benchbed added.
Two runs with few and many repetitions separate the two parts of that residual:
  per-sample overhead = Δ median residual / Δ samples   (JSON emission, pipe, parsing, append to samples.jsonl)
  fixed per instance  = residual − n × per-sample       (spawn, imports, scratch dir, teardown)
Goal: per-sample overhead ≤ 1% of a 10 ms sample. Instance 0 (which also gathers the fingerprint) is excluded.

    python benchmarks/bench_overhead.py [--instances 6] [--few 50] [--many 400]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchbed.results import load_run


def residuals(reps: int, instances: int, duration_ms: float) -> tuple[float, int]:
    """Median residual (s) over instances ≥ 1, and samples per instance."""
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "noop.yaml"
        suite.write_text(
            "name: overhead\nbaseline: local\n"
            f"defaults: {{instances: {instances}, repetitions: {reps}, warmup: 0}}\n"
            f"workloads:\n  - name: util.noop\n    params: {{duration_ms: {duration_ms}}}\n"
        )
        cmd = [sys.executable, "-m", "benchbed.cli", "run", str(suite), "--out", tmp, "--no-report"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        (run_dir,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        run = load_run(run_dir)
    out, n = [], 0
    for _, case in run.cases.iterrows():
        if case.instance == 0:
            continue
        s = run.samples[run.samples.case == case.case]
        n = len(s)
        out.append(case.phases["total"] - s.value.sum() / 1e3)
    return statistics.median(out), n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=6)
    ap.add_argument("--few", type=int, default=50)
    ap.add_argument("--many", type=int, default=400)
    ap.add_argument("--duration-ms", type=float, default=10.0)
    a = ap.parse_args()
    r_few, n_few = residuals(a.few, a.instances, a.duration_ms)
    r_many, n_many = residuals(a.many, a.instances, a.duration_ms)
    per_sample_s = (r_many - r_few) / (n_many - n_few)
    fixed_s = r_few - n_few * per_sample_s
    share = per_sample_s * 1e3 / a.duration_ms * 100
    print(f"samples of {a.duration_ms} ms; {a.instances - 1} instances per run; runs of {n_few} and {n_many} samples")
    print(f"residual per instance: {r_few * 1e3:.1f} ms ({n_few} samples), {r_many * 1e3:.1f} ms ({n_many} samples)")
    print(f"per-sample overhead: {per_sample_s * 1e6:.1f} µs = {share:.3f}% of a {a.duration_ms} ms sample (goal ≤ 1%)")
    print(f"fixed per instance (spawn, imports, scratch, teardown): {fixed_s * 1e3:.1f} ms")
    return 0 if share <= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
