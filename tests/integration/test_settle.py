"""Quiet while measuring, through real boundaries: the settle gate and held samples.

A busy neighbour (two spinning processes, both CPUs) must hold every instance back for the suite's `settle_s`
and be named in its case record — in a plain local process, chrooted into a stack, and in a container of it (the
container reads the host's /proc/stat, as the host's load is what slows it). The held samples must all arrive, and
the CPU workloads' samples carry how often their thread was preempted.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.agent.settle import WINDOW_S
from tests.integration import dockerd

SUITE = """name: settle
baseline: plain
defaults: {instances: 1, repetitions: 3, warmup: 1, settle_s: 1}
workloads:
  - {name: cpu.stream, params: {n: 100000}}
  - {name: util.noop, params: {duration_ms: 2}}
"""


def check_settle_records(cases: Any, settle_s: float, *, busy: bool) -> None:
    """Every case says what the gate waited and saw; with a busy neighbour, that it did not settle."""
    for _, case in cases.iterrows():
        where = f"{case.target}/{case.workload}"
        settle = case.settle
        assert isinstance(settle, dict), where
        assert settle["settled"] in (True, False), (where, settle)
        assert WINDOW_S <= settle["waited_s"] <= settle_s + 30, (where, settle)  # looked once at least; capped
        assert case.phases["settle"] == settle["waited_s"], where
        if busy:
            assert settle["settled"] is False, (where, settle)
            assert settle["waited_s"] >= settle_s, (where, settle)
            assert settle["busy_cpus"] >= 0.5, (where, settle)


@pytest.fixture
def neighbour() -> Iterator[None]:
    """Two processes spinning on the CPUs (one per CPU of the CI machine kind), for as long as the test runs."""
    spin = [sys.executable, "-c", "while True: pass"]
    procs = [subprocess.Popen(spin) for _ in range(2)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.docker
def test_a_busy_neighbour_holds_every_boundary_back_and_is_named(neighbour: None, tmp_path: Path) -> None:
    from tests.integration.test_docker import bench, run_suite

    image = dockerd.required_image()
    targets = {
        "plain": {"kind": "local"},
        "bare": {"kind": "local", "stack": image},
        "box": {"kind": "docker", "stack": image, "pull": "never"},
    }
    _, run = run_suite(tmp_path, targets, SUITE)
    cases = run.cases
    assert set(cases.status) == {"ok"}, cases[["target", "workload", "status", "reason"]].to_string()
    check_settle_records(cases, 1.0, busy=True)
    stream = run.samples[run.samples.workload == "cpu.stream"]
    for target in targets:  # every held sample arrived: 4 kernels x (cold + warm-up + 3 measured)
        mine = stream[stream.target == target]
        assert len(mine) == 4 * 5, target
        assert all(isinstance(labels["preempted"], int) for labels in mine.labels), target
    md = bench(tmp_path, "report", str(run.dir), "--format", "md")
    assert md.returncode == 0, md.stderr
    assert "- Quiet start: settle gate: plain 0/2 quiet" in md.stdout  # the report says they started busy
    assert "2 started busy" in md.stdout
