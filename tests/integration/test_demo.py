"""`benchbed demo`: out of the box it compares this host's process with the same process in fresh namespaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchbed.demo import IMAGE, probe_docker, probe_ns
from benchbed.results import load_run
from benchbed.targets.ns import NsTarget
from tests.conftest import need

pytestmark = pytest.mark.local


def demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The demo as a user runs it, from an empty directory; `python3` on PATH is this interpreter (as `make` does)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    argv = [sys.executable, "-m", "benchbed.cli", "demo", "--out", str(tmp_path / "results"), *args]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)


def report_path(proc: subprocess.CompletedProcess[str]) -> Path:
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("report: "), proc.stdout
    return Path(last.removeprefix("report: "))


def test_demo_reports_ratios_of_ns_against_local(tmp_path: Path) -> None:
    why, _ = probe_ns(NsTarget(kind="ns"))
    if why:
        need("ns", why)
    proc = demo(tmp_path, "--no-container", "--only", "cpu.gemm", "--repeat", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("demo: ns: the same process in fresh namespaces (")
    assert "demo: container left out: --no-container" in lines
    html = (tmp_path / report_path(proc)).read_text(encoding="utf-8")
    assert "Only the baseline has measured samples" not in html
    run_dir = next((tmp_path / "results").iterdir())
    md = subprocess.run(
        [sys.executable, "-m", "benchbed.cli", "report", str(run_dir), "-f", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = [r for r in json.loads(md.stdout)["rows"] if r["target"] == "ns"]
    assert rows
    assert all(r["workload"] == "cpu.gemm" and r["ratio"] is not None and r["ratio"] > 0 for r in rows)
    assert load_run(run_dir).meta["baseline"] == "local"


def test_demo_adds_a_container_when_docker_and_the_image_are_there(tmp_path: Path) -> None:
    why = probe_docker(IMAGE)
    if why:
        need("docker", why)
    proc = demo(tmp_path, "--only", "util.noop", "--repeat", "2")
    assert proc.returncode == 0, proc.stderr
    assert f"demo: container added: Docker engine up, image {IMAGE} present" in proc.stdout.splitlines()
    run = load_run(next((tmp_path / "results").iterdir()))
    assert set(run.samples.target) >= {"local", "container"}
    assert run.env["container"]["kind"] == "docker"


def test_without_an_engine_the_demo_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    why = probe_docker(IMAGE)
    assert why is not None
    assert why.startswith((f"Docker engine not reachable at unix://{tmp_path}/", "the docker package is not installed"))
    assert "\n" not in why
