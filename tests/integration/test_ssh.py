"""The `ssh` target against a real OpenSSH server on 127.0.0.1 (started here, own keys, own port)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.errors import ProvisionError
from benchbed.results import load_run
from benchbed.targets.ssh import SshTarget as SshSpec
from tests.conftest import REPO, interruptible
from tests.integration import sshd as S

pytestmark = pytest.mark.ssh

NOOP = {"name": "util.noop", "params": {"duration_ms": 1}}

CHATTY = '''
import sys, time
from dataclasses import dataclass
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    mode: str = "ok"

@workload("test.chatty", params=P)
def chatty(p, ctx):
    """Floods stderr while it yields, or fails the way `mode` says."""
    if p.mode == "raise":
        raise ValueError("boom in workload")
    if p.mode in ("quiet", "forks"):
        if p.mode == "forks":  # a child of the workload's own (its command line names the agent's workdir)
            import os, subprocess
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", os.path.abspath(sys.argv[0])])
        yield Sample("x", 0.0, "s", "lower", "cold", 0)
        time.sleep(60)
        return
    for phase, rep in ctx.schedule():
        print("e" * 4000, file=sys.stderr)
        yield Sample("x", float(rep), "s", "lower", phase, rep)
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S.Sshd]:
    with S.required(tmp_path_factory.mktemp("sshd")) as srv:
        yield srv


@pytest.fixture(scope="module")
def chatty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("modules") / "chatty.py"
    path.write_text(CHATTY)
    return path


@pytest.fixture
def lone_server(server: S.Sshd, tmp_path: Path) -> Iterator[S.Sshd]:
    """A second sshd of its own, for tests that kill it."""
    with S.running(tmp_path / "sshd2", client_key=server.client_key) as srv:
        yield srv


def target(spec: dict[str, Any], name: str = "box", run_id: str = "t") -> Any:
    from benchbed.targets.sshhost import SshProvisioner as SshTarget

    return SshTarget(name, SshSpec.model_validate(spec), run_id)


def ssh_keygen_fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def wait_for(pred: Any, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.05)


def samples_of(run_dir: Path, target_name: str) -> int:
    path = run_dir / "samples.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if f'"target": "{target_name}"' in line)


def assert_clean(parent: Path, timeout: float = 10.0) -> None:
    """No workdir and no agent process left under parent (agents may take a moment to die)."""
    end = time.monotonic() + timeout
    while True:
        dirs, procs = S.leftovers(parent)
        if not dirs and not procs:
            return
        assert time.monotonic() < end, f"left behind: dirs={dirs} processes={procs}"
        time.sleep(0.1)


# ── a full suite ─────────────────────────────────────────────────────────────────────────────────────────
def test_small_suite_gives_the_same_sample_shapes_as_local(server: S.Sshd, tmp_path: Path) -> None:
    targets = {"local": {"kind": "local", "python": sys.executable}, "box": server.spec(python=sys.executable)}
    workloads = [NOOP, {"name": "cpu.gemm", "params": {"n": 32}}]
    runner = S.run_suite(tmp_path, targets, workloads, run_id="shape-run")
    run = load_run(runner.run_dir)
    assert set(run.cases.status) == {"ok"}, run.cases[["target", "status", "reason"]]
    key = ["workload", "metric", "unit", "better", "phase"]
    shapes = {t: set(map(tuple, g[key].drop_duplicates().values.tolist())) for t, g in run.samples.groupby("target")}
    assert shapes["box"] == shapes["local"]
    assert shapes["box"]
    phases = run.cases[run.cases.target == "box"].phases.iloc[0]
    assert {"connect", "first_rtt", "put_agent", "agent_ready", "total"} <= set(phases)
    assert all(v >= 0 for v in phases.values())
    assert run.env["box"]["kind"] == "ssh"
    # default workdir: $TMPDIR or /tmp on the host, and nothing of this run is left there
    assert not list(Path("/tmp").glob("benchbed-shape-run-*"))


def test_workdir_is_private_and_removed(server: S.Sshd, tmp_path: Path) -> None:
    parent = tmp_path / "remote"
    t = target(server.spec(workdir=str(parent)))
    with t.provision() as session:
        wd = Path(session.workdir)
        assert wd.parent == parent
        assert wd.name.startswith("benchbed-t-")
        assert wd.stat().st_mode & 0o777 == 0o700
        src = tmp_path / "hello.txt"
        src.write_text("hi\n")
        session.put(src, f"{session.workdir}/hello.txt")
        res = session.run(["cat", "hello.txt"])  # cwd is the workdir
        assert (res.rc, res.stdout) == (0, "hi\n")
    assert_clean(parent)
    assert t.startup_phases()["connect"] > 0


def test_exit_codes_signals_and_timeouts(server: S.Sshd) -> None:
    t = target(server.spec())
    with t.provision() as session:
        assert session.run(["sh", "-c", "echo out; echo err >&2; exit 3"]).rc == 3
        res = session.run(["sh", "-c", "echo err >&2; kill -9 $$"])
        assert res.rc == -9
        assert res.stderr.strip() == "err"
        t0 = time.monotonic()
        res = session.run(["sleep", "31.7"], timeout=1)
        assert res.timed_out
        assert time.monotonic() - t0 < 15
        ps = session.run(["sh", "-c", "pgrep -f 'sleep 3[1].7' || true"])
        assert ps.stdout.strip() == ""


def test_large_output_streams_without_deadlock(server: S.Sshd, tmp_path: Path) -> None:
    """6 MiB on stdout and 6 MiB on stderr, interleaved: both are drained while the command runs."""
    t = target(server.spec(python=sys.executable))
    code = (
        "import sys\n"
        "for i in range(60000):\n"
        "    sys.stdout.write('o' * 100 + '\\n')\n"
        "    sys.stderr.write('e' * 100 + '\\n')\n"
    )
    lines: list[str] = []
    with t.provision() as session:
        res = session.stream([sys.executable, "-c", code], lines.append, timeout=120)
    assert res.rc == 0
    assert not res.timed_out
    assert len(lines) == 60000
    assert lines[-1] == "o" * 100
    assert res.stderr.endswith("e" * 100 + "\n")


def test_more_than_4_mib_of_agent_output(server: S.Sshd, tmp_path: Path, chatty: Path) -> None:
    reps = 25000  # ~240 bytes a sample line: ~6 MB of protocol; the chatty workload adds ~1 MB of stderr
    targets = {"box": server.spec(python=sys.executable)}
    workloads = [
        {"name": "util.noop", "params": {"duration_ms": 0}, "repetitions": reps},
        {"name": "test.chatty", "repetitions": 200},
    ]
    runner = S.run_suite(tmp_path, targets, workloads, modules=[chatty])
    run = load_run(runner.run_dir)
    assert set(run.cases.status) == {"ok"}, run.cases[["status", "reason"]]
    assert (run.samples.workload == "util.noop").sum() == reps + 2
    assert (runner.run_dir / "samples.jsonl").stat().st_size > 4 * 2**20


# ── host keys ────────────────────────────────────────────────────────────────────────────────────────────
def test_changed_host_key_is_refused_even_with_accept_new(server: S.Sshd, tmp_path: Path) -> None:
    other = S.keygen(tmp_path / "other_host_key")
    kind, b64 = other.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"{server.host_name} {kind} {b64}\n")
    offered = ssh_keygen_fingerprint(server.host_key.with_suffix(".pub"))
    for accept in (False, True):
        t = target(server.spec(known_hosts=str(known), accept_new_host_key=accept))
        with pytest.raises(ProvisionError, match="CHANGED") as err, t.provision():
            pass
        msg = str(err.value)
        assert offered in msg
        assert server.host_name in msg
        assert ssh_keygen_fingerprint(other.with_suffix(".pub")) in msg
    assert known.read_text() == f"{server.host_name} {kind} {b64}\n"


def test_unknown_host_key_refused_by_default(server: S.Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    t = target(server.spec(known_hosts=str(known)))
    with pytest.raises(ProvisionError, match="unknown") as err, t.provision():
        pass
    assert ssh_keygen_fingerprint(server.host_key.with_suffix(".pub")) in str(err.value)
    assert server.host_name in str(err.value)
    assert not known.exists()


def test_unknown_host_key_accepted_only_with_option_and_saved(server: S.Sshd, tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    with target(server.spec(known_hosts=str(known), accept_new_host_key=True)).provision() as session:
        assert session.run(["true"]).rc == 0
    assert known.read_text() == server.host_key_line()
    with target(server.spec(known_hosts=str(known))).provision() as session:  # now known: no option needed
        assert session.run(["true"]).rc == 0
    assert known.read_text() == server.host_key_line()  # nothing appended twice


# ── clear errors ─────────────────────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        ({"user": "nosuchuser"}, r"authentication failed for nosuchuser@127\.0\.0\.1"),
        ({"key": "WRONG"}, r"authentication failed for root@127\.0\.0\.1:\d+ with key"),
        ({"key": "/nonexistent/key"}, r"key file /nonexistent/key not found"),
        ({"python": "/nonexistent/python3"}, r"python '/nonexistent/python3' not found on root@127\.0\.0\.1"),
        ({"workdir": "/sys/benchbed"}, r"cannot create a private workdir under /sys/benchbed .*not permitted"),
        ({"port": "CLOSED"}, r"cannot connect to root@127\.0\.0\.1:\d+: connection refused"),
        ({"host": "no-such-host.invalid"}, r"cannot resolve host 'no-such-host\.invalid'"),
    ],
)
def test_errors_are_one_clear_line(server: S.Sshd, tmp_path: Path, over: dict[str, Any], pattern: str) -> None:
    if over.get("key") == "WRONG":
        over = {"key": str(S.keygen(tmp_path / "stranger"))}
    if over.get("port") == "CLOSED":
        over = {"port": S.free_port()}
    t = target(server.spec(**over))
    with pytest.raises(ProvisionError, match=pattern) as err, t.provision():
        pass
    assert "\n" not in str(err.value)


def test_sudo_is_probed(server: S.Sshd, tmp_path: Path) -> None:
    t = target(server.spec(sudo=True, workdir=str(tmp_path / "remote")))
    if shutil.which("sudo") is None:
        with pytest.raises(ProvisionError, match="sudo -n fails"), t.provision():
            pass
        return
    with t.provision() as session:
        assert session.run(["id", "-u"]).stdout.strip() == "0"
    assert_clean(tmp_path / "remote")


def test_proxy_jump_through_the_same_sshd(server: S.Sshd) -> None:
    t = target(server.spec(proxy_jump=f"root@127.0.0.1:{server.port}"))
    with t.provision() as session:
        assert session.run(["echo", "via jump"]).stdout == "via jump\n"


# ── failures and cleanup ─────────────────────────────────────────────────────────────────────────────────
def test_cleanup_after_failed_and_timed_out_cases(server: S.Sshd, tmp_path: Path, chatty: Path) -> None:
    parent = tmp_path / "remote"
    targets = {"box": server.spec(python=sys.executable, workdir=str(parent))}
    workloads = [
        {"name": "test.chatty", "params": {"mode": "raise"}},
        {"name": "util.noop", "params": {"duration_ms": 1000}, "repetitions": 60, "timeout_s": 2},
    ]
    runner = S.run_suite(tmp_path, targets, workloads, modules=[chatty])
    cases = load_run(runner.run_dir).cases.set_index("workload")
    assert cases.loc["test.chatty", "status"] == "failed"
    assert "ValueError: boom in workload" in cases.loc["test.chatty", "reason"]
    assert cases.loc["util.noop", "status"] == "failed"
    assert "timed out after 2 s" in cases.loc["util.noop", "reason"]
    assert_clean(parent)


def test_sshd_killed_mid_case_fails_that_case_and_the_run_goes_on(
    lone_server: S.Sshd, server: S.Sshd, tmp_path: Path
) -> None:
    parent = tmp_path / "remote"
    slow = {"name": "util.noop", "params": {"duration_ms": 50}, "repetitions": 60}
    targets = {
        "doomed": lone_server.spec(python=sys.executable, workdir=str(parent)),
        "fine": server.spec(python=sys.executable),
    }
    runner = S.make_runner(tmp_path, targets, [slow, NOOP], defaults={"repetitions": 2})
    killer = threading.Thread(
        target=lambda: (wait_for(lambda: samples_of(runner.run_dir, "doomed") > 0), lone_server.kill()), daemon=True
    )
    killer.start()
    runner.execute()
    killer.join()
    run = load_run(runner.run_dir)
    assert run.meta["status"] == "complete"
    doomed = run.cases[run.cases.target == "doomed"].sort_values("case")
    assert doomed.status.tolist() == ["failed", "failed"]
    first, then = doomed.reason.tolist()
    assert "dropped while" in first
    assert "connection refused" in then
    assert runner.failed_targets["doomed"] == first
    assert set(run.cases[run.cases.target == "fine"].status) == {"ok"}
    # the agent loses its stdout with the connection and dies; its workdir stays (the host was unreachable)
    wait_for(lambda: not S.leftovers(parent)[1], timeout=30)


def interrupt_when(monkeypatch: pytest.MonkeyPatch, on_target: str) -> None:
    """KeyboardInterrupt out of the line handler, right after the first sample of `on_target`."""
    from benchbed import casestate as runner_mod

    original = runner_mod.CaseState.on_line

    def on_line(state: Any, line: str) -> None:
        original(state, line)
        if state.case.target == on_target and state.samples >= 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod.CaseState, "on_line", on_line)


@pytest.fixture
def foreground() -> Iterator[None]:
    """Python's own SIGINT handler, as a terminal's foreground process has it. A background job (`cmd &`, how a
    CI script may start the suite) starts with SIGINT ignored (POSIX) and Python keeps it so: a SIGINT would do
    nothing, and the test would wait out the workload instead of testing the interrupt."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("how", ["on_line", "sigint", "sigint-parallel"])
def test_ctrl_c_kills_the_agent_and_removes_the_workdir(
    server: S.Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chatty: Path, how: str, foreground: None
) -> None:
    """The quiet workload sleeps silently after its first sample: only a remote kill ends it (no SIGPIPE)."""
    parent = tmp_path / "remote"
    targets = {"box": server.spec(python=sys.executable, workdir=str(parent))}
    if how == "sigint-parallel":  # local on the main thread; box and box2 (same sshd, another lane) in threads
        (tmp_path / "kh").write_text(server.host_key_line().replace("127.0.0.1", "localhost"))
        box2 = server.spec(
            python=sys.executable, workdir=str(parent), host="localhost", known_hosts=str(tmp_path / "kh")
        )
        targets = {"local": {"kind": "local", "python": sys.executable}, **targets, "box2": box2}
    quiet = {"name": "test.chatty", "params": {"mode": "quiet"}}
    runner = S.make_runner(tmp_path, targets, [quiet], modules=[chatty], parallel=3 if "parallel" in how else 1)
    watcher = None
    if how == "on_line":
        interrupt_when(monkeypatch, "box")
    else:  # a real SIGINT to the main thread, once every agent is streaming

        def ctrl_c() -> None:
            wait_for(lambda: all(samples_of(runner.run_dir, n) for n in targets))
            status = Path("/proc/self/status").read_text().splitlines()
            sent.append(" ".join(line for line in status if line.startswith(("SigBlk", "SigIgn", "SigCgt"))))
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

        watcher = threading.Thread(target=ctrl_c, daemon=True)
        watcher.start()
    sent: list[str] = []  # what the process did with signals when SIGINT went to the main thread (a CI-only failure)
    try:
        runner.execute()
    except KeyboardInterrupt:
        pass
    else:
        pytest.fail(f"no KeyboardInterrupt (SIGINT sent: {bool(sent)}, {sent}; handler {signal.getsignal(2)})")
    if watcher:
        watcher.join()
    assert json.loads((runner.run_dir / "run.json").read_text())["status"] == "incomplete"
    assert_clean(parent)


def start_chatty_run(
    server: S.Sshd, tmp_path: Path, chatty: Path, mode: str, **popen: Any
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`benchbed run` of test.chatty (`mode`) on the sshd target, in the background: (process, remote workdir,
    results dir)."""
    parent = tmp_path / "remote"
    S.write_targets(tmp_path / "targets.yaml", {"box": server.spec(python=sys.executable, workdir=str(parent))})
    (tmp_path / "suite.yaml").write_text(
        f"name: {mode}\nbaseline: box\nmodules: [{chatty}]\n"
        f"workloads:\n  - name: test.chatty\n    params: {{mode: {mode}}}\n"
    )
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "benchbed.cli",
        "run",
        str(tmp_path / "suite.yaml"),
        "-t",
        str(tmp_path / "targets.yaml"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*cmd, "--out", str(out), "--no-report"], cwd=REPO, env=env, **popen)
    return proc, parent, out


def test_sigint_to_benchbed_run_cleans_up_remotely(server: S.Sshd, tmp_path: Path, chatty: Path) -> None:
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "preexec_fn": interruptible}
    proc, parent, out = start_chatty_run(server, tmp_path, chatty, "quiet", **pipes)
    try:
        wait_for(lambda: any(samples_of(d, "box") for d in out.glob("*") if d.is_dir()))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err
    assert_clean(parent)


def test_sigkilled_harness_leaves_no_agent_on_the_host(server: S.Sshd, tmp_path: Path, chatty: Path) -> None:
    """Nothing tears down after a SIGKILL: the agent (and the child its workload started) end themselves once
    sshd closes their stdin with the dropped connection, long before the workload's 60 s sleep is over."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc, parent, out = start_chatty_run(server, tmp_path, chatty, "forks", **quiet)
    try:
        wait_for(lambda: any(samples_of(d, "box") for d in out.glob("*") if d.is_dir()))
        wait_for(lambda: len(S.leftovers(parent)[1]) >= 2)  # the agent and its workload's child, on the host
    finally:
        proc.kill()
        proc.wait(timeout=30)
    try:
        end = time.monotonic() + 20
        while (left := S.leftovers(parent)[1]) and time.monotonic() < end:
            time.sleep(0.1)
        assert not left, f"still running on the host after the harness was SIGKILLed: {left}"
    finally:
        for pid in S.leftovers(parent)[1]:  # a failed run of this test must not leave them for the next
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(parent, ignore_errors=True)  # the workdir: nobody was left to remove it


# ── fleets ───────────────────────────────────────────────────────────────────────────────────────────────
class _Lanes:
    """Observer recording when each instance ran, to check the lane discipline."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[float, float, int]]] = {}
        self.open: dict[int, float] = {}

    def started(self, plan: Any, run_dir: Path) -> None:
        pass

    def case_started(self, case: Any) -> None:
        self.open[case.index] = time.monotonic()

    def case_finished(self, case: Any, record: dict[str, Any]) -> None:
        self.spans.setdefault(case.target, []).append((self.open.pop(case.index), time.monotonic(), case.index))

    def replanned(self, plan: Any) -> None:
        pass


def test_parallel_fleet_with_a_dead_host(server: S.Sshd, lone_server: S.Sshd, tmp_path: Path) -> None:
    targets = {
        "local": {"kind": "local", "python": sys.executable},
        "h1": server.spec(python=sys.executable),
        "h2": lone_server.spec(python=sys.executable),
        "dead": server.spec(port=S.free_port()),
    }
    lanes = _Lanes()
    work = {"name": "util.noop", "params": {"duration_ms": 200}}
    runner = S.run_suite(tmp_path, targets, [work], defaults={"instances": 2}, parallel=4, observer=lanes)
    run = load_run(runner.run_dir)
    status = run.cases.groupby("target").status.apply(set).to_dict()
    assert status == {"local": {"ok"}, "h1": {"ok"}, "h2": {"ok"}, "dead": {"failed"}}
    assert list(runner.failed_targets) == ["dead"]
    assert "connection refused" in runner.failed_targets["dead"]
    assert run.meta["status"] == "complete"
    assert run.meta["parallel"] == 4
    for name, spans in lanes.spans.items():
        indexes = [i for _, _, i in spans]
        assert indexes == sorted(indexes), f"{name}: plan order not kept"
        for (_, end, _), (start, _, _) in itertools.pairwise(spans):
            assert start >= end, f"{name}: two instances at once"
    every = sorted((s, e) for spans in lanes.spans.values() for s, e, _ in spans)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(every)), "lanes never overlapped"
    assert samples_of(runner.run_dir, "h1") == samples_of(runner.run_dir, "local") > 0


def test_cli_parallel_summary_names_failed_hosts(server: S.Sshd, tmp_path: Path) -> None:
    S.write_targets(
        tmp_path / "targets.yaml",
        {"up": server.spec(python=sys.executable), "down": server.spec(port=S.free_port())},
    )
    (tmp_path / "suite.yaml").write_text(
        "name: fleet\nbaseline: up\ndefaults: {instances: 1, repetitions: 2, warmup: 0}\n"
        "workloads:\n  - name: util.noop\n    params: {duration_ms: 1}\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchbed.cli",
            "run",
            str(tmp_path / "suite.yaml"),
            "-t",
            str(tmp_path / "targets.yaml"),
            "--out",
            str(tmp_path / "results"),
            "--no-report",
            "--parallel",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert proc.returncode == 1, proc.stderr  # a failed case fails the run (README: exit codes)
    assert "1 ok, 0 skipped, 1 failed" in proc.stdout
    assert "failed on down:" in proc.stdout
    assert "connection refused" in proc.stdout


def test_a_prelude_runs_in_the_first_round_trip_and_fails_with_one_line(server: S.Sshd, tmp_path: Path) -> None:
    """A restored VM's refresh rides on the workdir probe: its output is kept, the workdir still found."""
    mark = tmp_path / "prelude-ran"
    t = target(server.spec(workdir=str(tmp_path / "remote")))
    t.prelude = (lambda: f"echo one; echo two; touch {mark}", "could not refresh", "fix the guest")
    with t.provision() as session:
        assert Path(session.workdir).parent == tmp_path / "remote"
        assert mark.is_file()
    assert (t.prelude_out, t.prelude_sent) == ("one\ntwo", f"echo one; echo two; touch {mark}")
    t.prelude = (lambda: "echo going >&2; false", "could not refresh", "fix the guest")
    expect = r"^target .box.: could not refresh: going \(hint: fix the guest\)$"
    with pytest.raises(ProvisionError, match=expect) as err, t.provision():
        pass
    assert "\n" not in str(err.value)
