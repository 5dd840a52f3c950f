"""How honest is the regression gate on this machine? False-positive rate of A/A comparisons and detection rate of
planted 3 % and 5 % slowdowns, at the verdict rules of `benchbed.verdict` (one metric per comparison).

Method (said plainly, because it matters): one real `benchbed run` measures a *pool* of fresh instances of
  util.noop duration_ms=5     (the base)
  util.noop duration_ms=5.15  (a real 3 % slowdown: the busy-wait does 3 % more work)
  util.noop duration_ms=5.25  (a real 5 % slowdown)
  cpu.gemm n=192              (noisier; its slowdowns are planted by scaling the new side's instance medians)
interleaved round by round, so machine drift hits all of them alike. Each simulated comparison then draws N
instances without replacement from the pools (A/A: 2N disjoint instances from the base pool) and runs the full
verdict pipeline (bootstrap CI, MWU, Holm, TOST) on them. Resampling a measured pool is what makes 1000s of
comparisons affordable; its limit is that all pool instances share one run's conditions (same day, same boot).

    python benchmarks/bench_methodology.py [--pool 40] [--trials 400] [--pool-csv pool.csv]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchbed.results import load_run
from benchbed.stats import instance_medians
from benchbed.verdict import compare_instances, instances_needed, threshold_for

SUITE = """name: methodology
baseline: local
seed: 11
defaults: {{instances: {pool}, repetitions: 5, warmup: 1}}
workloads:
  - name: util.noop
    params: {{duration_ms: [5, 5.15, 5.25]}}
  - name: cpu.gemm
    params: {{n: 192}}
"""


def measure(pool: int) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "suite.yaml"
        suite.write_text(SUITE.format(pool=pool), encoding="utf-8")
        cmd = [sys.executable, "-m", "benchbed.cli", "run", str(suite), "--out", tmp, "--no-report"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        (run_dir,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        return instance_medians(load_run(run_dir).samples)


def frame(values: np.ndarray, target: str, workload: str, metric: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"workload": workload, "params": "{}", "metric": metric, "target": target, "median": values, "n": 5}
    )


def rates(
    base: np.ndarray, slow: dict[str, np.ndarray], n: int, trials: int, workload: str, metric: str, better: str
) -> dict[str, float]:
    """Share of comparisons whose verdict is `regression`: A/A (false positives) and each planted slowdown."""
    rng = np.random.default_rng(7)
    info = pd.DataFrame([{"workload": workload, "params": "{}", "metric": metric, "unit": "", "better": better}])
    out: dict[str, float] = {}
    for name, pool in {"A/A": None, **slow}.items():
        hits = 0
        for t in range(trials):
            if pool is None:
                idx = rng.choice(len(base), 2 * n, replace=False)
                a, b = base[idx[:n]], base[idx[n:]]
            else:
                a, b = base[rng.choice(len(base), n, replace=False)], pool[rng.choice(len(pool), n, replace=False)]
            v = compare_instances(
                frame(a, "a", workload, metric), frame(b, "b", workload, metric), info=info, seed=t, n_resamples=999
            )
            hits += v["verdict"].iloc[0] == "regression"
        out[name] = hits / trials
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=40, help="instances measured per pool")
    ap.add_argument("--trials", type=int, default=400, help="simulated comparisons per cell")
    ap.add_argument("--n", type=int, nargs="*", default=[4, 10, 16], help="instances per side to simulate")
    ap.add_argument("--pool-csv", type=Path, help="reuse (or save) the measured instance medians")
    args = ap.parse_args()
    t0 = time.monotonic()
    if args.pool_csv and args.pool_csv.exists():
        inst = pd.read_csv(args.pool_csv, dtype={"params": str})
    else:
        inst = measure(args.pool)
        if args.pool_csv:
            inst.to_csv(args.pool_csv, index=False)
    print(f"measured {len(inst)} instance medians in {time.monotonic() - t0:.0f} s")
    noop = inst[inst["workload"] == "util.noop"]
    by_dur = {json.loads(p)["duration_ms"]: g["median"].to_numpy(float) for p, g in noop.groupby("params")}
    base = by_dur[5]
    noop_slow = {"+3 %": by_dur[5.15], "+5 %": by_dur[5.25]}
    gemm = inst[inst["workload"] == "cpu.gemm"]["median"].to_numpy(float)
    gemm_slow = {"−3 %": gemm * 0.97, "−5 %": gemm * 0.95}  # planted on the new side; A/A stays real
    cases = [
        ("util.noop", "duration", "lower", base, noop_slow),
        ("cpu.gemm", "throughput", "higher", gemm, gemm_slow),
    ]
    print("| workload | instance CV | threshold | N | auto N | A/A false positives | 3 % detected | 5 % detected |")
    print("|---|---|---|---|---|---|---|---|")
    for workload, metric, better, pool, slow in cases:
        cv = float(np.std(np.log(pool), ddof=1))
        thr = threshold_for(workload, metric)
        pilot_cv = float(np.std(np.log(pool[:4]), ddof=1))  # what a 4-instance pilot would have seen
        auto = instances_needed(pilot_cv, thr, cap=args.pool // 2)
        for n in sorted({*args.n, auto}):
            r = rates(pool, slow, n, args.trials, workload, metric, better)
            v = list(r.values())
            tag = " (auto)" if n == auto else ""
            print(
                f"| {workload} | {cv:.2%} | {thr:.0%} | {n}{tag} | {auto} | {v[0]:.1%} | {v[1]:.1%} | {v[2]:.1%} |",
                flush=True,
            )
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
