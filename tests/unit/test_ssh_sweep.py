"""The ssh sweep's pieces that need no server: reading the listing, the owner decision, and the remote script
itself, run by this machine's sh against a planted directory (what sshd would run on a host)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchbed.owner import OWNER_FILE

sweep = pytest.importorskip("benchbed.targets.sshsweep", reason="paramiko not installed")
HERE = socket.gethostname()


def dead_pid() -> int:
    """A pid of this host that has just ended (reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_listing_keeps_workdir_names_with_their_owners_and_drops_anything_else() -> None:
    text = (
        "in\t/tmp\n"
        f"dir\tbenchbed-r1-abc\t{HERE}:12\n"
        "dir\tbenchbed-r2-def\t\n"  # an empty claim: judged like any other owner (alive: cannot be judged)
        "dir\tbenchbed-\tx:1\n"  # the bare prefix is no workdir
        "dir\tother-r3\tx:1\n"
        "dir\tbenchbed-a/../../etc\tx:1\n"
        "noise without a tab\n"
        "listed\n"
    )
    assert sweep.parse_listing(text) == [
        sweep.Leftover("benchbed-r1-abc", f"{HERE}:12"),
        sweep.Leftover("benchbed-r2-def", ""),
    ]
    assert sweep.parse_lines(text, "in") == [["/tmp"]]


def test_a_dead_harness_of_this_host_is_removed_a_live_or_foreign_one_is_left() -> None:
    dead = sweep.Leftover("benchbed-dead", f"{HERE}:{dead_pid()}")
    live = sweep.Leftover("benchbed-live", f"{HERE}:{os.getpid()}")
    foreign = sweep.Leftover("benchbed-foreign", "another-controller.invalid:1")
    garbled = sweep.Leftover("benchbed-garbled", "no pid here")
    found = [dead, live, foreign, garbled]
    assert sweep.judge(found, everything=False) == ([dead], [foreign, garbled])
    assert sweep.judge(found, everything=True) == (found, [])


def plant(parent: Path, name: str, owner: str | None) -> Path:
    path = parent / name
    path.mkdir(mode=0o700)
    (path / "agent.pyz").write_text("x")
    if owner is not None:
        (path / OWNER_FILE).write_text(owner + "\n")
    return path


def run_script(parent: Path, answer: str, *, script: str | None = None) -> str:
    """The sweep script as the host would run it: its listing, then `answer` on its stdin."""
    text = script or sweep.sweep_script(f'"{parent}"', sudo=False)
    proc = subprocess.run(["sh", "-c", text], input=answer, capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_the_remote_script_lists_claimed_workdirs_and_removes_only_those_named_back(tmp_path: Path) -> None:
    parent = tmp_path / "with space"
    parent.mkdir()
    dead = plant(parent, "benchbed-r-dead", "ctl:1")
    live = plant(parent, "benchbed-r-live", f"{HERE}:{os.getpid()}")
    unclaimed = plant(parent, "benchbed-r-unclaimed", None)
    (parent / "benchbed-r-link").symlink_to(live)
    outside = plant(tmp_path, "benchbed-outside", "x:1")
    listing = run_script(parent, "")
    names = sorted(item.name for item in sweep.parse_listing(listing))
    assert names == ["benchbed-r-dead", "benchbed-r-live"]  # neither the unclaimed one nor the link
    assert sweep.parse_lines(listing, "in") == [[str(parent.resolve())]]
    assert all(p.is_dir() for p in (dead, live, unclaimed, outside))  # nothing named back: nothing removed
    # only names of workdirs directly under the parent are taken: no path, no link, nothing else
    answer = "benchbed-r-dead\n../benchbed-outside\nbenchbed-r-link\n/etc\nbenchbed-r-missing\n"
    out = run_script(parent, answer)
    assert sweep.parse_lines(out, "removed") == [["benchbed-r-dead"]]
    assert not dead.exists()
    assert all(p.is_dir() for p in (live, unclaimed, outside))
    assert (parent / "benchbed-r-link").is_symlink()


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
def test_the_remote_script_ends_a_command_still_working_in_a_removed_workdir(tmp_path: Path) -> None:
    """The wrapper's pid file names the command's process group; a stale one (a reused pid) is never killed."""
    wd = plant(tmp_path, "benchbed-r-stuck", "ctl:1")
    stuck = subprocess.Popen(["sleep", "300"], cwd=wd, start_new_session=True)
    bystander = subprocess.Popen(["sleep", "300"], cwd=tmp_path, start_new_session=True)
    try:
        (wd / ".pid-1").write_text(f"{stuck.pid}\n")
        (wd / ".pid-2").write_text(f"{bystander.pid}\n")  # its cwd is elsewhere: not this workdir's command
        out = run_script(tmp_path, "benchbed-r-stuck\n")
        assert sweep.parse_lines(out, "removed") == [["benchbed-r-stuck"]]
        assert stuck.wait(timeout=30) == -signal.SIGKILL
        with pytest.raises(subprocess.TimeoutExpired):  # still running
            bystander.wait(timeout=0.5)
    finally:
        for proc in (stuck, bystander):
            proc.kill()
            proc.wait()


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_a_missing_parent_lists_nothing_and_the_sudo_variant_is_valid_sh(tmp_path: Path) -> None:
    assert run_script(tmp_path / "absent", "benchbed-x\n") == ""
    subprocess.run(["sh", "-n", "-c", sweep.sweep_script('"$HOME"/x', sudo=True)], check=True)


def test_each_host_user_and_parent_is_swept_once_with_sudo_if_any_target_used_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchbed.targets.ssh import SshTarget

    calls: list[tuple[str, int, str | None, bool]] = []

    def fake(spec: SshTarget, *, sudo: bool, everything: bool) -> list[str]:
        calls.append((spec.host, spec.port, spec.workdir, sudo))
        return [f"{spec.host}:{spec.port}"]

    monkeypatch.setattr(sweep, "sweep_host", fake)
    specs = [
        SshTarget(kind="ssh", host="h1"),
        SshTarget(kind="ssh", host="h1", sudo=True, description="the same host under another name"),
        SshTarget(kind="ssh", host="h1", port=2222),
        SshTarget(kind="ssh", host="h1", workdir="/scratch"),
        SshTarget(kind="ssh", host="h2"),
    ]
    assert sweep.sweep(specs, everything=False) == ["h1:22", "h1:2222", "h1:22", "h2:22"]
    assert sorted(calls, key=str) == sorted(
        [("h1", 22, None, True), ("h1", 2222, None, False), ("h1", 22, "/scratch", False), ("h2", 22, None, False)],
        key=str,
    )
    assert sweep.sweep([], everything=True) == []


class LocalShell:
    """What the probe needs of a session, run by this machine's sh: counts the round trips."""

    def __init__(self) -> None:
        self.calls = 0

    def sh(self, script: str, timeout: float) -> Any:
        from benchbed.targets.base import CommandResult

        self.calls += 1
        proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=timeout, check=False)
        return CommandResult(("sh",), proc.returncode, proc.stdout, proc.stderr, 0.0)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_the_probe_claims_its_workdir_in_the_same_round_trip(tmp_path: Path) -> None:
    from benchbed.owner import owner_label
    from benchbed.targets.ssh import SshTarget
    from benchbed.targets.sshhost import SshProvisioner

    spec = SshTarget(kind="ssh", host="h", python=sys.executable, workdir=str(tmp_path / "new parent"))
    host = SshProvisioner("box", spec, "run-1")
    host.prelude = (lambda: "echo refreshed", "could not refresh", "hint")  # a restored VM's, before the probe
    shell = LocalShell()
    workdir = Path(host._probe(shell))  # type: ignore[arg-type]
    assert shell.calls == 1
    assert host.prelude_out == "refreshed"
    assert workdir.parent == tmp_path / "new parent"
    assert workdir.name.startswith("benchbed-run-1-")
    assert workdir.stat().st_mode & 0o777 == 0o700
    assert (workdir / OWNER_FILE).read_text() == owner_label() + "\n"
    # what the sweep lists there is this claim
    listing = run_script(workdir.parent, "")
    assert sweep.parse_listing(listing) == [sweep.Leftover(workdir.name, owner_label())]
