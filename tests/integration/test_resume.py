"""`benchbed run --resume`: a run killed in the middle, resumed, ends with what an uninterrupted run has; a resume
with anything that made the run changed is refused with the difference named (docs/reliability.md)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.results import load_run
from tests.integration.faultkit import bench, start, wait_for, write


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# ── resume: a SIGKILLed run, resumed, ends with the instances of an uninterrupted run ──────────────────────
RESUMABLE = (
    "name: resumable\nbaseline: local\nmodules: [slow.py]\ndefaults: {instances: 3, repetitions: 2, warmup: 0}\n"
    "workloads:\n  - {name: test.slow, params: {seconds: 0.6, samples: 3}}\n"
    "  - {name: util.noop, params: {duration_ms: 0}}\n"
)
TWO_LOCAL = {"local": {"kind": "local"}, "other": {"kind": "local", "description": "the same host again"}}


def sample_keys(run_dir: Path) -> set[tuple[Any, ...]]:
    samples = load_run(run_dir).samples
    return {
        (r.target, r.workload, json.dumps(r.params, sort_keys=True), r.instance, r.metric, r.phase, r.repetition)
        for r in samples.itertuples()
    }


@pytest.mark.local
def test_resume_after_sigkill_gives_the_instances_of_an_uninterrupted_run(
    tmp_path: Path, reap: list[subprocess.Popen[str]]
) -> None:
    t, s = write(tmp_path, TWO_LOCAL, RESUMABLE)
    res = tmp_path / "res"
    proc = start(tmp_path, reap, "run", str(s), "-t", str(t), "--out", str(res), "--no-report", "--seed", "11")

    def records() -> int:
        return sum(len(p.read_text().splitlines()) for p in res.glob("*/cases.jsonl"))

    wait_for("two finished instances", lambda: records() >= 2)
    time.sleep(0.3)  # somewhere in the next instance
    proc.kill()
    proc.communicate(timeout=30)
    (run_dir,) = res.iterdir()
    kept = records()
    assert 2 <= kept < 12
    resumed = bench(tmp_path, "run", "--resume", str(run_dir), "-t", str(t), "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    straight = bench(tmp_path, "run", str(s), "-t", str(t), "--out", "straight", "--no-report", "--seed", "11")
    assert straight.returncode == 0, straight.stderr
    (straight_dir,) = (tmp_path / "straight").iterdir()

    run = load_run(run_dir)
    assert run.meta["status"] == "complete"
    (entry,) = run.meta["resumed"]
    assert entry["kept"] == kept
    assert len(entry["rerun"]) == 12 - kept
    assert sorted(run.cases.case) == list(range(12))  # every planned instance has exactly one record
    assert set(run.cases.status) == {"ok"}
    assert run.meta["counts"] == {"ok": 12, "skipped": 0, "failed": 0}
    assert sample_keys(run_dir) == sample_keys(straight_dir)
    assert len(run.samples) == len(load_run(straight_dir).samples)
    assert '"attempt": 1' in (run_dir / "samples.jsonl").read_text()  # the rerun instances' samples say so
    for args in (["report", str(run_dir), "--format", "md"], ["compare", str(run_dir), str(straight_dir)]):
        shown = bench(tmp_path, *args)
        assert shown.returncode in (0, 1), shown.stderr  # a resumed run reads like any other
        assert "Traceback" not in shown.stderr


@pytest.mark.local
def test_resume_is_refused_with_other_targets_or_a_complete_run(tmp_path: Path) -> None:
    t, s = write(tmp_path, TWO_LOCAL, RESUMABLE.replace("instances: 3", "instances: 1"))
    done = bench(tmp_path, "run", str(s), "-t", str(t), "--out", "res", "--no-report", "--seed", "1")
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "res").iterdir()
    again = bench(tmp_path, "run", "--resume", str(run_dir), "-t", str(t), "--no-report")
    assert again.returncode == 2
    assert "the run is complete; there is nothing to resume" in again.stderr
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "status": "incomplete"}))
    (tmp_path / "t2.yaml").write_text(
        json.dumps({"targets": {**TWO_LOCAL, "other": {"kind": "local", "description": "changed"}}})
    )
    other = bench(tmp_path, "run", "--resume", str(run_dir), "-t", "t2.yaml", "--no-report")
    assert other.returncode == 2
    (line,) = other.stderr.strip().splitlines()
    assert "target 'other' differs from the run's at 'description'" in line, line
    for option, value, recorded in (("--repeat", "5", "none"), ("--only", "cpu.*", "none"), ("--seed", "2", "1")):
        ignored = bench(tmp_path, "run", "--resume", str(run_dir), "-t", str(t), option, value, "--no-report")
        assert ignored.returncode == 2  # a resumed run keeps its plan: another value would be silently ignored
        (line,) = ignored.stderr.strip().splitlines()
        assert f"{option} {value} is not the run's ({recorded})" in line, line
    (run_dir / "agent.pyz").rename(tmp_path / "agent.pyz")
    lost = bench(tmp_path, "run", "--resume", str(run_dir), "-t", str(t), "--no-report")
    assert lost.returncode == 2
    (line,) = lost.stderr.strip().splitlines()
    assert "its agent.pyz cannot be read" in line, line
    (tmp_path / "agent.pyz").rename(run_dir / "agent.pyz")
    s.write_text(s.read_text().replace("duration_ms: 0", "duration_ms: 1"))
    edited = bench(tmp_path, "run", "--resume", str(run_dir), "-t", str(t), "--no-report")
    assert edited.returncode == 2
    assert "is not the text the run was started with (line 7: run " in edited.stderr
    assert '"  - {name: util.noop, params: {duration_ms: 0}}", now "' in edited.stderr
