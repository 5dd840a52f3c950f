"""The rank test the verdict uses — Mann–Whitney U, exact at every N — and what it can detect.

scipy's `mannwhitneyu(method="auto")` is exact only up to 8 values per side and switches to the normal
approximation above, which at 9 + 9 instances is ~10× too large at complete separation (4.1e-4 instead of 4.1e-5):
more instances could then *lose* verdicts. So the p-value here is always from the exact null distribution of U:

* no ties: `method="exact"` (scipy's exact distribution of U);
* ties: a permutation test of U (`scipy.stats.PermutationMethod`), exact — every split of the pooled values — when
  there are at most `PERMUTATIONS` of them, otherwise `PERMUTATIONS` seeded random splits (deterministic per data).

`min_mwu_p` is the smallest two-sided p this test can give at given counts: 2/C(n_a + n_b, n_a) (complete
separation). A tied sample too large for every split is randomised and cannot go below 2/(PERMUTATIONS + 1) ≈ 2e-5,
which only matters past Holm families of ~2500 metrics.

`critical_shifts` serves the MDE (`benchbed.power`): for a simulated draw, the smallest shift at which this exact
test rejects is an order statistic of the pairwise differences, so no search over the shift is needed.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

Array = npt.NDArray[np.float64]
PERMUTATIONS = 99_999  # ties: exact below this many splits, else this many random ones
_SEED = 20240602
_CHUNK_ELEMENTS = 2_000_000  # bounds the memory of the pairwise differences: draws × n_a × n_b per chunk


def mann_whitney(a: Array, b: Array) -> float:
    """Two-sided Mann–Whitney U p-value of `b` vs `a` from U's exact null distribution (permutation with ties);
    NaN with < 2 values a side or every value tied."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    pooled = np.concatenate([a, b])
    if np.ptp(pooled) == 0:
        return math.nan
    if len(np.unique(pooled)) == len(pooled):
        return float(sps.mannwhitneyu(b, a, alternative="two-sided", method="exact").pvalue)
    method = sps.PermutationMethod(n_resamples=PERMUTATIONS, rng=np.random.default_rng(_SEED))
    return float(sps.mannwhitneyu(b, a, alternative="two-sided", method=method).pvalue)


def min_mwu_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p `mann_whitney` can give with these counts (complete separation)."""
    if n_a < 1 or n_b < 1:
        return math.nan
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


@lru_cache(maxsize=256)
def _null_upper_tail(n_a: int, n_b: int) -> tuple[float, ...]:
    """P(U ≥ u) for u = 0 … n_a·n_b under H0 (no ties), from the Gaussian-binomial count of each U value."""
    size = n_a * n_b
    counts = [0] * (size + 1)
    counts[0] = 1
    # coefficients of prod_{i=1..n_a} (1 - q^(n_b+i)) / (1 - q^i): exact integers
    for i in range(1, n_a + 1):
        for k in range(size, n_b + i - 1, -1):
            counts[k] -= counts[k - n_b - i]
        for k in range(i, size + 1):
            counts[k] += counts[k - i]
    total = math.comb(n_a + n_b, n_a)
    tail, acc = [0.0] * (size + 1), 0
    for u in range(size, -1, -1):
        acc += counts[u]
        tail[u] = acc / total
    return tuple(tail)


def critical_u(n_a: int, n_b: int, alpha: float) -> int | None:
    """Smallest U (pairs where the new value is larger) at which the exact two-sided test gives p < alpha."""
    tail = _null_upper_tail(n_a, n_b)
    return next((u for u, p in enumerate(tail) if 2.0 * p < alpha), None)


def critical_shifts(za: Array, zb: Array, alpha: float) -> Array:
    """Per row (one simulated comparison of base `za` and new `zb`, logs): the smallest shift δ added to the new
    side at which the exact two-sided test gives p < alpha in the new side's favour (inf if it never can)."""
    n_a, n_b = za.shape[1], zb.shape[1]
    u_crit = critical_u(n_a, n_b, alpha)
    out = np.full(len(za), math.inf)
    if u_crit is None:
        return out
    chunk = max(1, _CHUNK_ELEMENTS // (n_a * n_b))
    for start in range(0, len(za), chunk):
        stop = min(len(za), start + chunk)
        # new value j beats base value i iff δ > za_i − zb_j: U(δ) = #{differences < δ} ≥ u_crit
        diff = (za[start:stop, :, None] - zb[start:stop, None, :]).reshape(stop - start, -1)
        out[start:stop] = np.partition(diff, u_crit - 1, axis=1)[:, u_crit - 1]
    return out
