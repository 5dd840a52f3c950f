"""benchbed.rules: thresholds and comparability resolved at run time, read back by compare and report."""

from __future__ import annotations

import json

from benchbed.rules import HARDWARE, Rules, merged_thresholds, resolve, rules_of
from benchbed.thresholds import DEFAULT_THRESHOLDS, Threshold, threshold_for

SUITE_TEXT = "name: s\nthresholds:\n  'io.*': 0.2\nworkloads: []\n"


def test_resolved_rules_survive_run_json() -> None:
    meta = json.loads(json.dumps({"rules": resolve({"io.*": 0.2}).to_json(), "suite": {"text": "name: s\n"}}))
    rules = rules_of(meta)
    assert rules.thresholds == {"io.*": 0.2}  # from `rules`, not from the suite text (which has none)
    assert rules.default_thresholds == DEFAULT_THRESHOLDS
    assert rules.hardware == HARDWARE


def test_old_run_json_without_rules_reads_thresholds_from_the_suite_text() -> None:
    rules = rules_of({"suite": {"text": SUITE_TEXT}})
    assert rules == Rules(thresholds={"io.*": 0.2})
    assert rules_of({}) == Rules()


def test_recorded_defaults_decide_not_todays() -> None:
    recorded = resolve({}).to_json()
    recorded["default_thresholds"] = {"cpu.gemm": 0.25}  # what benchbed's defaults were when the run was made
    rules = rules_of({"rules": recorded})
    assert rules.threshold_rules().pick("cpu.gemm", "gflops") == Threshold(0.25, "built-in cpu.gemm")
    assert Rules().threshold_rules().pick("cpu.gemm", "gflops").value == DEFAULT_THRESHOLDS["cpu.gemm"]


def test_suite_and_command_line_globs_come_before_the_defaults() -> None:
    rules = Rules(thresholds={"cpu.*": 0.5})
    assert rules.threshold_rules().pick("cpu.gemm", "gflops") == Threshold(0.5, "suite cpu.*")
    picked = rules.threshold_rules(cli={"cpu.gemm": 0.2}).pick("cpu.gemm", "gflops")
    assert picked == Threshold(0.2, "--threshold cpu.gemm")
    assert threshold_for("cpu.gemm", "gflops", {"cpu.*": 0.5}) == 0.5


def test_merged_thresholds_later_runs_win() -> None:
    a, b = Rules(thresholds={"io.*": 0.1, "cpu.*": 0.2}), Rules(thresholds={"io.*": 0.3})
    assert merged_thresholds([a, b]) == {"io.*": 0.3, "cpu.*": 0.2}


def test_recorded_comparability_globs_are_used() -> None:
    rules = rules_of({"rules": {**resolve({}).to_json(), "volatile": ["kernel"]}})
    tested, warned = rules.env_diff({"kernel": "6.1"}, {"kernel": "6.8"}, under_test=None)
    assert tested == warned == []
