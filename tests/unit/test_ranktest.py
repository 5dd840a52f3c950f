"""The verdict's rank test is exact at every N it allows, and the MDE it reports is that test's 80 % power point."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from benchbed.ranktest import critical_u, mann_whitney, min_mwu_p
from benchbed.verdict import compare_pairs, decide, judge, mde_from_sd


@pytest.mark.parametrize("n", [5, 8, 9, 12, 20])
def test_complete_separation_reaches_the_exact_floor_at_every_n(n: int) -> None:
    a = np.arange(1.0, n + 1)
    assert mann_whitney(a, a + 100) == pytest.approx(min_mwu_p(n, n), rel=1e-9)
    assert min_mwu_p(n, n) == pytest.approx(2 / math.comb(2 * n, n))


def test_exact_p_matches_scipys_exact_distribution_without_ties() -> None:
    rng = np.random.default_rng(1)
    for n_a, n_b in [(9, 9), (10, 14), (20, 20)]:
        a, b = rng.normal(size=n_a), rng.normal(0.8, 1, size=n_b)
        expected = sps.mannwhitneyu(b, a, method="exact").pvalue
        assert mann_whitney(a, b) == pytest.approx(expected, rel=1e-12)


def test_ties_get_a_permutation_p_value_equal_to_full_enumeration() -> None:
    a = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 4.0])
    b = np.array([3.0, 4.0, 4.0, 5.0, 5.0, 6.0])
    pooled = np.concatenate([a, b])
    ranks = sps.rankdata(pooled)
    u_obs = ranks[6:].sum() - 21
    mean = 18.0
    extreme = 0
    splits = list(itertools.combinations(range(12), 6))
    for idx in splits:  # every split of the pooled values: the exact null distribution with these ties
        u = ranks[list(idx)].sum() - 21
        extreme += abs(u - mean) >= abs(u_obs - mean) - 1e-9
    assert mann_whitney(a, b) == pytest.approx(extreme / len(splits))


def _verdict_power(change: float, n: int, sd: float, trials: int = 300) -> float:
    """Share of comparisons `judge` + `decide` call a regression (independent draws from the MDE's own)."""
    rng = np.random.default_rng(99)
    a = np.exp(rng.normal(0.0, sd, (trials, n)))
    b = np.exp(rng.normal(math.log1p(change), sd, (trials, n)))
    hits = 0
    for t in range(trials):
        j = judge(a[t], b[t], threshold=0.001, rng=np.random.default_rng(t), n_resamples=999)
        hits += decide(j, j.p_mwu, "lower")[0] == "regression"
    return hits / trials


@pytest.mark.parametrize("n", [5, 10, 20])
def test_the_reported_mde_has_80_percent_power_for_the_verdict_actually_used(n: int) -> None:
    effect = mde_from_sd(0.01, n, 0.01, n)
    assert 0.72 <= _verdict_power(effect, n, 0.01) <= 0.88  # nominal 0.80; 300 trials: standard error 0.023


def test_critical_u_is_the_exact_tests_threshold() -> None:
    assert critical_u(3, 3, 0.05) is None  # 3 + 3 can never reach p < 0.05
    u = critical_u(5, 5, 0.05)
    assert u is not None
    a = np.arange(5.0)
    b_at = np.array([-0.5, 5, 6, 7, 8])  # U = 4 × 5 = 20 pairs where b is larger
    assert sps.mannwhitneyu(b_at, a, method="exact").statistic == 20
    assert (sps.mannwhitneyu(b_at, a, method="exact").pvalue < 0.05) == (u <= 20)


def test_more_instances_never_lose_a_clean_slowdown() -> None:
    """9 + 9 instances, 148 metrics, every one a clean +10 % slowdown: every one is a regression (the normal
    approximation gave Holm p 0.061 and 148 × inconclusive)."""
    rng = np.random.default_rng(3)
    rows_a, rows_b = [], []
    for m in range(148):
        base = 100.0 * np.exp(rng.normal(0.0, 0.005, 9))
        new = 110.0 * np.exp(rng.normal(0.0, 0.005, 9))
        rows_a += [{"workload": "w", "params": "{}", "metric": f"m{m}", "target": "a", "median": v} for v in base]
        rows_b += [{"workload": "w", "params": "{}", "metric": f"m{m}", "target": "b", "median": v} for v in new]
    info = pd.DataFrame([{"workload": "w", "params": "{}", "metric": f"m{m}", "unit": "s", "better": "lower"}
                         for m in range(148)])  # fmt: skip
    out = compare_pairs([(pd.DataFrame(rows_a), pd.DataFrame(rows_b))], info=info, n_resamples=199)
    assert (out["verdict"] == "regression").all(), out["note"].value_counts()
    assert out["p_mwu_holm"].max() < 0.01
