"""The `docker` target against a real dockerd and the registry-free test image."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.results import RunData, load_run
from tests.conftest import interruptible
from tests.integration import dockerd
from tests.integration.faultkit import samples_text, wait_for

pytestmark = pytest.mark.docker

SLOW = '''
import time
from dataclasses import dataclass
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    seconds: float = 60.0
    alloc_mb: int = 0

@workload("test.slow", params=P)
def slow(p, ctx):
    """One sample, then (optionally) allocate alloc_mb and sleep: a case to kill or to OOM."""
    yield Sample("x", 1.0, "s", "lower", "measure", 0)
    hog = bytearray(p.alloc_mb * 1024 * 1024)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
    time.sleep(p.seconds)
'''


@pytest.fixture(scope="module")
def image() -> str:
    return dockerd.required_image()


def write(tmp: Path, targets: dict[str, Any], suite: str) -> tuple[Path, Path]:
    (tmp / "slow.py").write_text(SLOW)
    (tmp / "t.yaml").write_text(json.dumps({"targets": targets}))
    (tmp / "s.yaml").write_text(suite)
    return tmp / "t.yaml", tmp / "s.yaml"


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[str]]]:
    """Children a test starts are killed and reaped even when the test fails half-way."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def bench(tmp: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=tmp,
    )


def start_run(
    tmp: Path, targets: Path, suite: Path, reap: list[subprocess.Popen[str]], *extra: str
) -> subprocess.Popen[str]:
    """A `benchbed run` in the background that a test may kill or Ctrl-C; reaped whatever the test's outcome."""
    cmd = [sys.executable, "-m", "benchbed.cli", "run", str(suite), "--targets", str(targets)]
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp / "res"), "--no-report", *extra],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    reap.append(proc)
    return proc


def run_suite(tmp: Path, targets: dict[str, Any], suite: str) -> tuple[subprocess.CompletedProcess[str], RunData]:
    t, s = write(tmp, targets, suite)
    proc = bench(tmp, "run", str(s), "--targets", str(t), "--out", str(tmp / "res"), "--no-report")
    (run_dir,) = (tmp / "res").iterdir()
    run = load_run(run_dir)
    assert proc.returncode == (1 if (run.cases.status == "failed").any() else 0), proc.stderr  # README: exit codes
    return proc, run


SHAPES = """name: shapes
baseline: local
defaults: {instances: 1, repetitions: 3, warmup: 1}
workloads:
  - {name: util.noop, params: {duration_ms: 2}}
  - {name: cpu.gemm, params: {n: 64}}
  - {name: cpu.stream, params: {n: 100000}}
  - {name: startup.process}
  - {name: model.load, params: {size_mb: 2, device: cpu}, repetitions: 2}
  - {name: io.fsync, params: {ops: 20}}
  - {name: gpu.gemm, params: {n: 256}}
"""


def test_quick_workloads_in_a_container_match_local_shapes(tmp_path: Path, image: str) -> None:
    targets = {
        "local": {"kind": "local"},
        "box": {"kind": "docker", "image": image, "pull": "never", "cpus": 1, "memory": "1g"},
    }
    _, run = run_suite(tmp_path, targets, SHAPES)
    cases = run.cases.set_index(["target", "workload"])
    for workload in ("util.noop", "cpu.gemm", "cpu.stream", "startup.process", "model.load", "io.fsync"):
        assert cases.loc[("box", workload), "status"] == "ok", cases.loc[("box", workload)].to_dict()
    assert cases.loc[("box", "gpu.gemm"), "status"] == "skipped"
    assert "no CUDA device" in cases.loc[("box", "gpu.gemm"), "reason"]

    def shape(target: str) -> set[tuple[str, str, str, str, str]]:
        s = run.samples[run.samples.target == target]
        return set(zip(s.workload, s.metric, s.unit, s.better, s.phase, strict=True))

    assert shape("box") == shape("local")
    assert run.meta["agent"]["sha256"]
    html = tmp_path / "report.html"
    rendered = bench(tmp_path, "report", str(run.dir), "-o", str(html))
    assert rendered.returncode == 0, rendered.stderr
    page = html.read_text()
    assert "box" in page
    assert "local" in page
    assert "ratio" in page.lower()
    assert "docker" in page  # the container's fingerprint (engine, image) sits beside the host's


def test_limits_reach_the_fingerprint_and_phases_add_up(tmp_path: Path, image: str) -> None:
    targets = {
        "local": {"kind": "local"},
        "lim": {"kind": "docker", "image": image, "pull": "never", "cpus": 0.5, "memory": "256m", "shm_size": "32m"},
    }
    _, run = run_suite(
        tmp_path,
        targets,
        "name: lim\nbaseline: local\ndefaults: {instances: 2, repetitions: 2}\n"
        "workloads:\n  - {name: util.noop, params: {duration_ms: 1}}\n",
    )
    env = run.env["lim"]
    assert env["kind"] == "docker"
    limits = env["docker"]["limits"]
    assert limits["nano_cpus"] == 500_000_000
    assert limits["memory_bytes"] == 256 * 1024 * 1024
    assert limits["shm_size_bytes"] == 32 * 1024 * 1024
    assert env["docker"]["image_id"].startswith("sha256:")
    assert env["docker"]["engine_version"]
    assert env["cpu"]["cgroup_cpu_max"] == "50000 100000"  # seen from inside the container
    assert env["memory"]["cgroup_memory_max"] == str(256 * 1024 * 1024)
    for _, case in run.cases[run.cases.target == "lim"].iterrows():
        phases = case.phases
        for name in ("image", "create", "start", "exec_ready", "put_agent", "agent_ready", "workload", "teardown"):
            assert phases[name] >= 0, name
        parts = sum(v for k, v in phases.items() if k != "total")
        assert parts == pytest.approx(phases["total"], rel=1e-9)  # the phases partition the wall time...
        assert phases["other"] <= 0.1 * phases["total"]  # ...and the named ones account for nearly all of it


def test_engine_down_image_missing_gpu_and_python_missing_are_clear(tmp_path: Path, image: str) -> None:
    nopy = "benchbed/test-nopython:latest"
    (tmp_path / "f").write_text("no python here\n")
    subprocess.run(f"tar -C {tmp_path} -c f | docker import - {nopy}", shell=True, check=True, capture_output=True)
    targets = {
        "local": {"kind": "local"},
        "down": {"kind": "docker", "image": image, "docker_host": f"unix://{tmp_path}/nope.sock"},
        "noimage": {"kind": "docker", "image": "benchbed/does-not-exist:1", "pull": "never"},
        "gpu": {"kind": "docker", "image": image, "pull": "never", "gpus": "all"},
        "nopy": {"kind": "docker", "image": nopy, "pull": "never"},
    }
    try:
        proc, run = run_suite(
            tmp_path,
            targets,
            "name: errs\nbaseline: local\ndefaults: {instances: 1}\n"
            "workloads:\n  - {name: util.noop, params: {duration_ms: 1}}\n",
        )
    finally:
        with dockerd.engine() as client:
            client.images.remove(nopy, force=True)
    reasons = dict(zip(run.cases.target, run.cases.reason, strict=True))
    assert run.cases.set_index("target").loc["local", "status"] == "ok"
    assert f"Docker engine not reachable at unix://{tmp_path}/nope.sock" in reasons["down"]
    assert "image 'benchbed/does-not-exist:1' is not present and pull is 'never'" in reasons["noimage"]
    assert "no NVIDIA runtime" in reasons["gpu"]
    assert "nvidia-container-toolkit" in reasons["gpu"]
    assert "'python3'" in reasons["nopy"]
    assert "not found" in reasons["nopy"] or "does not run" in reasons["nopy"]
    for target in ("down", "noimage", "gpu", "nopy"):
        assert target in proc.stdout  # the summary names every failed target
    assert dockerd.labelled_containers(tmp_path / "res") == []


def test_container_killed_or_oom_fails_the_case_and_the_suite_goes_on(
    tmp_path: Path, image: str, reap: list[subprocess.Popen[str]]
) -> None:
    targets = {
        "victim": {"kind": "docker", "image": image, "pull": "never", "memory": "96m"},
    }
    suite = (
        "name: kill\nbaseline: victim\nmodules: [slow.py]\n"
        "defaults: {instances: 1, repetitions: 1, timeout_s: 120}\n"
        "workloads:\n  - {name: test.slow, params: {seconds: 60}}\n"
        "  - {name: test.slow, params: {seconds: 1, alloc_mb: 400}}\n"
        "  - {name: util.noop, params: {duration_ms: 1}}\n"
    )
    t, s = write(tmp_path, targets, suite)
    proc = start_run(tmp_path, t, s, reap, "--seed", "1")
    with dockerd.engine() as client:
        killed = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for c in client.containers.list(filters={"label": "benchbed.target=victim"}):
                samples = list((tmp_path / "res").glob("*/samples.jsonl"))
                if samples and '"target": "victim", "workload": "test.slow"' in samples[0].read_text():
                    c.kill()
                    killed = True
            time.sleep(0.2)
    assert killed
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # cases failed (README: exit codes); the suite went on
    (run_dir,) = (tmp_path / "res").iterdir()
    run = load_run(run_dir)
    victim = run.cases[run.cases.target == "victim"].sort_values("case")
    killed_case, oom_case, noop_case = (row for _, row in victim.iterrows())
    assert killed_case.status == "failed"
    assert "container stopped mid-case" in killed_case.reason or "vanished" in killed_case.reason
    assert oom_case.status == "failed"
    assert "OOM-killed" in oom_case.reason
    assert noop_case.status == "ok"
    on_disk = (run_dir / "samples.jsonl").read_text().count('"workload": "test.slow"')
    assert on_disk == 2  # what the two dead instances said is kept on disk, out of the statistics
    assert len(run.samples[(run.samples.target == "victim") & (run.samples.workload == "test.slow")]) == 0
    assert dockerd.labelled_containers(tmp_path / "res") == []


def run_id_of(res: Path, timeout: float = 60) -> str:
    """The id of the one run being written under `res` (its directory appears before any container)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p.name for p in res.glob("*") if (p / "run.json").exists()]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no run directory appeared")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize("point", ["container-up", "mid-case"])
def test_no_container_left_after_interrupt_or_kill_plus_cleanup(
    tmp_path: Path, image: str, sig: int, point: str, reap: list[subprocess.Popen[str]]
) -> None:
    """At two points of an instance: as soon as its container exists (the agent being copied in or starting), and
    while the workload writes samples."""
    targets = {"box": {"kind": "docker", "image": image, "pull": "never"}}
    t, s = write(
        tmp_path,
        targets,
        "name: int\nbaseline: box\nmodules: [slow.py]\ndefaults: {instances: 1}\n"
        "workloads:\n  - {name: test.slow, params: {seconds: 120}}\n",
    )
    proc = start_run(tmp_path, t, s, reap)
    run_id = run_id_of(tmp_path / "res")
    wait_for("the run's container", lambda: dockerd.labelled_containers(run_id))
    if point == "mid-case":
        wait_for("a sample", lambda: "test.slow" in samples_text(tmp_path / "res"), timeout=60)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "Traceback" not in err
        assert dockerd.labelled_containers(run_id) == []
        assert load_run(tmp_path / "res" / run_id).meta["status"] == "incomplete"
    else:
        assert dockerd.labelled_containers(run_id) != []  # a SIGKILLed harness cannot clean up after itself...
        cleanup = bench(tmp_path, "cleanup")
        assert cleanup.returncode == 0, cleanup.stderr
        assert "removed container" in cleanup.stdout
        assert dockerd.labelled_containers(run_id) == []  # ...but `benchbed cleanup` finds what it left
