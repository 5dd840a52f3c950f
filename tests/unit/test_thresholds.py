"""Which threshold judges a metric and where it came from: a visible decision, per suite, with a default."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from benchbed.compare import Comparison, table_rows
from benchbed.schema import Suite
from benchbed.thresholds import FALLBACK_THRESHOLD, Threshold, ThresholdRules, threshold_for
from benchbed.verdict import compare_pairs


def test_layers_in_order_with_their_sources() -> None:
    rules = ThresholdRules(suite={"io.*": 0.04, "default": 0.02}, cli={"io.fsync": 0.2})
    assert rules.pick("io.fsync", "iops") == Threshold(0.2, "--threshold io.fsync")
    assert rules.pick("io.seq_read", "throughput") == Threshold(0.04, "suite io.*")
    assert rules.pick("cpu.gemm", "throughput") == Threshold(0.01, "built-in cpu.gemm")
    assert rules.pick("pytest", "test_sort[100]") == Threshold(0.02, "suite default")
    assert ThresholdRules(suite={"default": 0.02}, cli={"default": 0.01}).pick("x", "m").source == "--threshold default"
    assert ThresholdRules().pick("pytest", "test_sort") == Threshold(FALLBACK_THRESHOLD, "fallback")
    assert ThresholdRules(suite={"*": 0.07}).pick("cpu.gemm", "throughput") == Threshold(0.07, "suite *")
    assert threshold_for("pytest", "t", {"default": 0.02}) == 0.02
    assert Threshold(0.02, "suite default").label == "±2% (suite default)"


def test_the_suite_file_takes_a_default_and_still_checks_fractions() -> None:
    suite = Suite.model_validate({"name": "s", "thresholds": {"default": 0.02}, "workloads": [{"name": "util.noop"}]})
    assert suite.thresholds == {"default": 0.02}
    with pytest.raises(ValidationError, match="'default': 2"):
        Suite.model_validate({"name": "s", "thresholds": {"default": 2}, "workloads": [{"name": "util.noop"}]})


def _microbenchmark(thresholds: dict[str, float]) -> pd.DataFrame:
    """A cleanly measured +3 % slowdown of a pytest-benchmark microbenchmark: 1 % instance noise, 10 + 10."""
    rng = np.random.default_rng(11)
    rows = [
        {"workload": "pytest", "params": "{}", "metric": "test_sort", "target": t, "median": v}
        for t, centre in (("a", 1e-5), ("b", 1.03e-5))
        for v in centre * np.exp(rng.normal(0.0, 0.01, 10))
    ]
    frame = pd.DataFrame(rows)
    info = pd.DataFrame([{"workload": "pytest", "params": "{}", "metric": "test_sort", "unit": "s", "better": "lower"}])
    pairs = [(frame[frame["target"] == "a"], frame[frame["target"] == "b"])]
    return compare_pairs(pairs, thresholds=ThresholdRules(suite=thresholds), info=info, n_resamples=999)


def test_a_suite_default_catches_what_the_fallback_hides_and_compare_says_which_judged() -> None:
    hidden = _microbenchmark({})
    assert hidden["verdict"].iloc[0] == "equivalent"  # inside ±5 %: the silent pass the fallback gives
    assert hidden["threshold_source"].iloc[0] == "fallback"
    caught = _microbenchmark({"default": 0.02})
    assert caught["verdict"].iloc[0] == "regression"
    assert caught["mde_pct"].iloc[0] < 2.0  # the pilot-style check: MDE below the threshold chosen
    c = Comparison([], caught.assign(stack=""), {}, {})
    assert table_rows(c)[0][5] == "±2% (suite default)"
