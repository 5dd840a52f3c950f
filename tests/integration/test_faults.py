"""Fault injection: each fault of docs/reliability.md against the real component, with what benchbed must do.

Every fault ends in one clear line (never a traceback), loses no complete sample, and leaves nothing that
`benchbed cleanup` cannot find.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.results import load_run
from tests.conftest import interruptible
from tests.integration import dockerd
from tests.integration.faultkit import EngineLink

SLOW = '''
import time
from dataclasses import dataclass
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    seconds: float = 5.0
    samples: int = 1

@workload("test.slow", params=P)
def slow(p, ctx):
    """`samples` samples, then a sleep: a case a fault can hit in the middle."""
    for i in range(p.samples):
        yield Sample("x", float(i), "s", "lower", "measure", i)
    time.sleep(p.seconds)
'''


def write(tmp: Path, targets: dict[str, Any], suite: str) -> tuple[Path, Path]:
    (tmp / "slow.py").write_text(SLOW)
    (tmp / "t.yaml").write_text(json.dumps({"targets": targets}))
    (tmp / "s.yaml").write_text(suite)
    return tmp / "t.yaml", tmp / "s.yaml"


def cli_env() -> dict[str, str]:
    """The local target runs `python3` from PATH: this interpreter's, so the agent matches the harness."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def bench(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env=cli_env(),
    )


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def start(cwd: Path, reap: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchbed.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        preexec_fn=interruptible,
    )
    reap.append(proc)
    return proc


def wait_for(what: str, check: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def samples_text(res: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in res.glob("*/samples.jsonl"))


# ── 1. the engine goes away mid-case ───────────────────────────────────────────────────────────────────────
@pytest.mark.docker
def test_engine_stopped_mid_case_fails_that_target_and_the_suite_goes_on(
    tmp_path: Path, reap: list[subprocess.Popen[str]]
) -> None:
    image = dockerd.required_image()
    link = EngineLink()
    try:
        targets = {
            "local": {"kind": "local"},
            "box": {"kind": "docker", "image": image, "pull": "never", "docker_host": link.url},
        }
        suite = (
            "name: engine\nbaseline: local\nmodules: [slow.py]\n"
            "defaults: {instances: 2, repetitions: 1, timeout_s: 120}\n"
            "workloads:\n  - {name: test.slow, params: {seconds: 4}}\n  - {name: util.noop, params: {duration_ms: 1}}\n"
        )
        t, s = write(tmp_path, targets, suite)
        res = tmp_path / "res"
        proc = start(tmp_path, reap, "run", str(s), "-t", str(t), "--out", str(res), "--no-report", "--seed", "3")
        wait_for("a sample from the container", lambda: '"target": "box", "workload": "test.slow"' in samples_text(res))
        link.cut()  # the engine is gone while the container's case runs, and stays gone for the rest of the run
        out, err = proc.communicate(timeout=300)
        assert "Traceback" not in err, err
        assert proc.returncode == 0, err
        (run_dir,) = res.iterdir()
        run = load_run(run_dir)
        assert run.meta["status"] == "complete"
        local = run.cases[run.cases.target == "local"]
        assert len(local) == 4
        assert set(local.status) == {"ok"}  # the other target went on
        box = run.cases[run.cases.target == "box"]
        assert len(box) == 4  # every planned instance of the engine's target has a record
        assert set(box.status) == {"failed"} or set(box[box.case > box.case.min()].status) == {"failed"}
        assert all("Docker engine" in r for r in box[box.status == "failed"].reason), list(box.reason)
        assert "failed on box" in out
        link.restore()  # the engine returns: what the dead connection could not remove, cleanup does
        swept = bench(tmp_path, "cleanup", "--docker-host", link.url)
        assert swept.returncode == 0, swept.stderr
        assert run.meta["run_id"] not in " ".join(dockerd.labelled_containers())
    finally:
        link.close()
