"""benchbed.rules: thresholds and comparability resolved at run time, read back by compare and report."""

from __future__ import annotations

import json

from benchbed.rules import HARDWARE, Rules, merged_thresholds, resolve, rules_of
from benchbed.verdict import DEFAULT_THRESHOLDS, threshold_for

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
    assert threshold_for("cpu.gemm", "gflops", rules.threshold_table(rules.thresholds)) == 0.25
    assert threshold_for("cpu.gemm", "gflops", Rules().threshold_table({})) == DEFAULT_THRESHOLDS["cpu.gemm"]


def test_suite_and_command_line_globs_come_before_the_defaults() -> None:
    table = Rules().threshold_table({"cpu.*": 0.5})
    assert next(iter(table)) == "cpu.*"
    assert threshold_for("cpu.gemm", "gflops", table) == 0.5


def test_merged_thresholds_later_runs_win() -> None:
    a, b = Rules(thresholds={"io.*": 0.1, "cpu.*": 0.2}), Rules(thresholds={"io.*": 0.3})
    assert merged_thresholds([a, b]) == {"io.*": 0.3, "cpu.*": 0.2}


def test_recorded_comparability_globs_are_used() -> None:
    rules = rules_of({"rules": {**resolve({}).to_json(), "volatile": ["kernel"]}})
    tested, warned = rules.env_diff({"kernel": "6.1"}, {"kernel": "6.8"}, under_test=None)
    assert tested == warned == []
