"""How honest is the regression gate? A/A false positives and detection of a planted 3 % slowdown, from the real
`benchbed.verdict.judge` + `decide`, on synthetic instance medians whose truth is known.

Grid: instance noise (sd of log instance medians) 1 %, 2 %, 5 % × 5, 10, 20 instances per side. Per cell and trial
the base side draws N log-normal instance medians, the new side N more — the same centre (A/A) or 3 % slower
(lower is better, so the change is a regression). Every trial is one comparison with one metric (a Holm family of
one): `judge` (bootstrap CI of the ratio, exact Mann–Whitney, TOST at the threshold, MDE) and `decide` give the
verdict. "False positives" is the share of A/A trials judged `regression` or `improvement`; "detected" the share of
planted trials judged `regression`. The MDE column is the one the verdict reports at the cell's true noise
(`verdict.mde_from_sd`), so the goal "≥ 90 % detection wherever the MDE is below 3 %" can be read off the table.

All draws for a cell are made at once (one (trials, N) array per side); the verdict code then runs per trial, as
it does in `benchbed compare`. Seeded: the same command prints the same table.

    python benchmarks/bench_methodology.py [--trials 300] [--threshold 0.02] [--resamples 999]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from benchbed.verdict import ALPHA, decide, judge, mde_from_sd

NOISES = (0.01, 0.02, 0.05)
SIZES = (5, 10, 20)
PLANTED = 0.03
GOAL_FP = 0.05
GOAL_DETECT = 0.90


def rate(base: np.ndarray, new: np.ndarray, threshold: float, resamples: int, seed: int) -> dict[str, float]:
    """Share of trials per verdict; each row of `base` / `new` is one comparison's instance medians."""
    counts: dict[str, int] = {}
    for t, (a, b) in enumerate(zip(base, new, strict=True)):
        rng = np.random.default_rng([seed, t])
        j = judge(a, b, threshold=threshold, rng=rng, n_resamples=resamples)
        verdict, _ = decide(j, j.p_mwu, "lower", alpha=ALPHA)  # one metric: Holm leaves its p as it is
        counts[verdict] = counts.get(verdict, 0) + 1
    return {k: v / len(base) for k, v in counts.items()}


def cell(noise: float, n: int, trials: int, threshold: float, resamples: int) -> dict[str, float]:
    rng = np.random.default_rng([20261130, round(noise * 1000), n])
    draws = np.exp(rng.normal(0.0, noise, (3, trials, n)))  # base, A/A new, planted new: one array, vectorised
    aa = rate(draws[0], draws[1], threshold, resamples, seed=1)
    planted = rate(draws[0], draws[2] * (1 + PLANTED), threshold, resamples, seed=2)
    return {
        "mde": mde_from_sd(noise, n, noise, n) * 100,
        "fp": aa.get("regression", 0.0) + aa.get("improvement", 0.0),
        "aa_equivalent": aa.get("equivalent", 0.0),
        "detected": planted.get("regression", 0.0),
        "planted_equivalent": planted.get("equivalent", 0.0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=300, help="comparisons per cell and condition")
    ap.add_argument("--threshold", type=float, default=0.02, help="the metric's threshold (TOST margin)")
    ap.add_argument("--resamples", type=int, default=999, help="bootstrap resamples per comparison")
    args = ap.parse_args()
    t0 = time.monotonic()
    print(f"{args.trials} trials per cell and condition; threshold ±{args.threshold:.0%}; planted +{PLANTED:.0%}")
    print()
    print("| instance noise | N per side | MDE (80 % power) | A/A false positives | A/A equivalent | "
          "+3 % detected | +3 % called equivalent |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    failures: list[str] = []
    for noise in NOISES:
        previous = -1.0
        for n in SIZES:
            r = cell(noise, n, args.trials, args.threshold, args.resamples)
            print(
                f"| {noise:.0%} | {n} | {r['mde']:.1f} % | {r['fp']:.1%} | {r['aa_equivalent']:.1%} | "
                f"{r['detected']:.1%} | {r['planted_equivalent']:.1%} |",
                flush=True,
            )
            se = math.sqrt(GOAL_DETECT * (1 - GOAL_DETECT) / args.trials)  # sampling error of a rate near the goal
            if r["fp"] > GOAL_FP:
                failures.append(f"noise {noise:.0%}, N {n}: false positives {r['fp']:.1%} > {GOAL_FP:.0%}")
            if r["mde"] < PLANTED * 100 and r["detected"] < GOAL_DETECT - 2 * se:
                failures.append(f"noise {noise:.0%}, N {n}: MDE {r['mde']:.1f} % but detected {r['detected']:.1%}")
            if r["detected"] < previous - 2 * se:
                failures.append(f"noise {noise:.0%}: detection fell to {r['detected']:.1%} at N {n}")
            previous = r["detected"]
    print()
    print(f"total {time.monotonic() - t0:.0f} s")
    for line in failures:
        print(f"goal missed: {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
