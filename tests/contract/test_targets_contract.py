"""One body, every target kind: the same workload bytes must give samples of the same shape everywhere.

Each registered kind needs a factory below that brings up a real instance of it (or skips / fails through
`need()` when the component is absent). The reference shape is what the `local` target — bare metal — gives.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.results import SAMPLE_COLUMNS, load_run
from benchbed.schema import TargetsFile
from benchbed.targets.registry import kinds, make_target
from tests.conftest import need
from tests.integration import sshd as S

WORKLOADS = [
    {"name": "util.noop", "params": {"duration_ms": 1}},
    {"name": "cpu.gemm", "params": {"n": 32}},
]
SEVERAL_INSTANCES = {"test_same_workload_gives_samples_of_the_same_shape"}  # one instance per workload
SHAPE = ["workload", "metric", "unit", "better", "phase"]
COMMON_PHASES = {"put_agent", "agent_ready", "total"}


@pytest.fixture(scope="module")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S.Sshd]:
    with S.required(tmp_path_factory.mktemp("sshd")) as srv:
        yield srv


def _local(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"kind": "local", "python": sys.executable}


def _ssh(request: pytest.FixtureRequest) -> dict[str, Any]:
    server: S.Sshd = request.getfixturevalue("sshd_server")
    return server.spec(python=sys.executable)  # the same interpreter as `local`: only the boundary differs


def _docker(request: pytest.FixtureRequest) -> dict[str, Any]:
    from tests.integration import dockerd

    try:
        import docker
        import docker.errors
    except ImportError:
        need("docker", "the docker package is not installed (pip install 'benchbed[docker]')")
    tag = dockerd.test_image()
    try:
        client = docker.from_env()
        try:  # closed here: -W error turns a leaked socket into a failure
            client.ping()
            client.images.get(tag)
        finally:
            client.close()
    except docker.errors.ImageNotFound:
        need("docker", f"test image {tag} not built (scripts/build-test-image)")
    except docker.errors.DockerException as err:
        need("docker", f"Docker engine not reachable: {err}")
    return {"kind": "docker", "image": tag}


def _podman(request: pytest.FixtureRequest) -> dict[str, Any]:
    from tests.integration import podmand

    return {"kind": "podman", "image": podmand.required_image(), "pull": "never"}


@pytest.fixture(scope="module")
def vm_overlays() -> Iterator[Path]:
    from tests.integration import libvirtd

    with libvirtd.required_overlays() as path:
        yield path


def _libvirt(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Software emulation: boots are slow. A test of several instances restores them from one saved boot; one of
    a single instance boots it (start: restore would boot, save and restore: more, not less)."""
    from tests.integration import libvirtd

    start = "restore" if request.node.originalname in SEVERAL_INSTANCES else "boot"
    return libvirtd.guest_spec(request.getfixturevalue("vm_overlays"), start=start)


def _ns(request: pytest.FixtureRequest) -> dict[str, Any]:
    from benchbed.demo import probe_ns
    from benchbed.targets.ns import NsTarget

    why, _ = probe_ns(NsTarget(kind="ns"))
    if why:
        need("ns", why)
    return {"kind": "ns", "python": sys.executable}  # the same interpreter as `local`, in fresh namespaces


def _slurm(request: pytest.FixtureRequest) -> dict[str, Any]:
    from tests.integration import slurmctl

    slurmctl.required()
    return slurmctl.spec()  # the same interpreter as `local`, as a job step on a node of the loopback cluster


FACTORIES: dict[str, Callable[[pytest.FixtureRequest], dict[str, Any]]] = {
    "local": _local,
    "ns": _ns,
    "ssh": _ssh,
    "docker": _docker,
    "podman": _podman,
    "libvirt": _libvirt,
    "slurm": _slurm,
}


@pytest.fixture(params=[pytest.param(k, marks=getattr(pytest.mark, k), id=k) for k in kinds()])
def spec(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Every registered kind, marked with its own name (`-m ssh`, `-m 'not docker'`)."""
    kind: str = request.param
    factory = FACTORIES.get(kind)
    if factory is None:
        pytest.fail(f"target kind {kind!r} has no contract factory: add one to {Path(__file__).name}", pytrace=False)
    return factory(request)


def shape(run_dir: Path, target: str) -> set[tuple[Any, ...]]:
    samples = load_run(run_dir).samples
    mine = samples[samples.target == target]
    return set(map(tuple, mine[SHAPE].drop_duplicates().values.tolist()))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[Any, ...]]:
    runner = S.run_suite(tmp_path_factory.mktemp("reference"), {"ref": {"kind": "local"}}, WORKLOADS)
    return shape(runner.run_dir, "ref")


def test_same_workload_gives_samples_of_the_same_shape(
    spec: dict[str, Any], reference: set[tuple[Any, ...]], tmp_path: Path
) -> None:
    runner = S.run_suite(tmp_path, {"t": spec}, WORKLOADS)
    run = load_run(runner.run_dir)
    assert set(run.cases.status) == {"ok"}, run.cases[["workload", "status", "reason"]].to_string()
    assert list(run.samples.columns) == SAMPLE_COLUMNS
    assert shape(runner.run_dir, "t") == reference
    assert all(math.isfinite(v) for v in run.samples.value)
    for phases in run.cases.phases:
        assert phases.keys() >= COMMON_PHASES
        assert all(v >= 0 for v in phases.values())
    assert run.env["t"]["kind"] == spec["kind"]


def test_session_runs_commands_in_its_workdir(spec: dict[str, Any], tmp_path: Path) -> None:
    target = make_target("t", TargetsFile.model_validate({"targets": {"t": spec}}).expanded()["t"], "contract")
    src = tmp_path / "payload.txt"
    src.write_text("same bytes\n")
    close = getattr(target, "close", None)  # optional: targets holding an engine client release it
    try:
        _check_session(target, src)
    finally:
        if close is not None:
            close()


def _check_session(target: Any, src: Path) -> None:
    with target.provision() as session:
        session.put(src, f"{session.workdir}/payload.txt")
        res = session.run(["sh", "-c", f"cat {session.workdir}/payload.txt; echo to-stderr >&2; exit 3"], timeout=60)
        assert res.rc == 3
        assert res.stdout == "same bytes\n"
        assert "to-stderr" in res.stderr
        cwd = session.run(["pwd"], timeout=60).stdout.strip()
        assert cwd == session.workdir, "commands must start in the session's workdir, as with `local`"
        lines: list[str] = []
        res = session.stream(["sh", "-c", "echo a; echo b"], lines.append, timeout=60)
        assert (res.rc, lines) == (0, ["a", "b"])
    assert isinstance(target.startup_phases(), dict)
