"""benchbed.compare without runs: the environment diff and the three machine-readable outputs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from benchbed.compare import Comparison, to_gab, to_junit, to_markdown
from benchbed.rules import UNDER_TEST_RUNS, Rules
from benchbed.verdict import compare_pairs

ENV = {
    "hostname": "a",
    "kernel": "6.1",
    "cpu": {"model": "EPYC", "logical_cpus": 2},
    "memory": {"MemAvailable": "1 kB", "MemTotal": "8 kB"},
    "gpus": [{"name": "H100", "driver": "550.54", "sm_clock_mhz": 1980}],
    "kind": "local",
}


def test_env_diff_runs_splits_under_test_from_warnings_and_ignores_volatile() -> None:
    new = json.loads(json.dumps(ENV))
    new.update(hostname="b", kernel="6.8")
    new["memory"]["MemAvailable"] = "2 kB"
    new["gpus"][0].update(driver="560.28", sm_clock_mhz=1410)
    new["cpu"]["model"] = "Xeon"
    tested, warned = Rules().env_diff(ENV, new, under_test=UNDER_TEST_RUNS)
    assert [(e.key, e.base, e.new) for e in tested] == [("gpus.0.driver", "550.54", "560.28"), ("kernel", "6.1", "6.8")]
    assert [e.key for e in warned] == ["cpu.model"]


def test_env_diff_targets_treats_everything_but_hardware_as_under_test() -> None:
    new = {**ENV, "kind": "docker", "image": "sha256:abc", "cpu": {"model": "Xeon", "logical_cpus": 2}}
    tested, warned = Rules().env_diff(ENV, new, under_test=None)
    assert [e.key for e in tested] == ["image", "kind"]
    assert [(e.key, e.base) for e in warned] == [("cpu.model", "EPYC")]


def comparison() -> Comparison:
    rng = np.random.default_rng(0)
    rows = []
    for target, shift in (("a", 1.0), ("b", 1.05)):
        for metric, centre in (("lat", 10.0), ("bw", 100.0)):
            for i in range(8):
                value = centre * shift * np.exp(rng.normal(0, 0.005))
                rows.append(
                    {"workload": "w", "params": '{"n":1}', "metric": metric, "target": target, "instance": i,
                     "median": value, "n": 3}
                )  # fmt: skip
    inst = pd.DataFrame(rows)
    info = pd.DataFrame(
        [
            {"workload": "w", "params": '{"n":1}', "metric": "lat", "unit": "ms", "better": "lower"},
            {"workload": "w", "params": '{"n":1}', "metric": "bw", "unit": "GB/s", "better": "higher"},
        ]
    )
    v = compare_pairs([(inst[inst.target == "a"], inst[inst.target == "b"])], info=info, thresholds={"w": 0.03})
    v = v.assign(new_ci_low=v["new_median"] * 0.99, new_ci_high=v["new_median"] * 1.01)
    return Comparison([], v, {"a → b": []}, {"a → b": []})


def test_outputs_of_one_regression_and_one_improvement(tmp_path: Path) -> None:
    c = comparison()
    assert c.counts() == {"regression": 1, "improvement": 1}
    assert c.exit_code == 1
    md = to_markdown(c)
    assert md.startswith("## benchbed compare")
    assert "REGRESSION: 1 regression, 1 improvement" in md
    assert "✗ regression" in md
    root = ET.fromstring(to_junit(c).split("\n", 1)[1])
    cases = root.findall("testsuite/testcase")
    assert len(cases) == 2
    failed = [tc.get("name") for tc in cases if tc.find("failure") is not None]
    assert failed == ["lat a→b"]
    bigger, smaller = to_gab(c)
    assert [e["name"] for e in bigger] == ["w n=1 bw (b)"]
    assert smaller[0]["unit"] == "ms"
    assert smaller[0]["range"].startswith("± ")
    assert "regression" in smaller[0]["extra"]
    assert set(smaller[0]) == {"name", "unit", "value", "range", "extra"}
