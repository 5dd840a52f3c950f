"""The agent protocol and crash safety, with real agent processes on this host."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from benchbed.agent.build import build_agent
from benchbed.results import load_run
from tests.conftest import interruptible

pytestmark = pytest.mark.local

CRASHY = '''
import os, signal, time
from dataclasses import dataclass
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    mode: str = "kill"
    after: int = 3

@workload("test.crashy", params=P)
def crashy(p, ctx):
    """Emits `after` samples, then dies the way `mode` says."""
    for i in range(p.after):
        yield Sample("x", float(i), "s", "lower", "measure", i)
    print("noise on stdout must not break the protocol")
    if p.mode == "kill":
        time.sleep(2.0)  # its samples reach the controller before the kill, held (hold_s ≤ 1) or not
        os.kill(os.getpid(), signal.SIGKILL)
    if p.mode == "raise":
        raise RuntimeError("boom in workload")
    if p.mode == "hang":
        time.sleep(3600)
'''


def agent_lines(pyz: Path, spec: dict[str, object]) -> tuple[int, list[dict[str, object]], str]:
    proc = subprocess.run(
        [sys.executable, str(pyz), "run", json.dumps(spec)], capture_output=True, text=True, timeout=120, check=False
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def test_zipapp_is_deterministic_and_self_hashes(tmp_path: Path) -> None:
    a = build_agent(tmp_path / "a")
    b = build_agent(tmp_path / "b")
    assert a.sha256 == b.sha256 == hashlib.sha256(a.path.read_bytes()).hexdigest()
    rc, lines, _ = agent_lines(
        a.path, {"workload": "util.noop", "params": {"duration_ms": 1}, "repetitions": 3, "expect_sha256": a.sha256}
    )
    assert rc == 0
    assert lines[0]["t"] == "hello"
    assert lines[0]["sha256"] == a.sha256
    kinds = [line["t"] for line in lines]
    assert kinds == ["hello"] + ["sample"] * 5 + ["stack", "done"]  # cold + 1 warm-up + 3 measured
    stack = lines[-2]["data"]
    assert isinstance(stack, dict)
    assert stack["interpreter"] in stack["files"]
    assert not any(str(a.path.parent) in f for f in stack["files"])  # the per-instance workdir is not the stack
    assert [line["phase"] for line in lines if line["t"] == "sample"] == ["cold", "warmup"] + ["measure"] * 3


def test_agent_refuses_other_bytes(tmp_path: Path) -> None:
    agent = build_agent(tmp_path)
    rc, lines, _ = agent_lines(agent.path, {"workload": "util.noop", "expect_sha256": "0" * 64})
    assert rc == 3
    assert lines[-1]["t"] == "error"
    assert "sha256" in str(lines[-1]["message"])


def test_unknown_workload_and_bad_spec(tmp_path: Path) -> None:
    agent = build_agent(tmp_path)
    rc, lines, _ = agent_lines(agent.path, {"workload": "nope"})
    assert rc == 3
    assert lines[-1]["error"] == "UnknownWorkload"
    proc = subprocess.run(
        [sys.executable, str(agent.path), "run", "{not json"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "not JSON" in proc.stdout


def test_fingerprint_is_gathered_inside(tmp_path: Path) -> None:
    agent = build_agent(tmp_path)
    out = subprocess.run(
        [sys.executable, str(agent.path), "fingerprint"], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)["data"]
    assert data["kernel"] == os.uname().release
    assert data["cpu"]["logical_cpus"] >= 1
    assert data["python"]["version"].count(".") == 2
    assert "numpy" in data["libraries"]
    assert data["gpus"] == []


def run_suite(tmp_path: Path, mode: str, **defaults: object) -> tuple[subprocess.CompletedProcess[str], Path]:
    (tmp_path / "crashy.py").write_text(CRASHY)
    d = {"instances": 1, "repetitions": 1, **defaults}
    (tmp_path / "s.yaml").write_text(
        "name: crash\nbaseline: local\nmodules: [crashy.py]\n"
        f"defaults: {json.dumps(d)}\n"
        f"workloads:\n  - name: test.crashy\n    params: {{mode: {mode}}}\n  - name: util.noop\n"
        "    params: {duration_ms: 1}\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchbed.cli",
            "run",
            str(tmp_path / "s.yaml"),
            "--out",
            str(tmp_path / "res"),
            "--no-report",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    (run_dir,) = (tmp_path / "res").iterdir()
    return proc, run_dir


@pytest.mark.parametrize(
    ("mode", "reason"), [("kill", "agent killed by signal 9"), ("raise", "RuntimeError: boom in workload")]
)
def test_dying_agent_fails_the_case_keeps_its_samples_and_the_suite_goes_on(
    tmp_path: Path, mode: str, reason: str
) -> None:
    proc, run_dir = run_suite(tmp_path, mode)
    assert proc.returncode == 1, proc.stderr  # a case failed (README: exit codes); the suite went on
    run = load_run(run_dir)
    assert run.meta["status"] == "complete"
    crashed = run.cases[run.cases.workload == "test.crashy"].iloc[0]
    assert crashed.status == "failed"
    assert reason in crashed.reason
    assert (run.dir / "samples.jsonl").read_text().count('"workload": "test.crashy"') == 3  # nothing is lost...
    assert len(run.samples[run.samples.workload == "test.crashy"]) == 0  # ...and a dead instance is no statistic
    assert (run.cases[run.cases.workload == "util.noop"].status == "ok").all()
    if mode == "raise":
        assert "Traceback" in crashed.stderr_tail


def test_hung_agent_times_out(tmp_path: Path) -> None:
    t0 = time.monotonic()
    _, run_dir = run_suite(tmp_path, "hang", timeout_s=3)
    assert time.monotonic() - t0 < 60
    crashed = load_run(run_dir).cases.iloc[0]
    assert crashed.status == "failed"
    assert crashed.reason == "timed out after 3 s"


def processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def leftover_workdirs(run_id: str) -> set[str]:
    """The run's own: other runs on this machine (another suite, another checkout) may have theirs meanwhile."""
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"benchbed-{run_id}-*")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_harness_keeps_samples_and_marks_incomplete(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "s.yaml").write_text(
        "name: long\nbaseline: local\ndefaults: {instances: 50, repetitions: 20, warmup: 0}\n"
        "workloads:\n  - name: util.noop\n    params: {duration_ms: 5}\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchbed.cli",
            "run",
            str(tmp_path / "s.yaml"),
            "--out",
            str(tmp_path / "res"),
            "--no-report",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    samples = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list((tmp_path / "res").glob("*/samples.jsonl"))
        if found and found[0].stat().st_size > 20_000:
            samples = found[0]
            break
        time.sleep(0.05)
    assert samples is not None, "run produced no samples"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    run = load_run(samples.parent)
    assert run.meta["status"] == "incomplete"
    assert len(run.samples) > 0
    assert run.samples["value"].notna().all()
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "interrupted" in err
        assert "Traceback" not in err
        assert not leftover_workdirs(samples.parent.name)  # the workdir of the instance in flight was removed
        assert not processes_mentioning(f"benchbed-{samples.parent.name}")  # and no agent is left behind


def test_agent_refuses_modules_from_outside_its_zipapp(tmp_path: Path, repo_root: Path) -> None:
    """A benchbed installed in the target must never stand in for the shipped bytes."""
    agent = build_agent(tmp_path)
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(repo_root)!r})\n"
        "from benchbed.agent.main import main\n"  # the repo's copy, not the zipapp's
        f"sys.argv = [{str(agent.path)!r}]\n"
        "raise SystemExit(main(['run', json.dumps({'workload': 'util.noop', 'repetitions': 1})]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 3
    last = json.loads(proc.stdout.splitlines()[-1])
    assert last["error"] == "AgentMismatch"
    assert "outside the zipapp" in last["message"]


def test_fingerprinting_instance_maps_what_the_others_map(tmp_path: Path) -> None:
    """The fingerprint is gathered by a child interpreter, so the instance that takes it has the same stack digest
    (the same mapped files) as every other instance of the workload."""
    agent = build_agent(tmp_path)
    digests = []
    for fingerprint in (True, False):
        spec = {"workload": "util.noop", "params": {"duration_ms": 1}, "repetitions": 1, "fingerprint": fingerprint}
        rc, lines, err = agent_lines(agent.path, spec)
        assert rc == 0, err
        kinds = [line["t"] for line in lines]
        assert ("fingerprint" in kinds) is fingerprint
        if fingerprint:
            fp = next(line for line in lines if line["t"] == "fingerprint")["data"]
            assert isinstance(fp, dict)
            assert fp["kernel"]  # the child's fingerprint came through whole
        digests.append(next(line for line in lines if line["t"] == "stack")["data"]["digest"])  # type: ignore[index]
    assert digests[0] == digests[1]
