"""`instances: auto` end to end on this host: a real pilot on the baseline, N recorded in run.json, then the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from benchbed.results import load_run
from tests.conftest import REPO

SUITE = """
name: auto
baseline: local
seed: 4
defaults: {repetitions: 3, warmup: 1, max_instances: 6}
workloads:
  - name: util.noop
    params: {duration_ms: 1}
"""


@pytest.mark.local
def test_auto_instances_records_the_pilot_and_runs_at_least_the_minimum(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(SUITE, encoding="utf-8")
    targets = tmp_path / "targets.yaml"
    targets.write_text("targets:\n  local: {kind: local}\n  other: {kind: local}\n", encoding="utf-8")
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "benchbed.cli", "run", str(tmp_path / "suite.yaml"), "-t", str(targets)]
    res = subprocess.run(
        [*cmd, "--no-report", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "pilot of 4 instances on local" in res.stdout
    (run_dir,) = out.iterdir()
    run = load_run(run_dir)
    key = 'util.noop {"duration_ms": 1}'
    pilot = run.meta["pilot"][key]
    assert pilot["pilot_instances"] == 4
    assert 5 <= pilot["instances"] <= 6
    assert pilot["capped"] == (pilot["needed"] > 6)
    assert pilot["capped"] == pilot["note"].startswith("capped: MDE")
    noise = pilot["metrics"]["duration"]
    assert noise["threshold"] == 0.03
    assert noise["cv_planned_pct"] > noise["cv_pct"] > 0
    plan = run.meta["plan"]
    assert [c["index"] for c in plan] == list(range(len(plan)))
    assert {c["target"] for c in plan[:4]} == {"local"}  # the pilot ran first, on the baseline alone
    per_target = Counter(c["target"] for c in plan)
    assert per_target == {"local": pilot["instances"], "other": pilot["instances"]}
    instances = run.samples.groupby("target")["instance"].nunique().to_dict()
    assert instances == per_target  # the pilot's instances count towards the baseline's N
    assert json.loads(json.dumps(run.meta["pilot"])) == run.meta["pilot"]
