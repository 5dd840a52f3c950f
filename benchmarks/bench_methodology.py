"""How honest is the regression gate on this machine? False-positive rate of A/A comparisons and detection rate of
planted 3 % and 5 % slowdowns, at the verdict rules of `benchbed.verdict` and the N that `instances: auto` picks.

Method (said plainly, because it matters): one real `benchbed run` measures a *pool* of fresh instances of
  bench.spin work=200000 clock=wall  (the base: a fixed pure-Python loop, ~5 ms, timed on the wall clock)
  bench.spin work=206000 clock=wall  (a real 3 % slowdown: the loop does 3 % more work)
  bench.spin work=210000 clock=wall  (a real 5 % slowdown)
  the same three with clock=cpu      (timed in process CPU time: what other processes' load cannot reach)
  cpu.gemm n=192                     (multi-threaded BLAS; slowdowns planted by scaling the new side's medians)
interleaved round by round, so machine drift hits all of them alike. Fixed work timed on the wall clock is what a
real workload is: another process taking the CPU makes it slower. (`util.noop` busy-waits *until* a wall-clock
deadline, so load cannot change its duration — its instance CV is ~0.02 % — and it is useless for this test.)

Each simulated comparison then does what `instances: auto` does at default settings: it draws a pilot of
`pilot_instances` base instances, lets `pilot.choose_instances` pick N (clamped to [min_instances, max_instances]),
draws the base's remaining N − pilot instances and the new side's N, all without replacement (A/A: 2N disjoint
instances from the base pool), and runs the full verdict pipeline (bootstrap CI, MWU, Holm, TOST) on them. `--n`
adds rows at a fixed N. Resampling a measured pool is what makes 1000s of comparisons affordable; its limit is that
all pool instances share one run's conditions (same day, same boot).

    python benchmarks/bench_methodology.py [--pool 60] [--trials 300] [--pilot 4] [--n 16] [--pool-csv pool.csv]
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

from benchbed.pilot import choose_instances
from benchbed.results import load_run
from benchbed.schema import Suite
from benchbed.stats import instance_medians
from benchbed.verdict import compare_instances, threshold_for

THRESHOLDS = {"bench.*": 0.03}  # the class of util.* / io.* / copies: 3 %
SPIN = '''
import time
from dataclasses import dataclass

from benchbed.workloads import Sample, workload


@dataclass(frozen=True)
class Spin:
    work: int = 200000
    clock: str = "wall"


@workload("bench.spin", params=Spin)
def spin(p, ctx):
    """A fixed amount of pure-Python work, timed on the wall clock: load on the machine makes it slower."""
    clock = time.perf_counter_ns if p.clock == "wall" else time.process_time_ns
    for phase, rep in ctx.schedule():
        t0 = clock()
        x = 0
        for i in range(p.work):
            x += i
        yield Sample("duration", (clock() - t0) / 1e6, "ms", "lower", phase, rep)
'''
SUITE = """name: methodology
baseline: local
seed: 11
modules: [spin.py]
defaults: {{instances: {pool}, repetitions: 5, warmup: 1}}
workloads:
  - name: bench.spin
    params: {{work: [200000, 206000, 210000], clock: [wall, cpu]}}
  - name: cpu.gemm
    params: {{n: 192}}
"""


def measure(pool: int) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "suite.yaml"
        suite.write_text(SUITE.format(pool=pool), encoding="utf-8")
        (Path(tmp) / "spin.py").write_text(SPIN, encoding="utf-8")
        cmd = [sys.executable, "-m", "benchbed.cli", "run", str(suite), "--out", tmp, "--no-report"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        (run_dir,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        return instance_medians(load_run(run_dir).samples)


def frame(values: np.ndarray, target: str, workload: str, metric: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"workload": workload, "params": "{}", "metric": metric, "target": target, "median": values, "n": 5}
    )


def default_suite(workload: str, pilot: int) -> Suite:
    """The defaults a suite gets when it says nothing about instances (`instances: auto`)."""
    return Suite.model_validate(
        {
            "name": "m",
            "defaults": {"pilot_instances": pilot},
            "thresholds": THRESHOLDS,
            "workloads": [{"name": workload}],
        }
    )


def auto_n(pilot_values: np.ndarray, suite: Suite, workload: str, metric: str) -> int:
    """The N `instances: auto` picks from these pilot instance medians (one sample per instance is enough)."""
    samples = pd.DataFrame(
        {"target": "a", "workload": workload, "params": "{}", "metric": metric, "unit": "", "better": "",
         "value": pilot_values, "instance": range(len(pilot_values)), "repetition": 0, "phase": "measure",
         "valid": True}
    )  # fmt: skip
    (n,) = choose_instances(samples, suite).values()
    return n


def rates(
    base: np.ndarray,
    slow: dict[str, np.ndarray],
    n: int | None,
    trials: int,
    workload: str,
    metric: str,
    better: str,
    suite: Suite,
) -> tuple[dict[str, float], list[int]]:
    """Share of comparisons whose verdict is `regression` — A/A (false positives) and each slowdown — and the Ns
    used. `n` None: N from a fresh pilot per comparison, as `instances: auto` would pick it."""
    rng = np.random.default_rng(7)
    info = pd.DataFrame([{"workload": workload, "params": "{}", "metric": metric, "unit": "", "better": better}])
    pilot = suite.defaults.pilot_instances
    out: dict[str, float] = {}
    ns: list[int] = []
    for name, pool in {"A/A": None, **slow}.items():
        hits = 0
        for t in range(trials):
            order = rng.permutation(len(base))
            k = n if n is not None else auto_n(base[order[:pilot]], suite, workload, metric)
            k = min(k, len(base) // 2 if pool is None else len(base))
            a = base[order[:k]]  # the pilot's instances are the first of the base's N
            b = base[order[k : 2 * k]] if pool is None else pool[rng.choice(len(pool), k, replace=False)]
            v = compare_instances(
                frame(a, "a", workload, metric),
                frame(b, "b", workload, metric),
                info=info,
                seed=t,
                n_resamples=999,
                thresholds=THRESHOLDS,
            )
            hits += v["verdict"].iloc[0] == "regression"
            ns.append(k)
        out[name] = hits / trials
    return out, ns


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=60, help="instances measured per pool")
    ap.add_argument("--trials", type=int, default=300, help="simulated comparisons per cell")
    ap.add_argument("--pilot", type=int, nargs="*", default=[4], help="pilot sizes to simulate (4 is the default)")
    ap.add_argument("--n", type=int, nargs="*", default=[], help="fixed instances per side to simulate as well")
    ap.add_argument("--pool-csv", type=Path, help="reuse (or save) the measured instance medians")
    ap.add_argument(
        "--synthetic",
        type=float,
        nargs="*",
        default=[],
        help="also simulate log-normal pools with these instance CVs (e.g. 0.01 0.02): checks the pilot's N where the "
        "noise allows a 3 %% gate, which this machine's may not",
    )
    args = ap.parse_args()
    t0 = time.monotonic()
    if args.pool_csv and args.pool_csv.exists():
        inst = pd.read_csv(args.pool_csv, dtype={"params": str})
    else:
        inst = measure(args.pool)
        if args.pool_csv:
            inst.to_csv(args.pool_csv, index=False)
    print(f"measured {len(inst)} instance medians in {time.monotonic() - t0:.0f} s")
    spin = inst[inst["workload"] == "bench.spin"]
    pools = {
        tuple(json.loads(p)[k] for k in ("clock", "work")): g["median"].to_numpy(float)
        for p, g in spin.groupby("params")
    }
    gemm = inst[inst["workload"] == "cpu.gemm"]["median"].to_numpy(float)
    gemm_slow = {"−3 %": gemm * 0.97, "−5 %": gemm * 0.95}  # planted on the new side; A/A stays real
    cases = [
        (f"bench.spin clock={c}", "bench.spin", "duration", "lower", pools[c, 200000],
         {"+3 %": pools[c, 206000], "+5 %": pools[c, 210000]})
        for c in ("wall", "cpu")
    ]  # fmt: skip
    cases.append(("cpu.gemm n=192", "cpu.gemm", "throughput", "higher", gemm, gemm_slow))
    rng = np.random.default_rng(5)
    for cv in args.synthetic:  # synthetic, not measured: the same shape as a quiet machine's pool
        draw = [5.0 * np.exp(rng.normal(0, cv, args.pool)) for _ in range(3)]
        slow = {"+3 %": draw[1] * 1.03, "+5 %": draw[2] * 1.05}
        cases.append((f"synthetic log-normal, CV {cv:.0%}", "bench.spin", "duration", "lower", draw[0], slow))
    print("| workload | instance CV | threshold | N per side | A/A false positives | 3 % detected | 5 % detected |")
    print("|---|---|---|---|---|---|---|")
    for label0, workload, metric, better, pool, slow in cases:
        cv = float(np.std(np.log(pool), ddof=1))
        thr = threshold_for(workload, metric, THRESHOLDS)
        settings: list[tuple[str, int | None, int]] = [(f"auto, pilot {p}", None, p) for p in args.pilot]
        settings += [(str(n), n, args.pilot[0] if args.pilot else 4) for n in args.n]
        for label, n, pilot in settings:
            suite = default_suite(workload, pilot)
            r, ns = rates(pool, slow, n, args.trials, workload, metric, better, suite)
            v = list(r.values())
            if n is None:
                q = np.percentile(ns, [0, 50, 100]).astype(int)
                capped = np.mean(np.array(ns) >= suite.defaults.max_instances)
                label += f": median {q[1]} (range {q[0]}–{q[2]}, {capped:.0%} at the cap)"
            print(f"| {label0} | {cv:.1%} | {thr:.0%} | {label} | {v[0]:.1%} | {v[1]:.1%} | {v[2]:.1%} |", flush=True)
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
