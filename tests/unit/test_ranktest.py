"""The verdict's rank test is exact at every N it allows, and the MDE it reports is that test's 80 % power point."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from benchbed.ranktest import critical_u, mann_whitney, min_mwu_p
from benchbed.verdict import compare_pairs, mde_from_sd


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


def _exact_power(shift: float, n: int, sd: float, draws: int = 4000) -> float:
    """Rejection rate of the exact two-sided MWU at 0.05 under normal log noise (independent of ranktest's draws)."""
    rng = np.random.default_rng(99)
    a = rng.normal(0.0, sd, (draws, n))
    b = rng.normal(shift, sd, (draws, n))
    u = (b[:, :, None] > a[:, None, :]).sum(axis=(1, 2))
    crit = critical_u(n, n, 0.05)
    assert crit is not None
    return float(((u >= crit) | (u <= n * n - crit)).mean())


@pytest.mark.parametrize("n", [5, 10, 20])
def test_the_reported_mde_has_80_percent_power_for_the_test_actually_used(n: int) -> None:
    effect = mde_from_sd(0.01, n, 0.01, n)
    assert 0.77 <= _exact_power(math.log1p(effect), n, 0.01) <= 0.83


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
