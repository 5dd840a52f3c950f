"""The `podman` target against real podman (rootful; its API service started by the target) and the test image:
the quick suite's sample shapes equal local's, and no labelled container or API service is left after success,
failure, Ctrl-C, or a SIGKILLed harness followed by `benchbed cleanup`."""

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

from benchbed.owner import pid_alive
from benchbed.results import load_run
from tests.conftest import REPO, need
from tests.integration import podmand
from tests.integration.test_docker import bench, reap, run_suite, start_run, write

pytestmark = pytest.mark.podman
__all__ = ["reap"]  # the fixture, shared with test_docker


@pytest.fixture(scope="module")
def image() -> str:
    return podmand.required_image()


def services(pid: int | None = None) -> list[str]:
    """Private API services' directories: all, or one harness's (other runs may share the machine)."""
    return sorted(p.name for p in Path("/tmp").glob(f"benchbed-podman-{'' if pid is None else f'{pid}-'}*"))


def live_services() -> list[str]:
    """Services of harnesses still alive (another run sharing the machine), never this test's finished run's."""
    return [name for name in services() if pid_alive(int(name.split("-")[2]))]


def shapes(samples: object, target: str) -> set[tuple[str, str, str, str, str]]:
    s = samples[samples.target == target]  # type: ignore[index]
    return set(zip(s.workload, s.metric, s.unit, s.better, s.phase, strict=True))


def test_quick_suite_in_podman_matches_local_shapes(tmp_path: Path, image: str) -> None:
    before = services()
    targets = {"local": {"kind": "local"}, "pod": {"kind": "podman", "image": image, "pull": "never"}}
    t, _ = write(tmp_path, targets, "unused: true\n")
    proc = bench(tmp_path, "run", "quick", "--targets", str(t), "--repeat", "1", "--out", str(tmp_path / "res"))
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "res").iterdir()
    run = load_run(run_dir)
    bad = run.cases[(run.cases.target == "pod") & (run.cases.status == "failed")]
    assert bad.empty, bad[["workload", "reason"]].to_string()
    assert shapes(run.samples, "pod") == shapes(run.samples, "local")
    env = run.env["pod"]
    assert env["kind"] == "podman"
    assert env["podman"]["service"] == "private"
    assert env["podman"]["runtime"]["name"] == "runc"
    assert env["podman"]["ulimits"]["nofile"]
    for _, case in run.cases[run.cases.target == "pod"].iterrows():
        for name in ("image", "create", "start", "exec_ready", "put_agent", "agent_ready", "workload", "teardown"):
            assert case.phases[name] >= 0, name
    assert podmand.labelled_containers(run_dir.name) == []
    assert set(services()) - set(before) <= set(live_services())  # the run's private API service stopped with it


def test_failures_are_clear_and_leave_nothing(tmp_path: Path, image: str) -> None:
    targets = {
        "local": {"kind": "local"},
        "noimage": {"kind": "podman", "image": "benchbed/does-not-exist:1", "pull": "never"},
        "nopodman": {"kind": "podman", "image": image, "podman": "/nonexistent/podman"},
        "badlimit": {"kind": "podman", "image": image, "pull": "never", "ulimits": {"nofile": "99999999:99999999"}},
        "odd": {"kind": "podman", "image": image, "pull": "never", "runtime": "nosuch"},
    }
    proc, run = run_suite(
        tmp_path,
        targets,
        "name: errs\nbaseline: local\ndefaults: {instances: 1}\n"
        "workloads:\n  - {name: util.noop, params: {duration_ms: 1}}\n",
    )
    reasons = dict(zip(run.cases.target, run.cases.reason, strict=True))
    assert "image 'benchbed/does-not-exist:1' is not present and pull is 'never'" in reasons["noimage"]
    assert "podman not found ('/nonexistent/podman'" in reasons["nopodman"]
    assert "may not set the container's ulimits" in reasons["badlimit"]
    assert "ulimits:" in proc.stdout + str(reasons["badlimit"])
    assert "runtime 'nosuch' is not registered with the engine (registered: " in reasons["odd"]
    for target in ("noimage", "nopodman", "badlimit", "odd"):
        assert "\n" not in reasons[target]
        assert target in proc.stdout
    assert podmand.labelled_containers(run.meta["run_id"]) == []


def wait_for_container(tmp: Path, timeout: float = 120) -> str:
    """The run id of this test's harness, once its container is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [d.name for d in (tmp / "res").glob("*") if d.is_dir()]
        if runs and podmand.labelled_containers(runs[0]):
            return runs[0]
        time.sleep(0.2)
    raise AssertionError("no benchbed podman container appeared")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_nothing_left_after_interrupt_or_kill_plus_cleanup(
    tmp_path: Path, image: str, sig: int, reap: list[subprocess.Popen[str]]
) -> None:
    targets = {"pod": {"kind": "podman", "image": image, "pull": "never"}}
    t, s = write(
        tmp_path,
        targets,
        "name: int\nbaseline: pod\nmodules: [slow.py]\ndefaults: {instances: 1}\n"
        "workloads:\n  - {name: test.slow, params: {seconds: 120}}\n",
    )
    proc = start_run(tmp_path, t, s, reap)
    run = wait_for_container(tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
        "test.slow" in p.read_text() for p in (tmp_path / "res").glob("*/samples.jsonl")
    ):
        time.sleep(0.1)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "Traceback" not in err
        assert podmand.labelled_containers(run) == []
        assert services(proc.pid) == []
    else:
        assert podmand.labelled_containers(run) != []  # a SIGKILLed harness cannot clean up after itself...
        assert services(proc.pid) != []
        cleanup = bench(tmp_path, "cleanup")
        assert cleanup.returncode == 0, cleanup.stderr
        assert "removed podman container" in cleanup.stdout
        assert "podman API service" in cleanup.stdout
        assert podmand.labelled_containers(run) == []  # ...but `benchbed cleanup` finds what it left
        assert services(proc.pid) == []


@pytest.mark.runsc
def test_runtime_axis_runs_each_runtime_for_real(tmp_path: Path, image: str) -> None:
    """podman's Docker-compatible API ignores a container's runtime: each runtime gets its own service, so
    `pod@runsc` is gVisor (its own kernel) and not runc under a sandboxed name; a service on another runtime, or
    gVisor refusing networking, is one line each."""
    if shutil.which("runsc") is None:
        need("runsc", "gVisor's runsc is not installed (scripts/setup-runtimes)")
    other = tmp_path / "svc"
    other.mkdir()
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{other}/api.sock"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (other / "api.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pod = {"kind": "podman", "image": image, "pull": "never"}
        targets = {
            "local": {"kind": "local"},
            "pod": {**pod, "runtime": ["runc", "runsc"], "runtime_flags": {"runsc": ["network=none"]}},
            "nonet": {**pod, "runtime": "runsc"},
            "shared": {**pod, "runtime": "runsc", "podman_host": f"unix://{other}/api.sock"},
        }
        proc, run = run_suite(
            tmp_path,
            targets,
            "name: rt\nbaseline: local\ndefaults: {instances: 1}\n"
            "workloads:\n  - {name: util.noop, params: {duration_ms: 1}}\n  - {name: startup.process}\n",
        )
    finally:
        service.terminate()
        service.wait(timeout=30)
    status = run.cases.groupby("target").status.agg(set).to_dict()
    assert status == {
        "local": {"ok"},
        "pod@runc": {"ok"},
        "pod@runsc": {"ok"},
        "nonet": {"failed"},
        "shared": {"failed"},
    }
    runc, runsc = run.env["pod@runc"]["podman"]["runtime"], run.env["pod@runsc"]["podman"]["runtime"]
    assert (runc["name"], runc["sandboxed"]) == ("runc", False)
    assert (runsc["name"], runsc["sandboxed"], runsc["args"]) == ("runsc", True, ["--network=none"])
    assert "runsc" in runsc["version"]
    assert run.env["pod@runc"]["kernel"] == run.env["local"]["kernel"]
    assert run.env["pod@runsc"]["kernel"] != run.env["local"]["kernel"]  # gVisor's Sentry, not the host kernel
    assert run.meta["boundaries"]["pod@runsc"] == "sandboxed runtimes"
    reasons = {t: r for t, r in zip(run.cases.target, run.cases.reason, strict=True) if isinstance(r, str)}
    assert "(gVisor) refuses to start with networking" in reasons["nonet"]
    assert "runtime_flags: {runsc: [network=none]}" in reasons["nonet"]
    assert "runs containers on runtime 'runc', not 'runsc'" in reasons["shared"]
    assert all("\n" not in r for r in reasons.values())
    assert podmand.labelled_containers(run.meta["run_id"]) == []
    assert "Traceback" not in proc.stderr


def test_rootless_podman_as_an_unprivileged_user(tmp_path: Path, image: str) -> None:
    """benchbed run by `nobody`: its private service is rootless podman (the user's own store), the run completes,
    the fingerprint says rootless with the ulimits that user may grant, and nothing is left behind."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        need("podman", "the rootless test switches to user nobody: it needs root and setpriv")
    base = Path(tempfile.mkdtemp(prefix="benchbed-rootless-"))  # tmp_path is root's own (mode 0700)
    try:
        user = podmand.Rootless(base)
        python = user.python()
        if python is None:
            need("podman", f"no python {sys.version_info[0]}.{sys.version_info[1]} that user nobody may run")
        tag = podmand.small_image()
        user.load(tag)
        (base / "t.yaml").write_text(
            json.dumps({"targets": {"pod": {"kind": "podman", "image": tag, "pull": "never"}}})
        )
        (base / "s.yaml").write_text(
            "name: rootless\nbaseline: pod\ndefaults: {instances: 2}\n"
            "workloads:\n  - {name: util.noop, params: {duration_ms: 1}}\n"
        )
        site = ":".join(p for p in sys.path if p.endswith("-packages"))
        args = ("-m", "benchbed.cli", "run", "s.yaml", "-t", "t.yaml", "--out", str(base / "res"), "--no-report")
        proc = subprocess.run(
            [
                "sh",
                "-c",
                f'cd "{base}" && exec "$@"',
                "sh",
                *user.argv(python, *args, env={"PYTHONPATH": f"{REPO}:{site}"}),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (run_dir,) = (base / "res").iterdir()
        run = load_run(run_dir)
        assert set(run.cases.status) == {"ok"}
        own = run.env["pod"]["podman"]
        assert (own["rootless"], own["service"], own["runtime"]["name"]) == (True, "private", "runc")
        assert own["ulimits"]["nofile"]
        assert user.containers() == []
        assert not [p for p in Path(tempfile.gettempdir()).glob("benchbed-podman-*") if p.owner() == "nobody"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
