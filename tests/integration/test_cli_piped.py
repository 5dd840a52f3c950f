"""Piped output (a CI log) reads like the terminal's: tables are not wrapped at rich's default 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchbed.workloads import load_builtins
from tests.conftest import REPO

NAME = "test.a_workload_whose_name_is_long_enough_to_wrap"
LONG = f'''
from dataclasses import dataclass
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    a_parameter_with_a_long_name: int = 123456

@workload("{NAME}", params=P)
def long(p, ctx):
    """The same values on every target: the verdict is `equivalent`."""
    for phase, rep in ctx.schedule():
        yield Sample("a_long_metric_name", 1.0 + rep * 1e-3, "ms", "lower", phase, rep)
'''


def piped(*args: str, columns: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.local
def test_piped_compare_table_keeps_each_row_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "long.py").write_text(LONG)
    (tmp_path / "s.yaml").write_text(
        "name: piped\nbaseline: local\nmodules: [long.py]\ndefaults: {instances: 3, repetitions: 3, warmup: 0}\n"
        f"workloads:\n  - name: {NAME}\n"
    )
    (tmp_path / "t.yaml").write_text("targets:\n  local: {kind: local}\n  another_local_target: {kind: local}\n")
    run = piped("run", str(tmp_path / "s.yaml"), "-t", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "res"))
    assert run.returncode == 0, run.stderr
    (run_dir,) = (tmp_path / "res").iterdir()
    res = piped("compare", str(run_dir))
    assert res.returncode == 0, res.stderr
    (row,) = [line for line in res.stdout.splitlines() if NAME in line]
    for cell in ("a_long_metric_name (ms, lower)", "local → another_local_target", "equivalent (within ±5%)"):
        assert cell in row
    assert "…" not in res.stdout


def test_piped_workloads_list_keeps_each_workload_on_one_line() -> None:
    res = piped("workloads", "list")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    builtins = {n: i for n, i in load_builtins().items() if i.fn.__module__.startswith("benchbed.workloads.")}
    assert builtins
    for name, info in builtins.items():  # not the test workloads other tests registered in this process
        (row,) = [line for line in lines if f" {name} " in line]
        assert info.doc in row


def test_piped_output_respects_columns() -> None:
    res = piped("workloads", "list", columns="80")
    assert max(len(line) for line in res.stdout.splitlines()) <= 80
