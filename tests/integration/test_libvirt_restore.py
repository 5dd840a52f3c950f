"""`start: restore` against a real libvirtd (TCG guest from scripts/build-vm-image): one boot + save per run, then
every instance restored on its own overlay; nothing left after success, Ctrl-C, or SIGKILL + `benchbed cleanup`.

Three boots in all (one per run); the passthrough fallback is in test_libvirt_testdriver (no hostdev here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchbed.results import load_run
from tests.conftest import interruptible
from tests.integration import libvirtd
from tests.integration.test_libvirt import assert_nothing_left, start, wait_for, write

pytestmark = pytest.mark.libvirt

FRESH = '''
import os, socket, tempfile
from dataclasses import dataclass
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    n: int = 1

@workload("test.fresh", params=P)
def fresh(p, ctx):
    """Whether an earlier instance's file is here, and a random number."""
    vm = socket.gethostname() == "benchbed-vm"
    mark = "/root/benchbed-mark" if vm else os.path.join(tempfile.mkdtemp(), "mark")
    seen = os.path.exists(mark)
    open(mark, "w").close()
    yield Sample("seen_mark", float(seen), "bool", "lower", "measure", 0)
    yield Sample("random", float(int.from_bytes(os.urandom(6), "big")), "n", "lower", "measure", 0)
'''


@pytest.fixture(scope="module")
def overlays() -> Iterator[Path]:
    with libvirtd.required_overlays() as path:
        yield path


def restoring(tmp: Path, overlays: Path, suite: str, **extra: object) -> tuple[Path, Path]:
    t, s = write(
        tmp, {"local": {"kind": "local"}, "vm": libvirtd.guest_spec(overlays, start="restore", **extra)}, suite
    )
    (tmp / "fresh.py").write_text(FRESH)
    return t, s


def test_restored_instances_match_booted_shapes_each_fresh_on_its_own_overlay(tmp_path: Path, overlays: Path) -> None:
    suite = (
        "name: restore\nbaseline: local\nmodules: [fresh.py]\nseed: 1\n"
        "defaults: {instances: 3, repetitions: 2, warmup: 1, timeout_s: 600}\n"
        "workloads:\n  - {name: util.noop, params: {duration_ms: 2}}\n  - {name: test.fresh}\n"
    )
    t, s = restoring(tmp_path, overlays, suite)
    proc = start(tmp_path, t, s)
    _out, err = proc.communicate(timeout=1800)
    assert proc.returncode == 0, err
    (run_dir,) = (tmp_path / "res").iterdir()
    run = load_run(run_dir)
    vm = run.cases[run.cases.target == "vm"]
    assert list(vm.status) == ["ok"] * 6, vm.reason.tolist()
    assert set(vm.start) == {"restored"}
    assert sum("save" in p for p in vm.phases) == 1  # booted and saved once, charged to the first instance
    for phases in vm.phases:
        for name in ("overlay", "restore", "resume", "connect", "first_rtt", "put_agent", "agent_ready", "teardown"):
            assert phases[name] >= 0, name
        assert "boot" not in phases
        assert sum(v for k, v in phases.items() if k != "total") == pytest.approx(phases["total"], abs=0.05)
    assert run.cases[run.cases.target == "local"].start.isna().all()  # only kinds with two ways say how

    def shape(target: str) -> set[tuple[str, ...]]:
        x = run.samples[(run.samples.target == target) & (run.samples.workload == "util.noop")]
        return set(zip(x.workload, x.metric, x.unit, x.better, x.phase, strict=True))

    assert shape("vm") == shape("local")  # a booted VM's shape is local's (test_libvirt)
    fresh = run.samples[(run.samples.target == "vm") & (run.samples.workload == "test.fresh")]
    by_metric = {m: fresh[fresh.metric == m] for m in ("seen_mark", "random")}
    # each instance on its own overlay: no instance sees the mark an earlier one wrote (reps within one do)
    seen = by_metric["seen_mark"].groupby("instance").value.first()
    assert list(seen) == [0.0, 0.0, 0.0]
    assert by_metric["random"].value.nunique() == len(by_metric["random"])  # reseeded: no two draws alike
    lv = run.env["vm"]["libvirt"]
    assert lv["start"]["mode"] == "restore"
    assert lv["start"]["save_file_bytes"] > 0
    assert any("page cache" in s for s in lv["start"]["shared"])
    assert lv["start"]["preimported_modules"] > 10  # the workloads' stdlib imported before the save
    assert isinstance(lv["start"]["clock_behind_s"], float)  # refreshed in the first round trip, its output read
    assert_nothing_left(overlays)


def _restored_running(overlays: Path) -> bool:
    """A restored instance runs: a save file exists and another instance's guest answered SSH (its known_hosts)."""
    saves = {p.name.removesuffix(".save") for p in overlays.glob("*.save")}
    sessions = {p.name.removesuffix(".known_hosts") for p in overlays.glob("*.known_hosts")}
    return bool(saves) and bool(sessions - saves) and bool(libvirtd.benchbed_domains(overlays))


def test_ctrl_c_and_sigkill_during_a_restored_instance_then_cleanup_leave_nothing(
    tmp_path: Path, overlays: Path
) -> None:
    suite = (
        "name: stop\nbaseline: vm\nmodules: [hang.py]\n"
        "defaults: {instances: 2, timeout_s: 900}\nworkloads:\n  - {name: test.hang}\n"
    )
    write(tmp_path, {"vm": libvirtd.guest_spec(overlays, start="restore")}, suite)
    t, s = tmp_path / "t.yaml", tmp_path / "s.yaml"
    proc = start(tmp_path, t, s, preexec_fn=interruptible)
    try:
        wait_for(lambda: _restored_running(overlays), 900, "a restored instance")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert_nothing_left(overlays)  # the instance's domain and overlay, the save file and the saved disk
    proc = start(tmp_path, t, s)
    try:
        wait_for(lambda: _restored_running(overlays), 900, "a restored instance")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(overlays.glob("*.save"))
    res = subprocess.run(
        [sys.executable, "-m", "benchbed.cli", "cleanup", "--targets", str(t)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "removed domain" in res.stdout.replace("\n", "")
    assert_nothing_left(overlays)
