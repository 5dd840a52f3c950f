"""The MDE of the verdict's own significance rule: what `judge` + `decide` detect with 80 % power.

A change is significant when the exact Mann–Whitney test gives p < alpha **and** the BCa bootstrap CI of the ratio
of medians excludes 1. Both must agree, so the rule is less powerful than either check alone — at 10 + 10
instances the median CI is the binding one, and a Welch-t or rank-test MDE would promise changes the verdict
then misses. So the MDE is computed for the rule itself, by simulation, under these assumptions (stated in
docs/methodology.md): log instance medians are normal with one SD on both sides (the pooled observed SD), a pure
shift, one test at `alpha` (Holm over m metrics asks more of each), unequal counts treated as their harmonic mean.

For each simulated draw (common random numbers, fixed seed) the smallest shift δ at which each check passes is
computed directly, without a search over δ: the rank test's is an order statistic of the pairwise differences
(`ranktest.critical_shifts`); the CI's is −log of its lower bound at δ = 0 (a shift of the new side moves every
bootstrap ratio by e^δ, and BCa is transformation-respecting). The rule's critical shift per draw is the larger of
the two; the MDE is its `power`-quantile. At the default alpha and power the multipliers per N are precomputed in
`data/mde.json` (`python -m benchbed.power` rewrites it); other settings are simulated on first use and cached.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import stats as sps

from benchbed.ranktest import critical_shifts, critical_u
from benchbed.stats import _median_ratio

DRAWS = 2000
RESAMPLES = 999
TABLE_N = (*range(4, 17), 18, 20, 24, 28, 32, 40)  # between these, interpolated in 1/√N
_SEED = 20261130
_NOISE = 0.01  # simulate at 1 % noise: small enough that a median of e^x is e^(median of x) for even N too


def simulate(n: int, alpha: float, power: float, *, draws: int = DRAWS, resamples: int = RESAMPLES) -> float:
    """Shift of the mean log, in SDs, that the significance rule detects with `power` at n + n instances."""
    if critical_u(n, n, alpha) is None:
        return math.inf
    rng = np.random.default_rng([_SEED, n])
    za, zb = rng.standard_normal((draws, n)) * _NOISE, rng.standard_normal((draws, n)) * _NOISE
    rank = critical_shifts(za, zb, alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap(
            (np.exp(zb), np.exp(za)),
            _median_ratio,
            n_resamples=resamples,
            vectorized=True,
            paired=False,
            confidence_level=1 - alpha,
            method="BCa",
            axis=-1,
            rng=rng,
        )
    ci = -np.log(np.asarray(res.confidence_interval.low, dtype=float))
    ci = np.where(np.isfinite(ci), ci, rank)  # a degenerate BCa row: the rank test alone decides it
    return float(np.quantile(np.maximum(rank, ci), power)) / _NOISE


def _table_path() -> Path:
    return Path(str(resources.files("benchbed").joinpath("data/mde.json")))


@lru_cache(maxsize=1)
def _table() -> tuple[float, float, dict[int, float]]:
    try:
        doc = json.loads(_table_path().read_text(encoding="utf-8"))
        return float(doc["alpha"]), float(doc["power"]), {int(k): float(v) for k, v in doc["shift_in_sd"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return math.nan, math.nan, {}


@lru_cache(maxsize=256)
def _multiplier(n: int, alpha: float, power: float) -> float:
    t_alpha, t_power, table = _table()
    if (alpha, power) != (t_alpha, t_power) or not table or n < min(table):
        return simulate(n, alpha, power)
    if n in table:
        return table[n]
    top = max(table)
    if n > top:  # the median CI's width shrinks as 1/√N; past the table that scaling is close
        return table[top] * math.sqrt(top / n)
    low, high = max(k for k in table if k < n), min(k for k in table if k > n)
    w = (1 / math.sqrt(n) - 1 / math.sqrt(low)) / (1 / math.sqrt(high) - 1 / math.sqrt(low))
    return table[low] + (table[high] - table[low]) * w


def shift_detected(sd_a: float, n_a: int, sd_b: float, n_b: int, *, alpha: float, power: float) -> float:
    """Shift of the mean log instance median that the verdict's significance rule detects with `power` (inf when
    the counts cannot reach alpha at all; 0 without noise)."""
    if n_a < 2 or n_b < 2 or critical_u(n_a, n_b, alpha) is None:
        return math.inf
    sd = math.sqrt((sd_a**2 + sd_b**2) / 2)
    if sd == 0:
        return 0.0
    n_eff = 2.0 / (1.0 / n_a + 1.0 / n_b)
    low, high = math.floor(n_eff), math.ceil(n_eff)
    k_low = _multiplier(low, alpha, power)
    if high == low or not math.isfinite(k_low):
        return sd * _multiplier(high, alpha, power)
    k_high = _multiplier(high, alpha, power)
    return sd * (k_low + (k_high - k_low) * (n_eff - low))


def main() -> int:
    """Rewrite data/mde.json (a few minutes on two cores)."""
    alpha, power = 0.05, 0.80
    out = {"alpha": alpha, "power": power, "draws": DRAWS, "resamples": RESAMPLES, "shift_in_sd": {}}
    for n in TABLE_N:
        out["shift_in_sd"][str(n)] = round(simulate(n, alpha, power), 4)  # type: ignore[index]
        print(n, out["shift_in_sd"][str(n)], flush=True)  # type: ignore[index]
    _table_path().write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
