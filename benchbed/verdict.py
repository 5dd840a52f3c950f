"""Verdicts: is a target (or a new run) worse, better, the same, or can we not tell — per metric, with honest stats.

Inputs are *instance medians* (see `stats.instance_medians`): the instance is the unit of replication, so every
test below treats one instance as one observation. For each metric, with base instances `a` and new instances `b`:

* ratio of medians median(b)/median(a) with a bootstrap CI that resamples instances (`stats.bootstrap_ci`);
* Mann–Whitney U on the instance medians, exact at every N (`benchbed.ranktest`), as a distribution-free second
  check; its p-values are Holm-adjusted across every metric of one comparison;
* TOST equivalence on log instance medians (two one-sided Welch t-tests) against ±threshold, the threshold picked
  per metric with its source (`benchbed.thresholds`);
* the minimum detectable effect (MDE) at this noise: the change the significance rule below (rank test and CI
  together) detects with 80 % power at alpha 0.05 (one test), for normal log noise at the observed SDs and counts.

Verdict rules (direction-aware through `better`):
  significant   = Holm-adjusted MWU p < alpha AND the ratio's bootstrap CI excludes 1 (both checks agree)
  equivalent    = TOST p < alpha for the margin ±threshold (the 90 % CI of the log-ratio lies inside it)
  regression    = significant, worse, and not equivalent
  improvement   = significant, better, and not equivalent
  equivalent    = equivalent (a real but negligible change stays "equivalent")
  inconclusive  = anything else, including fewer than 2 instances on a side

Note that an exact two-sided MWU test cannot go below 2/C(n_a+n_b, n_a): with 3 + 3 instances that is 0.1, so at
least 4 instances per side (5+ when Holm divides alpha among many metrics) are needed before anything can be
flagged. `min_p` in the output says what the test could reach.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from benchbed.power import shift_detected
from benchbed.ranktest import mann_whitney, min_mwu_p
from benchbed.stats import DEFAULT_RESAMPLES, DEFAULT_SEED, KEYS, Array, _median_ratio, bootstrap_ci
from benchbed.thresholds import DEFAULT_THRESHOLDS, FALLBACK_THRESHOLD, ThresholdRules, threshold_for

Verdict = Literal["regression", "improvement", "equivalent", "inconclusive"]
ALPHA = 0.05
POWER = 0.80
NAN = math.nan
EXACT_SEARCH_MAX = 60  # instances_needed: exact MDE search up to this N per side
__all__ = [
    "DEFAULT_THRESHOLDS",
    "FALLBACK_THRESHOLD",
    "ThresholdRules",
    "mann_whitney",
    "min_mwu_p",
    "threshold_for",
]

VERDICT_COLUMNS = [
    *KEYS,
    "unit",
    "better",
    "base",
    "target",
    "n_base",
    "n_new",
    "base_median",
    "new_median",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "change_pct",
    "threshold",
    "threshold_source",
    "mde_pct",
    "p_mwu",
    "p_mwu_holm",
    "min_p",
    "p_tost",
    "verdict",
    "note",
]


def holm(pvalues: Array | list[float]) -> Array:
    """Holm step-down adjusted p-values (NaN stays NaN and does not count as a test).

    scipy has Bonferroni-free BH/BY (`false_discovery_control`) but no Holm, and statsmodels is not a dependency;
    Holm controls the family-wise error rate (what a CI gate needs: P(any false regression) ≤ alpha).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, NAN)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]) if m else np.array([])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def _logs(x: Array) -> Array | None:
    return np.log(x) if len(x) and np.all(x > 0) else None


def tost(a: Array, b: Array, margin: float) -> float:
    """Equivalence p-value of b vs a within ±margin (relative), on log instance medians (Welch, two one-sided).

    The margin is symmetric on the ratio scale: [1/(1+margin), 1+margin]. p < alpha ⇒ "within ±margin".
    """
    la, lb = _logs(a), _logs(b)
    if la is None or lb is None or len(la) < 2 or len(lb) < 2 or margin <= 0:
        return NAN
    bound = math.log1p(margin)
    if np.ptp(la) == 0 and np.ptp(lb) == 0:  # no noise at all: equivalent iff the ratio is inside the margin
        return 0.0 if abs(float(lb[0] - la[0])) < bound else 1.0
    lower = sps.ttest_ind(lb + bound, la, equal_var=False, alternative="greater").pvalue  # H0: diff ≤ −bound
    upper = sps.ttest_ind(lb - bound, la, equal_var=False, alternative="less").pvalue  # H0: diff ≥ +bound
    return float(max(lower, upper))


def mde_from_sd(sd_a: float, n_a: int, sd_b: float, n_b: int, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable relative change: the change the verdict's significance rule (exact MWU and the median
    ratio's bootstrap CI, both at `alpha`) detects with `power`, for normal log noise with these log-SDs and counts
    (`benchbed.power` states the assumptions). Per test: Holm over m metrics asks more of each p."""
    if n_a < 2 or n_b < 2:
        return NAN
    return float(math.expm1(shift_detected(sd_a, n_a, sd_b, n_b, alpha=alpha, power=power)))


def mde(a: Array, b: Array, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """`mde_from_sd` at the observed instance-level SDs (of log instance medians) and counts."""
    la, lb = _logs(a), _logs(b)
    if la is None or lb is None or len(la) < 2 or len(lb) < 2:
        return NAN
    sd_a, sd_b = float(np.std(la, ddof=1)), float(np.std(lb, ddof=1))
    return mde_from_sd(sd_a, len(la), sd_b, len(lb), alpha=alpha, power=power)


def instances_needed(cv: float, threshold: float, *, alpha: float = ALPHA, power: float = POWER, cap: int = 30) -> int:
    """Instances per side so that the MDE (`mde_from_sd`) at between-instance CV `cv` is ≤ threshold — at least
    what the exact MWU needs to reach alpha at all — capped at `cap`.

    Start from the normal approximation (t-test sample size × π/3, the rank test's efficiency on normal data), then
    step to the smallest N whose MDE fits; past `EXACT_SEARCH_MAX` the approximation stands (it is then close)."""
    need_mwu = next(n for n in range(2, 100) if min_mwu_p(n, n) < alpha)
    if not math.isfinite(cv) or cv <= 0:
        return min(cap, need_mwu)
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    n = max(need_mwu, math.ceil(2 * (z * cv / math.log1p(threshold)) ** 2 * math.pi / 3) + 1)
    if n <= EXACT_SEARCH_MAX:

        def fits(k: int) -> bool:
            return mde_from_sd(cv, k, cv, k, alpha=alpha, power=power) <= threshold

        while n > need_mwu and fits(n - 1):
            n -= 1
        while n < EXACT_SEARCH_MAX and not fits(n):
            n += 1
    return int(min(cap, n))


@dataclass(frozen=True)
class Judgement:
    """Unadjusted per-metric result; `decide` turns it into a verdict once Holm has seen the whole family."""

    n_base: int
    n_new: int
    base_median: float
    new_median: float
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float
    threshold: float
    mde_pct: float
    p_mwu: float
    min_p: float
    p_tost: float


def judge(
    a: Array,
    b: Array,
    *,
    threshold: float,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = ALPHA,
) -> Judgement:
    """Everything about base instance medians `a` vs new instance medians `b` except the multiplicity step."""
    ma = float(np.median(a)) if len(a) else NAN
    mb = float(np.median(b)) if len(b) else NAN
    ratio = mb / ma if len(a) and len(b) and ma != 0 else NAN
    low, high = NAN, NAN
    if math.isfinite(ratio):
        low, high, _ = bootstrap_ci((b, a), _median_ratio, rng=rng, confidence=1 - alpha, n_resamples=n_resamples)
    return Judgement(
        n_base=len(a),
        n_new=len(b),
        base_median=ma,
        new_median=mb,
        ratio=ratio,
        ratio_ci_low=low,
        ratio_ci_high=high,
        threshold=threshold,
        mde_pct=mde(a, b, alpha=alpha) * 100.0,
        p_mwu=mann_whitney(a, b),
        min_p=min_mwu_p(len(a), len(b)),
        p_tost=tost(a, b, threshold),
    )


def decide(j: Judgement, p_adjusted: float, better: str, *, alpha: float = ALPHA) -> tuple[Verdict, str]:
    """Verdict and a short reason, from a judgement and its Holm-adjusted MWU p-value (rules: module doc)."""
    if j.n_base < 2 or j.n_new < 2:
        return "inconclusive", "needs ≥ 2 instances on each side"
    equivalent = math.isfinite(j.p_tost) and j.p_tost < alpha
    ci_excludes = math.isfinite(j.ratio_ci_low) and (j.ratio_ci_low > 1 or j.ratio_ci_high < 1)
    significant = ci_excludes and math.isfinite(p_adjusted) and p_adjusted < alpha
    if significant and not equivalent and better in ("higher", "lower"):
        worse = (j.ratio < 1) if better == "higher" else (j.ratio > 1)
        return ("regression" if worse else "improvement"), ""
    if equivalent:
        return "equivalent", f"within ±{j.threshold * 100:g}%"
    if significant:
        return "inconclusive", f"changed, but direction unknown (better={better!r})"
    if math.isfinite(j.min_p) and j.min_p >= alpha:
        return "inconclusive", f"too few instances for the rank test (min p {j.min_p:.2g})"
    if ci_excludes:
        return "inconclusive", "CI excludes 1 but the rank test (Holm) does not agree"
    return "inconclusive", f"MDE {j.mde_pct:.1f}% vs threshold {j.threshold * 100:g}%"


def compare_pairs(
    pairs: list[tuple[pd.DataFrame, pd.DataFrame]],
    *,
    thresholds: ThresholdRules | Mapping[str, float] | None = None,
    alpha: float = ALPHA,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    info: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One verdict row per (workload, params, metric) present on both sides of each (base, new) pair, with ONE
    Holm family over all their rows: one call = one comparison = one gate, so P(any false regression) ≤ alpha
    holds for the whole gate. Columns `VERDICT_COLUMNS`.

    `base` / `new` are `stats.instance_medians` frames, each of one target (their target names may differ).
    `info` (optional) gives unit and better per KEYS (e.g. the first sample of each); absent ⇒ better unknown.
    """
    units: dict[tuple[str, ...], tuple[str, str]] = {}
    if info is not None and not info.empty:
        for rec in info[[*KEYS, "unit", "better"]].drop_duplicates(KEYS).itertuples(index=False):
            units[tuple(str(x) for x in rec[:3])] = (str(rec[3]), str(rec[4]))
    rules = thresholds if isinstance(thresholds, ThresholdRules) else ThresholdRules(suite=dict(thresholds or {}))
    judged: list[tuple[tuple[str, ...], str, str, Judgement, str]] = []
    for base, new in pairs:
        groups_a = {tuple(str(x) for x in k): g["median"].to_numpy(float) for k, g in base.groupby(KEYS, sort=False)}
        groups_b = {tuple(str(x) for x in k): g["median"].to_numpy(float) for k, g in new.groupby(KEYS, sort=False)}
        base_name = str(base["target"].iloc[0]) if len(base) else ""
        new_name = str(new["target"].iloc[0]) if len(new) else ""
        for key in (k for k in groups_a if k in groups_b):
            rng = np.random.default_rng([seed, zlib.crc32("\x1f".join((*key, new_name)).encode())])
            thr = rules.pick(key[0], key[2])
            j = judge(groups_a[key], groups_b[key], threshold=thr.value, rng=rng, n_resamples=n_resamples, alpha=alpha)
            judged.append((key, base_name, new_name, j, thr.source))
    adjusted = holm([j.p_mwu for *_, j, _ in judged])
    rows: list[dict[str, Any]] = []
    for (key, base_name, new_name, j, source), p_adj in zip(judged, adjusted, strict=True):
        unit, better = units.get(key, ("", "unknown"))
        verdict, note = decide(j, float(p_adj), better, alpha=alpha)
        row: dict[str, Any] = dict(zip(KEYS, key, strict=True))
        row.update(unit=unit, better=better, base=base_name, target=new_name, threshold_source=source, **asdict(j))
        row.update(change_pct=(j.ratio - 1) * 100.0, p_mwu_holm=float(p_adj), verdict=verdict, note=note)
        rows.append(row)
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)
