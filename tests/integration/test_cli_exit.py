"""`benchbed run`'s exit code: CI must not go green when a case failed, and a skip is not a failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

MODULE = """
from benchbed.workloads import Sample, Skipped, workload

@workload("exit.ok")
def ok(p, ctx):
    for phase, rep in ctx.schedule():
        yield Sample("m", 1.0, "ms", "lower", phase, rep)

@workload("exit.skip")
def skip(p, ctx):
    raise Skipped("no such device here")
    yield

@workload("exit.fail")
def fail(p, ctx):
    raise RuntimeError("boom")
    yield
"""


def run(tmp_path: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "exit_mod.py").write_text(MODULE, encoding="utf-8")
    entries = "".join(f"  - name: {n}\n" for n in names)
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: exitcodes\nbaseline: local\nmodules: [exit_mod.py]\n"
        f"defaults: {{instances: 1, repetitions: 2, warmup: 0}}\nworkloads:\n{entries}",
        encoding="utf-8",
    )
    cmd = [sys.executable, "-m", "benchbed.cli", "run", str(suite), "--out", str(tmp_path / "res"), "--no-report"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.local
def test_a_failed_case_fails_the_run_and_a_skip_does_not(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    skipped = run(tmp_path / "a", ["exit.ok", "exit.skip"])
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "1 ok, 1 skipped, 0 failed" in skipped.stdout
    (tmp_path / "b").mkdir()
    failed = run(tmp_path / "b", ["exit.ok", "exit.skip", "exit.fail"])
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "1 ok, 1 skipped, 1 failed" in failed.stdout
    assert "Traceback" not in failed.stderr
    (results,) = (tmp_path / "b" / "res").iterdir()
    assert (results / "samples.jsonl").exists()  # the results are written all the same
