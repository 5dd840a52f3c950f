"""The `ns` kind with real namespaces on this host: samples, namespaces in effect, teardown, interrupts, cleanup."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from benchbed.demo import probe_ns
from benchbed.results import load_run
from benchbed.targets.ns import NS_PREFIX, NsTarget, namespaces_of
from benchbed.targets.registry import make_target
from tests.conftest import REPO, interruptible, need
from tests.integration import sshd as S

pytestmark = pytest.mark.local
CREATED = ("user", "mnt", "pid", "net", "ipc", "uts")


def require(tool: str) -> None:
    if shutil.which(tool) is None:
        need("ns", f"{tool} is not installed (apt-get install {'bubblewrap' if tool == 'bwrap' else 'util-linux'})")
    why, _ = probe_ns(NsTarget.model_validate({"kind": "ns", "tool": tool}))
    if why:
        need("ns", why)


@pytest.fixture(params=["unshare", "bwrap"])
def tool(request: pytest.FixtureRequest) -> str:
    require(request.param)
    return str(request.param)


def ns_spec(tool: str = "auto") -> dict[str, str]:
    return {"kind": "ns", "tool": tool, "python": sys.executable}


def processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes() and int(cmdline.parent.name) != os.getpid():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def holders_of(text: str) -> list[int]:
    return [p for p in processes_mentioning(text) if p != os.getpid()]


def ns_workdirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{NS_PREFIX}*")}


def users_of(link: str, kind: str) -> list[str]:
    """Live processes in the namespace `link` (e.g. "net:[4026532255]"); a zombie has exited: its parent has yet
    to reap it (bwrap's outer process leaves that to init)."""
    out = []
    for entry in Path("/proc").glob(f"[0-9]*/ns/{kind}"):
        proc = entry.parent.parent
        try:
            if str(entry.readlink()) == link and (proc / "stat").read_text().rpartition(")")[2].split()[0] != "Z":
                out.append(proc.name)
        except (OSError, IndexError):
            continue
    return out


def test_agent_runs_in_fresh_namespaces_and_the_fingerprint_says_which(tool: str, tmp_path: Path) -> None:
    targets = {"local": {"kind": "local", "python": sys.executable}, "ns": ns_spec(tool)}
    workloads = [{"name": "cpu.gemm", "params": {"n": 32}}, {"name": "startup.process"}]
    run = load_run(S.run_suite(tmp_path, targets, workloads).run_dir)
    assert set(run.cases.status) == {"ok"}, run.cases[["target", "workload", "reason"]].to_string()
    assert set(run.samples.target) == {"local", "ns"}
    assert set(run.samples[run.samples.target == "ns"].metric) == set(run.samples[run.samples.target == "local"].metric)
    env = run.env["ns"]
    assert env["kind"] == "ns"
    assert env["ns"]["new"] == " ".join(sorted(CREATED))
    assert "cgroup" in env["ns"]["shared_with_host"].split()
    assert env["ns"]["tool"].startswith("bubblewrap" if tool == "bwrap" else "unshare")
    if shutil.which("ip"):
        assert env["ns"]["loopback"] == "up"
    assert env["python"] == run.env["local"]["python"]  # the same userland: only the boundary differs
    for phases in run.cases[run.cases.target == "ns"].phases:
        assert phases.keys() >= {"workdir", "namespaces", "loopback", "agent_ready", "teardown", "total"}
        assert all(v >= 0 for v in phases.values())


PROBE = (
    "for n in user mnt pid net ipc uts cgroup; do echo $n $(readlink /proc/self/ns/$n); done; "
    "echo uid $(id -u); echo procs $(ls /proc | grep -c '^[0-9]'); echo self $$"
)


def test_commands_see_their_own_namespaces_and_teardown_leaves_nothing(tool: str) -> None:
    host = namespaces_of("self")
    target = make_target("t", NsTarget.model_validate(ns_spec(tool)), "it")
    with target.provision() as session:
        res = session.run(["sh", "-c", PROBE], timeout=60)
        assert res.rc == 0, res.stderr
        inside = dict(line.split(" ", 1) for line in res.stdout.splitlines())
        for kind in CREATED:
            assert inside[kind] != host[kind], kind
        assert inside["cgroup"] == host["cgroup"]
        assert inside["uid"] == "0"  # root inside, mapped to the caller outside
        assert int(inside["procs"]) < 10  # a fresh pid namespace with its own /proc
        assert int(inside["self"]) < 10
        again = session.run(["readlink", "/proc/self/ns/net"], timeout=60).stdout.strip()
        assert again == inside["net"]  # every command of an instance joins the same namespaces, like docker exec
        loop = session.run(
            [sys.executable, "-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
             "c = socket.create_connection(s.getsockname()); print('lo ok'); c.close(); s.close()"],
            timeout=60,
        )  # fmt: skip
        if shutil.which("ip"):
            assert loop.stdout.strip() == "lo ok", loop.stderr
        workdir = session.workdir
        assert holders_of(workdir)
        members = {kind: users_of(inside[kind], kind) for kind in ("pid", "net")}
        assert all(members.values())
    assert not Path(workdir).exists()
    assert not holders_of(workdir)
    for kind, pids in members.items():  # every process that was inside is gone (an inode number may be reused)
        assert not [p for p in pids if p in users_of(inside[kind], kind)], kind


def start_run(tmp_path: Path, tool: str) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "s.yaml").write_text(
        "name: long\nbaseline: ns\ndefaults: {instances: 40, repetitions: 20, warmup: 0}\n"
        "workloads:\n  - name: util.noop\n    params: {duration_ms: 5}\n"
    )
    (tmp_path / "t.yaml").write_text(json.dumps({"targets": {"ns": ns_spec(tool)}}))
    argv = [sys.executable, "-m", "benchbed.cli", "run", str(tmp_path / "s.yaml"), "-t", str(tmp_path / "t.yaml")]
    argv += ["--out", str(tmp_path / "res"), "--no-report"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible, cwd=tmp_path
    )
    return proc, tmp_path / "res"


def wait_for_samples(res: Path, size: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list(res.glob("*/samples.jsonl"))
        if found and found[0].stat().st_size > size:
            return
        time.sleep(0.02)
    pytest.fail("the run produced no samples")


@pytest.mark.parametrize("delay", [0.0, 0.04, 0.09, 0.15, 0.22, 0.3])
def test_ctrl_c_leaves_no_namespace_process_or_workdir(tool: str, tmp_path: Path, delay: float) -> None:
    """Interrupted at points spread over an instance's life (about 0.3 s each: workdir, namespaces, nsenter, agent,
    samples, teardown), counted from the first sample on disk."""
    before = ns_workdirs()
    proc, res = start_run(tmp_path, tool)
    wait_for_samples(res, 0)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert ns_workdirs() <= before
    assert not holders_of(f"{NS_PREFIX}{proc.pid}-")


def test_sigkilled_harness_holder_exits_by_itself_and_cleanup_sweeps_the_workdir(tool: str, tmp_path: Path) -> None:
    proc, res = start_run(tmp_path, tool)
    wait_for_samples(res, 3_000)
    proc.kill()
    proc.communicate(timeout=30)
    mine = f"{NS_PREFIX}{proc.pid}-"
    deadline = time.monotonic() + 20
    while holders_of(mine) and time.monotonic() < deadline:  # stdin EOF (and bwrap's --die-with-parent)
        time.sleep(0.05)
    assert not holders_of(mine), "the holder outlived its harness"
    left = [d for d in ns_workdirs() if d.startswith(mine)]
    out = subprocess.run(
        [sys.executable, "-m", "benchbed.cli", "cleanup", "-t", str(tmp_path / "t.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert not [d for d in ns_workdirs() if d.startswith(mine)]
    for name in left:
        assert name in out.stdout


def test_cleanup_kills_a_dead_runs_processes_and_spares_a_live_runs(tmp_path: Path) -> None:
    require("unshare")
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names a harness that is gone
    tmp = Path(tempfile.gettempdir())
    orphan = Path(tempfile.mkdtemp(prefix=f"{NS_PREFIX}{dead.pid}-orphan-", dir=tmp))
    alive = Path(tempfile.mkdtemp(prefix=f"{NS_PREFIX}{os.getpid()}-alive-", dir=tmp))
    sleepers = [
        subprocess.Popen(["sh", "-c", "sleep 300", "benchbed-ns", str(d)], start_new_session=True)
        for d in (orphan, alive)
    ]
    try:
        (tmp_path / "t.yaml").write_text("targets:\n  n: {kind: ns}\n")
        out = subprocess.run(
            [sys.executable, "-m", "benchbed.cli", "cleanup", "-t", str(tmp_path / "t.yaml")],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert f"removed ns workdir {orphan} and 1 process(es)" in out.stdout
        assert sleepers[0].wait(timeout=10) == -signal.SIGKILL
        assert not orphan.exists()
        assert sleepers[1].poll() is None  # a live harness's instance is left alone
        assert alive.is_dir()
    finally:
        for s in sleepers:
            s.kill()
            s.wait()
        shutil.rmtree(alive, ignore_errors=True)
        shutil.rmtree(orphan, ignore_errors=True)


UNPRIVILEGED = """
import json, sys
from benchbed.targets.ns import NsTarget
from benchbed.targets.registry import make_target
target = make_target("t", NsTarget(kind="ns", tool=sys.argv[1], namespaces=["mount", "pid", "net"]), "unpriv")
with target.provision() as s:
    res = s.run(["sh", "-c", "id -u; readlink /proc/self/ns/user; readlink /proc/self/ns/pid"], timeout=60)
print(json.dumps({"rc": res.rc, "out": res.stdout.split(), "err": res.stderr, "env": target.describe()}))
"""


def test_an_unprivileged_user_gets_a_user_namespace_too(tool: str) -> None:
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to become an unprivileged user")
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", UNPRIVILEGED, tool],
        capture_output=True, text=True, timeout=120, check=False, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["rc"] == 0, got["err"]
    uid, user_ns, pid_ns = got["out"]
    assert uid == "0"
    assert user_ns != namespaces_of("self")["user"]
    assert pid_ns != namespaces_of("self")["pid"]
    assert got["env"]["ns"]["new"] == "mnt net pid user"  # `user` added although not listed
    assert got["env"]["ns"]["harness_euid"] == 65534


NO_USERNS = """
import sys
from benchbed.targets.ns import NsTarget
from benchbed.demo import probe_ns
print(probe_ns(NsTarget(kind="ns", tool=sys.argv[1]))[0])
print(probe_ns(NsTarget(kind="ns", tool="unshare", namespaces=["mount", "pid", "net", "ipc", "uts"]))[0])
"""


def test_without_user_namespaces_the_instance_fails_with_one_line_naming_why_and_the_fix(tool: str) -> None:
    """User namespaces switched off (user.max_user_namespaces = 0), as on hardened hosts: simulated one level down,
    in a user namespace of our own whose limit we may lower without touching the host's."""
    script = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"'
    argv = ["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh", sys.executable, "-c", NO_USERNS, tool]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    refused, without_user = proc.stdout.splitlines()
    assert refused.startswith("target 'ns': cannot create namespaces (user mount pid net ipc uts) with ")
    assert "user namespaces are disabled (user.max_user_namespaces = 0)" in refused
    assert "(hint: sysctl -w user.max_user_namespaces=15000, or as root list `namespaces` without `user`)" in refused
    assert without_user == "None"  # and the hint's way out works
