"""The shipped suites and templates travel in the wheel: `benchbed run quick` works outside the repo."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.local, pytest.mark.slow]


def test_wheel_runs_shipped_suite_outside_repo(tmp_path: Path, repo_root: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "w"),
            str(repo_root),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "w").glob("benchbed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "benchbed/data/quick.yaml" in names
    assert any(n.startswith("benchbed/report/templates/") for n in names)
    assert "benchbed/targets/vm/domain.xml.j2" in names
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchbed.cli",
            "run",
            "quick",
            "--only",
            "util.*",
            "--repeat",
            "1",
            "--out",
            "res",
            "--no-report",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 ok" in proc.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import benchbed; print(benchbed.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(str(site))
