"""The `libvirt` target against a real libvirtd, booting the scripts/build-vm-image guest under emulation.

Each boot costs ~30 s on an idle 2-core CI machine (minutes under load), so boots are few: one run boots two
guests (a suite that matches `local`'s shapes, and a case whose guest the test destroys); the failure paths
(bad PCI address, boot timeout, Ctrl-C, SIGKILL + cleanup) end before a guest finishes booting.
"""

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

from benchbed.results import load_run
from tests.conftest import interruptible
from tests.integration import libvirtd

pytestmark = pytest.mark.libvirt

HANG = '''
import socket, time
from dataclasses import dataclass
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    seconds: float = 600.0

@workload("test.hang", params=P)
def hang(p, ctx):
    """One sample, then (inside the test guest only) wait to be killed."""
    yield Sample("x", 1.0, "s", "lower", "measure", 0)
    if socket.gethostname() == "benchbed-vm":
        time.sleep(p.seconds)
'''


@pytest.fixture(scope="module")
def overlays() -> Iterator[Path]:
    with libvirtd.required_overlays() as path:
        yield path


def write(tmp: Path, targets: dict[str, Any], suite: str) -> tuple[Path, Path]:
    (tmp / "hang.py").write_text(HANG)
    (tmp / "t.yaml").write_text(json.dumps({"targets": targets}))
    (tmp / "s.yaml").write_text(suite)
    return tmp / "t.yaml", tmp / "s.yaml"


def start(tmp: Path, t: Path, s: Path, **kw: Any) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "benchbed.cli", "run", str(s), "--targets", str(t), "--out", str(tmp / "res")]
    return subprocess.Popen(
        [*argv, "--no-report"], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def assert_nothing_left(overlays: Path) -> None:
    assert libvirtd.benchbed_domains(overlays) == []
    assert list(overlays.iterdir()) == []


def test_suite_matches_local_shapes_and_a_destroyed_guest_fails_only_its_case(tmp_path: Path, overlays: Path) -> None:
    # start: restore (one boot + save, then each instance restored: CI pays one boot, not two); booted instances
    # run in full in test_pytest_workload, test_serve and the contract's session test, once per test session
    targets = {"local": {"kind": "local"}, "vm": libvirtd.guest_spec(overlays, start="restore")}
    suite = (
        "name: vm\nbaseline: local\nmodules: [hang.py]\nseed: 1\n"
        "defaults: {instances: 1, repetitions: 3, warmup: 1, timeout_s: 900}\n"
        "workloads:\n  - {name: util.noop, params: {duration_ms: 2}}\n  - {name: test.hang}\n"
    )
    t, s = write(tmp_path, targets, suite)
    proc = start(tmp_path, t, s)
    killed: list[str] = []

    def hanging_guest() -> bool:
        samples = list((tmp_path / "res").glob("*/samples.jsonl"))
        text = samples[0].read_text() if samples else ""
        if '"target":"vm","workload":"test.hang"' in text.replace(" ", ""):
            killed.extend(libvirtd.benchbed_domains(overlays))
            for name in killed:
                libvirtd.destroy(name)
            return True
        return proc.poll() is not None

    try:
        wait_for(hanging_guest, 1500, "the hanging case to start in the guest")
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err  # a case failed (the destroyed guest)
    assert len(killed) == 1
    (run_dir,) = (tmp_path / "res").iterdir()
    run = load_run(run_dir)
    cases = run.cases.set_index(["target", "workload"])
    assert cases.loc[("vm", "util.noop"), "status"] == "ok", cases.loc[("vm", "util.noop")].to_dict()
    hung = cases.loc[("vm", "test.hang")]
    assert hung.status == "failed"
    assert "stopped mid-case" in hung.reason or "dropped" in hung.reason, hung.reason
    assert "vm" in out  # the summary names the failed target

    def shape(target: str) -> set[tuple[str, ...]]:
        x = run.samples[(run.samples.target == target) & (run.samples.workload == "util.noop")]
        return set(zip(x.workload, x.metric, x.unit, x.better, x.phase, strict=True))

    assert shape("vm") == shape("local")
    env = run.env["vm"]
    lv = env["libvirt"]
    assert (env["kind"], lv["virt_type"], lv["representative"]) == ("libvirt", "qemu", False)
    assert "not representative" in lv["warning"]
    assert lv["domain_xml"].startswith("<domain type='qemu'")
    assert lv["qemu_version"]
    assert lv["libvirt_version"]
    assert env["kernel"].endswith("-amd64")  # the guest's kernel, from the agent
    ok = run.cases[(run.cases.target == "vm") & (run.cases.status == "ok")]
    assert set(run.cases[run.cases.target == "vm"].start) == {"restored"}
    for phases in ok.phases:
        for name in ("overlay", "restore", "resume", "connect", "first_rtt", "put_agent", "agent_ready", "teardown"):
            assert phases[name] >= 0, name
        parts = sum(v for k, v in phases.items() if k != "total")
        assert parts == pytest.approx(phases["total"], abs=0.05)  # the phases partition the wall time
    assert_nothing_left(overlays)


def test_bad_pci_address_and_boot_timeout_fail_cleanly(tmp_path: Path, overlays: Path) -> None:
    targets = {
        "local": {"kind": "local"},
        "badpci": libvirtd.guest_spec(overlays, gpus=["0000:ff:1f.7"]),
        "slow": libvirtd.guest_spec(overlays, boot_timeout_s=3),
    }
    t, s = write(
        tmp_path,
        targets,
        "name: errs\nbaseline: local\ndefaults: {instances: 1}\n"
        "workloads:\n  - {name: util.noop, params: {duration_ms: 1}}\n",
    )
    proc = start(tmp_path, t, s)
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err  # cases failed, as meant
    (run_dir,) = (tmp_path / "res").iterdir()
    cases = load_run(run_dir).cases.set_index("target")
    assert cases.loc["local", "status"] == "ok"
    assert "no PCI device 0000:ff:1f.7 on this host" in cases.loc["badpci", "reason"]
    assert not {"overlay", "create"} & cases.loc["badpci", "phases"].keys()  # rejected before anything existed
    assert "did not answer SSH on 127.0.0.1:" in cases.loc["slow", "reason"]
    assert "within 3 s (domain destroyed)" in cases.loc["slow", "reason"]
    assert_nothing_left(overlays)


def test_ctrl_c_and_sigkill_then_cleanup_leave_nothing(tmp_path: Path, overlays: Path) -> None:
    targets = {"vm": libvirtd.guest_spec(overlays)}
    t, s = write(
        tmp_path,
        targets,
        "name: stop\nbaseline: vm\ndefaults: {instances: 1}\nworkloads:\n  - {name: util.noop}\n",
    )
    # Ctrl-C while the guest boots: the domain is destroyed and the overlay removed
    proc = start(tmp_path, t, s, preexec_fn=interruptible)
    try:
        wait_for(lambda: libvirtd.benchbed_domains(overlays), 120, "a domain")
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert_nothing_left(overlays)
    # SIGKILL: nothing runs the teardown; `benchbed cleanup` finds the dead run's domain and overlay
    proc = start(tmp_path, t, s)
    try:
        (name,) = wait_for(lambda: libvirtd.benchbed_domains(overlays), 120, "a domain")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert libvirtd.benchbed_domains(overlays) == [name]
    assert (overlays / f"{name}.qcow2").exists()
    res = subprocess.run(
        [sys.executable, "-m", "benchbed.cli", "cleanup", "--targets", str(t)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    said = res.stdout.replace("\n", "")  # rich wraps long lines
    assert f"removed domain {name}" in said
    assert f"removed overlay {overlays / name}.qcow2" in said
    assert_nothing_left(overlays)
