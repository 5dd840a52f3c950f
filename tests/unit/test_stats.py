"""benchbed.stats on synthetic data whose truth is known (seeded numpy generators, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from benchbed.results import SAMPLE_COLUMNS
from benchbed.stats import (
    SUMMARY_COLUMNS,
    bootstrap_ci,
    canonical_params,
    instance_medians,
    startup_phases,
    summarize,
)


def sample(
    target: str,
    value: float,
    *,
    instance: int = 0,
    workload: str = "w",
    params: dict[str, Any] | None = None,
    metric: str = "m",
    better: str = "higher",
    phase: str = "measure",
    valid: bool = True,
    repetition: int = 0,
) -> dict[str, Any]:
    return {
        "target": target,
        "workload": workload,
        "params": {"n": 1} if params is None else params,
        "metric": metric,
        "unit": "u",
        "better": better,
        "value": value,
        "instance": instance,
        "repetition": repetition,
        "phase": phase,
        "valid": valid,
        "reason": None if valid else "bad",
        "case": 0,
    }


def frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=SAMPLE_COLUMNS)


def draw(
    rng: np.random.Generator, target: str, centre: float, n_inst: int, per: int, **kw: Any
) -> list[dict[str, Any]]:
    """Instances whose medians scatter around `centre` (between-instance sd 2 %) with 1 % noise per sample."""
    rows = []
    for i in range(n_inst):
        inst_centre = centre * (1 + rng.normal(0, 0.02))
        rows += [sample(target, inst_centre * (1 + rng.normal(0, 0.01)), instance=i, **kw) for _ in range(per)]
    return rows


def row(summary: pd.DataFrame, target: str, **match: str) -> pd.Series:
    sel = summary[summary["target"] == target]
    for k, v in match.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1
    return sel.iloc[0]


def test_median_of_instance_medians_not_pooled_median() -> None:
    rows = [sample("a", v, instance=0) for v in (1, 2, 3)]  # median 2
    rows += [sample("a", v, instance=1) for v in (10, 11, 12, 13)]  # median 11.5
    rows += [sample("a", 5, instance=2)]  # median 5
    rows += [sample("a", 1000, instance=2, phase="warmup"), sample("a", -7, instance=2, phase="cold")]
    rows += [sample("a", 999, instance=0, valid=False), sample("a", math.nan, instance=1)]
    s = summarize(frame(rows), "a")
    assert list(s.columns) == SUMMARY_COLUMNS
    r = row(s, "a")
    assert r["median"] == 5.0  # pooled median of the 8 samples would be 7.5
    assert (r["n_instances"], r["n_samples"], r["n_invalid"]) == (3, 8, 1)
    pooled = np.array([1, 2, 3, 10, 11, 12, 13, 5], dtype=float)
    assert r["q1"] == pytest.approx(np.percentile(pooled, 25))
    assert r["iqr"] == pytest.approx(np.percentile(pooled, 75) - np.percentile(pooled, 25))
    assert r["p99"] == pytest.approx(np.percentile(pooled, 99))
    assert (r["cold"], r["n_cold"]) == (-7.0, 1)
    assert r["ci_method"] in ("bca-instances", "percentile-instances")
    assert r["ci_low"] <= 5.0 <= r["ci_high"]
    assert (r["ratio"], r["change_pct"], r["better_ratio"], r["ratio_ci_method"]) == (1.0, 0.0, 1.0, "baseline")

    im = instance_medians(frame(rows))
    assert sorted(im["median"]) == [2.0, 5.0, 11.5]
    assert sorted(im["n"]) == [1, 3, 4]


def test_ci_coverage_and_ratio_ci_roughly_nominal() -> None:
    """Over 200 independent experiments the 95 % CIs hold the planted truth in ≥ 85 % of them."""
    rng = np.random.default_rng(12345)
    rows: list[dict[str, Any]] = []
    trials = 200
    for t in range(trials):
        rows += draw(rng, "base", 100.0, 10, 5, workload=f"w{t}")
        rows += draw(rng, "vm", 105.0, 10, 5, workload=f"w{t}")
    s = summarize(frame(rows), "base", n_resamples=1000)
    base, vm = s[s["target"] == "base"], s[s["target"] == "vm"]
    assert len(base) == len(vm) == trials
    median_hits = ((base["ci_low"] <= 100.0) & (base["ci_high"] >= 100.0)).mean()
    ratio_hits = ((vm["ratio_ci_low"] <= 1.05) & (vm["ratio_ci_high"] >= 1.05)).mean()
    assert median_hits >= 0.85, median_hits
    assert ratio_hits >= 0.85, ratio_hits
    assert (vm["ratio_ci_low"] > 1.0).mean() >= 0.85  # a 5 % effect with 2 % instance scatter is visible
    assert set(base["ci_method"]) <= {"bca-instances", "percentile-instances"}


def test_planted_ratio_and_direction() -> None:
    rng = np.random.default_rng(7)
    rows = draw(rng, "bare", 100.0, 12, 10, metric="tput", better="higher")
    rows += draw(rng, "vm", 105.0, 12, 10, metric="tput", better="higher")
    rows += draw(rng, "bare", 10.0, 12, 10, metric="lat", better="lower")
    rows += draw(rng, "vm", 11.0, 12, 10, metric="lat", better="lower")
    s = summarize(frame(rows), "bare")
    assert list(s["target"]) == ["bare", "vm", "bare", "vm"]

    tput = row(s, "vm", metric="tput")
    assert tput["ratio_ci_low"] <= 1.05 <= tput["ratio_ci_high"]
    assert tput["ratio"] == pytest.approx(1.05, rel=0.02)
    assert tput["change_pct"] == pytest.approx((tput["ratio"] - 1) * 100)
    assert tput["better_ratio"] == tput["ratio"] > 1  # higher is better: more throughput is better
    assert tput["better_ratio_ci_low"] == tput["ratio_ci_low"]

    lat = row(s, "vm", metric="lat")  # 10 % slower: the number goes up, the target does worse
    assert lat["ratio_ci_low"] <= 1.10 <= lat["ratio_ci_high"]
    assert lat["change_pct"] > 0
    assert lat["better_ratio"] == pytest.approx(1 / lat["ratio"])
    assert lat["better_ratio"] < 1
    assert lat["better_ratio_ci_low"] == pytest.approx(1 / lat["ratio_ci_high"])
    assert lat["better_ratio_ci_high"] == pytest.approx(1 / lat["ratio_ci_low"])
    assert lat["better_ratio_ci_low"] < lat["better_ratio_ci_high"]


def test_single_instance_falls_back_to_samples() -> None:
    rng = np.random.default_rng(3)
    rows = draw(rng, "a", 50.0, 1, 20) + draw(rng, "b", 50.0, 3, 20)
    s = summarize(frame(rows), "a")
    a, b = row(s, "a"), row(s, "b")
    assert a["n_instances"] == 1
    assert a["ci_method"] in ("bca-samples", "percentile-samples")
    assert a["ci_low"] < a["median"] < a["ci_high"]
    assert b["ci_method"].endswith("-instances")
    assert b["ratio_ci_method"].endswith("-mixed")
    assert math.isfinite(b["ratio_ci_low"])


def test_one_sample_gives_nan_ci() -> None:
    rows = [sample("a", 10.0), sample("b", 11.0)]
    s = summarize(frame(rows), "a")
    b = row(s, "b")
    assert b["median"] == 11.0
    assert math.isnan(b["ci_low"])
    assert math.isnan(b["ci_high"])
    assert b["ci_method"] == "none"
    assert b["ratio"] == pytest.approx(1.1)
    assert math.isnan(b["ratio_ci_low"])
    assert b["ratio_ci_method"] == "none"


def test_constant_values_give_a_point_ci() -> None:
    rows = [sample("a", 4.0, instance=i) for i in range(3) for _ in range(2)]
    r = row(summarize(frame(rows), "a"), "a")
    assert (r["ci_low"], r["ci_high"], r["ci_method"]) == (4.0, 4.0, "constant")


def test_bca_degenerate_falls_back_without_warnings() -> None:
    """Ties make BCa degenerate; the fallback must neither warn (pytest runs with -W error) nor return NaN."""
    data = (np.array([1.0, 1.0, 1.0, 2.0]),)
    low, high, method = bootstrap_ci(data, np.median, rng=np.random.default_rng(0), n_resamples=500)
    assert method == "percentile"
    assert low <= 1.0 <= high


def test_missing_baseline_and_zero_baseline() -> None:
    s = summarize(frame([sample("a", 1.0), sample("a", 2.0), sample("b", 3.0), sample("b", 4.0)]), "nope")
    assert s["ratio"].isna().all()
    assert not s["is_baseline"].any()
    z = summarize(frame([sample("a", 0.0), sample("a", 0.0), sample("b", 3.0), sample("b", 4.0)]), "a")
    assert math.isnan(row(z, "b")["ratio"])


def test_params_grouped_canonically_and_cold_only_rows_kept() -> None:
    rows = [sample("a", 1.0, params={"x": 1, "y": 2}), sample("a", 3.0, params={"y": 2, "x": 1}, instance=1)]
    rows.append(sample("a", 9.0, metric="boot", phase="cold"))
    s = summarize(frame(rows), "a")
    m = row(s, "a", metric="m")
    assert m["params"] == canonical_params({"x": 1, "y": 2}) == '{"x":1,"y":2}'
    assert (m["n_instances"], m["median"]) == (2, 2.0)
    boot = row(s, "a", metric="boot")
    assert (boot["n_samples"], boot["cold"]) == (0, 9.0)
    assert math.isnan(boot["median"])


def test_deterministic_and_independent_of_other_rows() -> None:
    rng = np.random.default_rng(11)
    rows = draw(rng, "a", 10.0, 5, 5) + draw(rng, "b", 12.0, 5, 5)
    extra = draw(rng, "a", 1.0, 5, 5, workload="other")
    one = summarize(frame(rows), "a")
    two = summarize(frame(rows), "a")
    pd.testing.assert_frame_equal(one, two)
    more = summarize(frame(rows + extra), "a")
    pd.testing.assert_frame_equal(one, more[more["workload"] == "w"].reset_index(drop=True))


def test_empty_input() -> None:
    assert list(summarize(frame([]), "a").columns) == SUMMARY_COLUMNS
    assert instance_medians(frame([])).empty


def test_startup_phases_medians() -> None:
    cases = pd.DataFrame(
        [
            {"target": "vm", "phases": {"boot": 10.0, "total": 12.0}},
            {"target": "vm", "phases": {"boot": 14.0, "total": 16.0}},
            {"target": "vm", "phases": {"boot": 30.0}},
            {"target": "local", "phases": {}},
            {"target": "local", "phases": None},
        ]
    )
    ph = startup_phases(cases)
    got = {(r.target, r.phase): (r.median_s, r.n) for r in ph.itertuples()}
    assert got == {("vm", "boot"): (14.0, 3), ("vm", "total"): (14.0, 2)}
    assert startup_phases(pd.DataFrame()).empty
