"""`instances: auto`: the pilot's noise ▸ N per case (clamped, capped cases say so), and the two-phase plan."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest

from benchbed.errors import ConfigError
from benchbed.pilot import assess, upper_sd
from benchbed.plan import case_key, make_plan
from benchbed.schema import Suite
from benchbed.verdict import min_mwu_p

NOOP = case_key("util.noop", {"duration_ms": 5})
GEMM = case_key("cpu.gemm", {"n": 64})


def suite(defaults: dict[str, Any] | None = None, **kw: Any) -> Suite:
    base: dict[str, Any] = {
        "name": "s",
        "baseline": "a",
        "defaults": defaults or {},
        "workloads": [{"name": "util.noop", "params": {"duration_ms": 5}}, {"name": "cpu.gemm", "params": {"n": 64}}],
    }
    return Suite.model_validate({**base, **kw})


def samples(cv: dict[str, float], k: int = 4, reps: int = 3, seed: int = 0) -> pd.DataFrame:
    """k baseline instances per case whose log instance medians have exactly the given sd ("CV")."""
    z = np.linspace(-1, 1, k)
    z = np.random.default_rng(seed).permutation(z / np.std(z, ddof=1))
    rows = []
    for (workload, params, metric), c in zip(
        [("util.noop", {"duration_ms": 5}, "duration"), ("cpu.gemm", {"n": 64}, "throughput")], cv.values(), strict=True
    ):
        for inst in range(k):
            centre = 10.0 * np.exp(c * z[inst])
            for rep in range(reps):
                rows.append(
                    {"target": "a", "workload": workload, "params": params, "metric": metric, "instance": inst,
                     "phase": "measure", "repetition": rep, "value": centre, "unit": "x", "better": "lower",
                     "valid": True}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_min_instances_default_allows_a_verdict() -> None:
    d = suite().defaults
    assert d.instances == "auto"
    assert min_mwu_p(d.min_instances, d.min_instances) < 0.05 / 4  # Holm over a few metrics still reachable
    assert min_mwu_p(3, 3) > 0.05


def test_quiet_case_gets_the_minimum_noisy_case_more_very_noisy_is_capped() -> None:
    got = assess(samples({"noop": 0.001, "gemm": 0.004}), suite())
    assert got[NOOP].instances == 5  # quiet: the minimum, not what the MWU alone would allow (4)
    assert not got[NOOP].capped
    noisy = assess(samples({"noop": 0.01, "gemm": 0.5}, seed=3), suite())
    assert noisy[NOOP].instances == 10  # sd 1 % planned as its UCL 1.7 %: the verdict's MDE ≤ 3 % needs 10
    assert noisy[NOOP].metrics["duration"].mde_pct <= 3.0 + 0.5
    gemm = noisy[GEMM]
    assert gemm.instances == 20
    assert gemm.capped
    assert gemm.needed > 20
    assert gemm.metrics["throughput"].mde_pct > 1.0
    assert gemm.note.startswith("capped: MDE ")
    assert "> threshold 1%" in gemm.note


def test_bounds_thresholds_and_missing_pilot_come_from_the_suite() -> None:
    s = suite({"min_instances": 7, "max_instances": 9, "pilot_instances": 3}, thresholds={"util.*": 0.5})
    got = assess(samples({"noop": 0.02, "gemm": 0.5}, k=3), s, [NOOP, GEMM, "x.y {}"])
    assert {key: case.instances for key, case in got.items()} == {NOOP: 7, GEMM: 9, "x.y {}": 7}
    assert assess(pd.DataFrame(columns=samples({"a": 0, "b": 0}).columns), s, ["x.y {}"])["x.y {}"].note


def test_planning_noise_is_an_upper_confidence_limit() -> None:
    assert upper_sd(0.01, 4) > 0.015  # 4 values: the 80 % UCL is ~1.7 × the estimate
    assert 0.01 < upper_sd(0.01, 50) < 0.012
    assert np.isnan(upper_sd(0.01, 1))


def test_min_above_max_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="min_instances 9 > max_instances 6"):
        suite({"min_instances": 9, "max_instances": 6})


def test_auto_plan_is_a_baseline_pilot_then_the_rest_without_repeating_it() -> None:
    s = suite(
        seed=5, workloads=[{"name": "util.noop", "params": {"duration_ms": 5}}, {"name": "cpu.gemm", "instances": 2}]
    )
    pilot = make_plan(s, ["a", "b"])
    assert pilot.pilot == [NOOP]
    assert {c.target for c in pilot.cases} == {"a"}
    assert [c.instance for c in pilot.cases] == [0, 1, 2, 3]
    rest = make_plan(s, ["a", "b"], instances_per_key={NOOP: 6}, done={NOOP: 4}, first_index=len(pilot.cases))
    assert rest.pilot == []
    assert rest.cases[0].index == 4
    counts = Counter((c.target, c.key) for c in [*pilot.cases, *rest.cases])
    gemm = case_key("cpu.gemm", {})
    assert counts == {("a", NOOP): 6, ("b", NOOP): 6, ("a", gemm): 2, ("b", gemm): 2}
    assert not [c for c in rest.cases if c.target == "a" and c.key == NOOP and c.instance < 4]
    assert make_plan(s, ["a", "b"], instances=3).pilot == []  # --repeat overrides auto


def test_instances_auto_or_number_in_yaml() -> None:
    assert suite({"instances": 3}).defaults.instances == 3
    with pytest.raises(ValueError, match="auto"):
        suite({"instances": "many"})
    with pytest.raises(ConfigError):
        make_plan(suite(), ["b"])  # unchanged: the baseline must be a target
