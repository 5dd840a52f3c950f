"""benchbed.verdict on synthetic instance medians whose truth is known (seeded generators, no I/O)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from benchbed.stats import DEFAULT_SEED, _median_ratio, bootstrap_ci
from benchbed.verdict import (
    VERDICT_COLUMNS,
    compare_pairs,
    holm,
    instances_needed,
    mann_whitney,
    mde,
    mde_from_sd,
    min_mwu_p,
    threshold_for,
    tost,
)


def compare_one(base: pd.DataFrame, new: pd.DataFrame, **kw: Any) -> pd.DataFrame:
    """One (base, new) pair: its own Holm family."""
    return compare_pairs([(base, new)], **kw)


def lognormal(rng: np.random.Generator, centre: float, cv: float, n: int) -> np.ndarray:
    return centre * np.exp(rng.normal(0.0, cv, n))


def frame(target: str, values: dict[str, np.ndarray], workload: str = "w") -> pd.DataFrame:
    rows = [
        {"workload": workload, "params": "{}", "metric": m, "target": target, "instance": i, "median": v, "n": 5}
        for m, vs in values.items()
        for i, v in enumerate(vs)
    ]
    return pd.DataFrame(rows)


def info(better: dict[str, str], workload: str = "w") -> pd.DataFrame:
    return pd.DataFrame(
        [{"workload": workload, "params": "{}", "metric": m, "unit": "u", "better": b} for m, b in better.items()]
    )


def test_holm_matches_hand_computation_and_skips_nan() -> None:
    adj = holm([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 × 4, 3, 2, 1 = .02, .03, .06, .04 → running max .02, .03, .06, .06
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = holm([0.01, math.nan, 0.5])
    assert with_nan[0] == pytest.approx(0.02)
    assert math.isnan(with_nan[1])
    assert with_nan[2] == pytest.approx(0.5)
    assert holm([0.9, 0.8]).max() <= 1.0
    assert len(holm([])) == 0


def test_min_mwu_p_floor_and_mann_whitney_exact() -> None:
    assert min_mwu_p(3, 3) == pytest.approx(0.1)
    assert min_mwu_p(5, 5) == pytest.approx(2 / 252)
    a, b = np.arange(1.0, 6.0), np.arange(10.0, 15.0)
    assert mann_whitney(a, b) == pytest.approx(2 / 252)
    assert math.isnan(mann_whitney(a[:1], b))
    assert math.isnan(mann_whitney(np.ones(3), np.ones(3)))


def test_bootstrap_ratio_ci_covers_the_true_ratio_near_nominal() -> None:
    rng = np.random.default_rng(1)
    trials, hits = 150, 0
    for _ in range(trials):
        a = lognormal(rng, 100.0, 0.02, 12)
        b = lognormal(rng, 103.0, 0.02, 12)
        low, high, _ = bootstrap_ci((b, a), _median_ratio, rng=rng, n_resamples=499)
        hits += low <= 1.03 <= high
    assert 0.88 <= hits / trials <= 0.99  # nominal 0.95; bootstrap of a median on n=12 runs slightly liberal


def test_tost_says_equivalent_only_inside_the_margin() -> None:
    rng = np.random.default_rng(2)
    a = lognormal(rng, 100.0, 0.01, 10)
    same = lognormal(rng, 100.0, 0.01, 10)
    far = lognormal(rng, 105.0, 0.01, 10)
    assert tost(a, same, 0.03) < 0.05
    assert tost(a, far, 0.03) > 0.5
    assert tost(a, far, 0.10) < 0.05
    assert math.isnan(tost(a[:1], same, 0.03))
    assert tost(np.full(3, 2.0), np.full(3, 2.01), 0.03) == 0.0  # noise-free, inside
    assert tost(np.full(3, 2.0), np.full(3, 2.2), 0.03) == 1.0


def test_tost_false_equivalence_rate_at_the_margin_is_at_most_alpha() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(0.0, 0.02, (300, 8))
    b = rng.normal(math.log1p(0.03), 0.02, (300, 8))  # truth exactly on the margin: H0 of TOST holds
    p = np.array([tost(np.exp(x), np.exp(y), 0.03) for x, y in zip(a, b, strict=True)])
    assert (p < 0.05).mean() <= 0.08  # nominal ≤ 0.05; 300 trials have a standard error of 0.013


def test_mde_is_the_observed_noise_at_the_rank_tests_power() -> None:
    rng = np.random.default_rng(4)
    effect = mde_from_sd(0.02, 8, 0.02, 8)
    assert 0.025 < effect < 0.045
    base = rng.normal(0.0, 0.02, (1, 8))
    shifted = rng.normal(math.log1p(effect), 0.02, (1, 8))
    observed = mde(np.exp(base[0]), np.exp(shifted[0]))
    assert 0.3 * effect < observed < 3 * effect
    assert math.isnan(mde(np.ones(1), np.ones(3)))
    assert mde_from_sd(0.0, 5, 0.0, 5) == 0.0
    assert mde_from_sd(0.01, 3, 0.01, 3) == math.inf  # 3 + 3 cannot reach p < 0.05: no change is detectable


def test_instances_needed_grows_with_noise_and_respects_mwu_floor_and_cap() -> None:
    assert instances_needed(0.001, 0.05) == 4  # MWU needs 4 + 4 to reach p < 0.05 at all
    n = instances_needed(0.01, 0.03)
    assert mde_from_sd(0.01, n, 0.01, n) <= 0.03 < mde_from_sd(0.01, n - 1, 0.01, n - 1)  # the smallest that fits
    low, high = instances_needed(0.01, 0.03), instances_needed(0.03, 0.03)
    assert low < high
    assert instances_needed(0.5, 0.01, cap=12) == 12
    assert instances_needed(math.nan, 0.03) == 4


def test_thresholds_by_class_and_overrides() -> None:
    assert threshold_for("gpu.gemm", "throughput") == 0.01
    assert threshold_for("io.seq_read", "throughput") == 0.03
    assert threshold_for("io.fsync", "lat_p99_us") == 0.05
    assert threshold_for("startup.process", "spawn_to_exit") == 0.10
    assert threshold_for("custom.x", "m") == 0.05
    assert threshold_for("io.seq_read", "throughput", {"io.*": 0.02}) == 0.02
    assert threshold_for("gpu.gemm", "throughput", {"*:throughput": 0.07}) == 0.07


@pytest.mark.parametrize(
    ("better", "shift", "expected"),
    [
        ("higher", 0.95, "regression"),
        ("higher", 1.05, "improvement"),
        ("higher", 1.00, "equivalent"),
        ("lower", 1.05, "regression"),
        ("lower", 0.95, "improvement"),
        ("lower", 1.00, "equivalent"),
    ],
)
def test_planted_effects_get_the_right_direction_aware_verdict(better: str, shift: float, expected: str) -> None:
    rng = np.random.default_rng(5)
    a = lognormal(rng, 100.0, 0.01, 8)
    b = lognormal(rng, 100.0 * shift, 0.01, 8)
    out = compare_one(frame("base", {"m": a}), frame("new", {"m": b}), info=info({"m": better}), thresholds={"w": 0.03})
    assert list(out.columns) == VERDICT_COLUMNS
    assert out["verdict"].tolist() == [expected]
    assert out["change_pct"].iloc[0] == pytest.approx((np.median(b) / np.median(a) - 1) * 100)


def test_planted_verdicts_hold_across_seeds() -> None:
    """Over 25 seeds: ±5 % at 1.5 % CV with 8 instances is always found; 0 % is never called a change."""
    counts: dict[str, int] = {}
    for seed in range(25):
        rng = np.random.default_rng([DEFAULT_SEED, seed])
        a = {m: lognormal(rng, 50.0, 0.015, 8) for m in ("up", "down", "same")}
        b = {"up": lognormal(rng, 52.5, 0.015, 8), "down": lognormal(rng, 47.5, 0.015, 8)}
        b["same"] = lognormal(rng, 50.0, 0.015, 8)
        out = compare_one(
            frame("a", a),
            frame("b", b),
            info=info({"up": "higher", "down": "higher", "same": "higher"}),
            thresholds={"w": 0.03},
            n_resamples=499,
        )
        got = dict(zip(out["metric"], out["verdict"], strict=True))
        assert got["up"] == "improvement"
        assert got["down"] == "regression"
        assert got["same"] not in ("regression", "improvement")
        counts[got["same"]] = counts.get(got["same"], 0) + 1
    assert counts.get("equivalent", 0) >= 22  # 1.5 % CV, ±3 % margin, 8 + 8: TOST power is high


def test_holm_is_applied_across_the_metrics_of_one_comparison() -> None:
    rng = np.random.default_rng(6)
    a = {f"m{i}": lognormal(rng, 10.0, 0.02, 5) for i in range(10)}
    b = {f"m{i}": lognormal(rng, 10.0, 0.02, 5) for i in range(10)}
    b["m0"] = np.sort(a["m0"]) * 1.04 + 0.5  # completely separated: raw p = 2/252 ≈ 0.008, × 10 metrics > 0.05
    out = compare_one(frame("a", a), frame("b", b), info=info(dict.fromkeys(a, "higher")))
    assert out["p_mwu_holm"].to_numpy() == pytest.approx(holm(out["p_mwu"].to_numpy()), nan_ok=True)
    first = out[out["metric"] == "m0"].iloc[0]
    assert first["p_mwu"] < 0.05 < first["p_mwu_holm"]
    assert first["verdict"] != "improvement"
    alone = compare_one(frame("a", {"m0": a["m0"]}), frame("b", {"m0": b["m0"]}), info=info({"m0": "higher"}))
    assert alone["verdict"].iloc[0] == "improvement"


def test_too_few_instances_is_inconclusive_with_a_reason() -> None:
    out = compare_one(
        frame("a", {"m": np.array([1.0, 1.01, 0.99])}),
        frame("b", {"m": np.array([2.0, 2.01, 1.99])}),
        info=info({"m": "lower"}),
    )
    assert out["verdict"].iloc[0] == "inconclusive"
    assert "too few instances" in out["note"].iloc[0]
    one = compare_one(frame("a", {"m": np.array([1.0])}), frame("b", {"m": np.array([2.0, 2.1])}))
    assert one["verdict"].iloc[0] == "inconclusive"
    assert "≥ 2 instances" in one["note"].iloc[0]


def test_unknown_direction_never_claims_regression() -> None:
    rng = np.random.default_rng(7)
    a, b = lognormal(rng, 1.0, 0.01, 8), lognormal(rng, 1.2, 0.01, 8)
    out = compare_one(frame("a", {"m": a}), frame("b", {"m": b}))
    assert out["verdict"].iloc[0] == "inconclusive"
