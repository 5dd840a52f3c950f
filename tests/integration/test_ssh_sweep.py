"""`benchbed cleanup` (and the sweep at run start) against a real sshd on 127.0.0.1: what a SIGKILLed harness
left on the host is removed; a live run's workdir, and another controller's, are left unless `--all`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchbed.owner import OWNER_FILE
from tests.conftest import REPO
from tests.integration import sshd as S
from tests.integration import test_ssh
from tests.integration.test_ssh import assert_clean, samples_of, start_chatty_run, wait_for

pytestmark = pytest.mark.ssh
HERE = socket.gethostname()
server, chatty = test_ssh.server, test_ssh.chatty  # its module fixtures: one sshd per module here too


def cleanup(tmp_path: Path, targets: Path, *more: str) -> subprocess.CompletedProcess[str]:
    """`benchbed cleanup --targets`; its own TMPDIR, so the local workdirs it also sweeps are none of another
    test's (`--all` would take those of live runs on this machine)."""
    local_tmp = tmp_path / "controller-tmp"
    local_tmp.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", "cleanup", "--targets", str(targets), *more],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(local_tmp)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def plant(parent: Path, name: str, owner: str) -> Path:
    """A workdir as the probe makes it: mode 700, claimed by `owner`."""
    path = parent / f"benchbed-{name}-Ab12Cd"
    path.mkdir(mode=0o700, parents=True)
    (path / OWNER_FILE).write_text(owner + "\n")
    (path / "agent.pyz").write_bytes(b"PK")
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_cleanup_removes_the_workdir_a_sigkilled_harness_left(server: S.Sshd, tmp_path: Path, chatty: Path) -> None:
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc, parent, out = start_chatty_run(server, tmp_path, chatty, "quiet", **quiet)
    try:
        wait_for(lambda: any(samples_of(d, "box") for d in out.glob("*") if d.is_dir()))
    finally:
        proc.kill()
        proc.wait(timeout=30)
    try:
        dirs, _ = S.leftovers(parent)
        assert len(dirs) == 1, dirs  # nothing tore it down
        assert (parent / dirs[0] / OWNER_FILE).read_text() == f"{HERE}:{proc.pid}\n"
        res = cleanup(tmp_path, tmp_path / "targets.yaml")
        assert res.returncode == 0, res.stderr
        line = f"removed ssh workdir root@127.0.0.1:{server.port}:{parent}/{dirs[0]} (harness {HERE}:{proc.pid})"
        assert line in res.stdout.splitlines(), res.stdout + res.stderr
        assert_clean(parent)
        again = cleanup(tmp_path, tmp_path / "targets.yaml")
        assert "cleanup: 0 object(s) removed" in again.stdout, again.stdout + again.stderr
    finally:
        for pid in S.leftovers(parent)[1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def removed(stdout: str) -> list[str]:
    """The workdir names `benchbed cleanup` reports as removed from SSH hosts."""
    lines = [line for line in stdout.splitlines() if line.startswith("removed ssh workdir ")]
    return sorted(line.split(" (harness ")[0].rpartition("/")[2] for line in lines)


def test_a_live_or_foreign_runs_workdir_is_left_and_removed_with_all(server: S.Sshd, tmp_path: Path) -> None:
    parent = tmp_path / "remote"
    live = plant(parent, "live", f"{HERE}:{os.getpid()}")  # this test is the live harness
    foreign = plant(parent, "foreign", "another-controller.invalid:4242")
    dead = plant(parent, "dead", f"{HERE}:{dead_pid()}")
    unclaimed = parent / "benchbed-unclaimed-Xy9"  # no owner file: not ours to judge, even with --all
    unclaimed.mkdir(mode=0o700)
    # the same host and parent under two names: swept once (the second sweep would find nothing, not fail)
    spec = server.spec(workdir=str(parent))
    targets = S.write_targets(tmp_path / "targets.yaml", {"a": spec, "b": spec})
    res = cleanup(tmp_path, targets)
    assert res.returncode == 0, res.stderr
    assert removed(res.stdout) == [dead.name], res.stdout
    assert not dead.exists()
    assert live.is_dir()
    assert foreign.is_dir()
    assert unclaimed.is_dir()
    res = cleanup(tmp_path, targets, "--all")
    assert res.returncode == 0, res.stderr
    assert removed(res.stdout) == sorted([live.name, foreign.name]), res.stdout
    assert not live.exists()
    assert not foreign.exists()
    assert unclaimed.is_dir()


def test_an_unreachable_host_is_one_line_and_the_others_are_swept(server: S.Sshd, tmp_path: Path) -> None:
    """Through a jump host, too (the same sshd): host keys are verified on both hops."""
    parent = tmp_path / "remote"
    dead = plant(parent, "dead", f"{HERE}:{dead_pid()}")
    targets = S.write_targets(
        tmp_path / "targets.yaml",
        {
            "down": server.spec(port=S.free_port(), workdir=str(parent)),
            "jumped": server.spec(workdir=str(parent), proxy_jump=f"root@127.0.0.1:{server.port}"),
        },
    )
    res = cleanup(tmp_path, targets)
    assert res.returncode == 0, res.stderr
    assert removed(res.stdout) == [dead.name]
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "connection refused" in lines[0]
    assert "not swept" in lines[0]


def test_a_run_sweeps_its_ssh_hosts_before_it_starts(server: S.Sshd, tmp_path: Path) -> None:
    parent = tmp_path / "remote"
    dead = plant(parent, "dead", f"{HERE}:{dead_pid()}")
    live = plant(parent, "live", f"{HERE}:{os.getpid()}")
    S.write_targets(tmp_path / "targets.yaml", {"box": server.spec(python=sys.executable, workdir=str(parent))})
    (tmp_path / "suite.yaml").write_text(
        "name: swept\nbaseline: box\ndefaults: {instances: 1, repetitions: 1, warmup: 0}\n"
        "workloads:\n  - name: util.noop\n    params: {duration_ms: 1}\n"
    )
    files = ["-t", str(tmp_path / "targets.yaml"), "--out", str(tmp_path / "results"), "--no-report"]
    res = subprocess.run(
        [sys.executable, "-m", "benchbed.cli", "run", str(tmp_path / "suite.yaml"), *files],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"removed leftover ssh workdir root@127.0.0.1:{server.port}:{parent}/{dead.name}" in res.stdout
    assert not dead.exists()
    assert live.is_dir()
    assert S.leftovers(parent)[0] == [live.name]  # and the run's own workdir is gone with its teardown
