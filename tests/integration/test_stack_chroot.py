"""One stack through two boundaries: the image's rootfs chrooted on the host vs `docker run` of the same image.

Real dockerd, real mounts as root. The agent's stack digest must be identical in both, and differ from the host's
own userland; the host's mount table must not change and the instance's workdir must go.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from benchbed.agent.build import build_agent
from benchbed.errors import TargetError
from benchbed.stacks import chroot, rootfs
from tests.conftest import need
from tests.integration import dockerd

pytestmark = pytest.mark.docker

SPEC = {"workload": "cpu.gemm", "params": {"n": 64}, "repetitions": 2, "warmup": 0}


@pytest.fixture(scope="module")
def image() -> str:
    if os.geteuid() != 0:
        need("docker", "a chroot stack needs root")
    return dockerd.required_image()


@pytest.fixture(scope="module")
def stack(image: str, tmp_path_factory: pytest.TempPathFactory) -> rootfs.Rootfs:
    cache = tmp_path_factory.mktemp("stacks")
    first = rootfs.ensure_rootfs(image, root=cache)
    again = rootfs.ensure_rootfs(image, root=cache)
    assert again.path == first.path
    assert again.unpack_s == 0.0  # the second call is a cache hit by image id
    assert not list(cache.glob(f"{rootfs.PARTIAL_PREFIX}*"))
    return first


def _stack_line(stdout: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert lines[-1]["t"] == "done", lines[-1]
    return dict(next(line for line in lines if line["t"] == "stack")["data"])


def _mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def test_chroot_and_container_of_one_image_have_one_stack_digest(
    stack: rootfs.Rootfs, image: str, tmp_path: Path
) -> None:
    agent = build_agent(tmp_path)
    work = tempfile.mkdtemp(prefix="benchbed-stacktest-")
    mounts_before = _mounts()
    try:
        shutil.copyfile(agent.path, f"{work}/agent.pyz")
        argv, extra = chroot.wrap(
            ["python3", f"{work}/agent.pyz", "run", json.dumps(SPEC)], rootfs=stack.path, workdir=work
        )
        bare = subprocess.run(argv, env={**os.environ, **extra}, capture_output=True, text=True, timeout=120)
        assert bare.returncode == 0, bare.stderr[-2000:]
        in_chroot = _stack_line(bare.stdout)
        assert _mounts() == mounts_before  # every mount lived in the instance's private namespace
    finally:
        shutil.rmtree(work)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(agent.path, f"{tmp}/agent.pyz")
        boxed = subprocess.run(
            ["docker", "run", "--rm", "-v", f"{tmp}:/w:ro", image, "python3", "/w/agent.pyz", "run", json.dumps(SPEC)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert boxed.returncode == 0, boxed.stderr[-2000:]
    in_container = _stack_line(boxed.stdout)
    assert in_chroot["digest"] == in_container["digest"]
    assert in_chroot["files"] == in_container["files"]
    assert any("numpy" in f for f in in_chroot["files"])  # the workload's libraries are covered, not just python
    on_host = subprocess.run(
        [sys.executable, str(agent.path), "run", json.dumps(SPEC)], capture_output=True, text=True, timeout=120
    )
    assert _stack_line(on_host.stdout)["digest"] != in_chroot["digest"]  # the host's own userland is another stack


def test_instances_start_from_the_image_as_built(stack: rootfs.Rootfs) -> None:
    """A write inside one instance (overlay upper in its workdir) never reaches the cached rootfs or the next one."""
    seen = []
    for _ in range(2):
        work = tempfile.mkdtemp(prefix="benchbed-stacktest-")
        try:
            code = "import os; print(os.path.exists('/etc/benchbed-mark')); open('/etc/benchbed-mark', 'w').write('x')"
            argv, extra = chroot.wrap(["python3", "-c", code], rootfs=stack.path, workdir=work)
            out = subprocess.run(argv, env={**os.environ, **extra}, capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            seen.append(out.stdout.strip())
        finally:
            shutil.rmtree(work)
    assert seen == ["False", "False"]
    assert not (stack.path / "etc" / "benchbed-mark").exists()


def test_missing_image_and_no_root_are_one_line(image: str, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="not found in the Docker engine"):
        rootfs.ensure_rootfs("benchbed/no-such-image:nope", root=tmp_path)
    script = "from benchbed.stacks.chroot import require_root; require_root('target local')"
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=False,
    )
    assert "needs root" in out.stderr


STACK_SUITE = """name: stack-parity
baseline: bare
defaults: {instances: 2, repetitions: 3, warmup: 1}
workloads:
  - {name: cpu.gemm, params: {n: 64}}
  - {name: util.noop, params: {duration_ms: 2}}
"""


def test_one_stack_through_local_and_docker_gives_one_digest_in_every_case(image: str, tmp_path: Path) -> None:
    """`stack: IMAGE` on a local target (chroot) and a docker target: every case of both names one stack digest,
    env/<target>.json holds its file list, and the plain host process (no stack) is a different stack."""
    from tests.integration.test_docker import run_suite

    targets = {
        "bare": {"kind": "local", "stack": image},
        "box": {"kind": "docker", "stack": image},
        "host": {"kind": "local"},
    }
    _, run = run_suite(tmp_path, targets, STACK_SUITE)
    cases = run.cases
    assert set(cases.status) == {"ok"}, cases[["target", "status", "reason"]].to_string()
    # a digest covers what the workload loaded (numpy for gemm, not for noop), so it is compared per workload
    digests = cases.groupby(["workload", "target"]).stack_digest.unique()
    for workload in ("cpu.gemm", "util.noop"):
        assert len(digests[workload, "bare"]) == 1
        assert list(digests[workload, "bare"]) == list(digests[workload, "box"])
        assert list(digests[workload, "host"]) != list(digests[workload, "bare"])
        (digest,) = digests[workload, "bare"]
        assert run.env["bare"]["stacks"][digest]["files"] == run.env["box"]["stacks"][digest]["files"]
    assert digests["cpu.gemm", "bare"][0] != digests["util.noop", "bare"][0]
    assert run.env["bare"]["stack_image"]["boundary"] == "chroot"
    _flagged_in_compare_and_report(tmp_path, run.dir)


def _flagged_in_compare_and_report(tmp: Path, run_dir: Path) -> None:
    """Same stack: a plain ratio. Another stack (the host's own userland): marked in compare and in the report,
    with the files that differ; `--under-test stack` says the difference is intended."""
    from tests.integration.test_docker import bench

    same = bench(tmp, "compare", str(run_dir), "--base-target", "bare", "--target", "box")
    assert same.returncode in (0, 1), same.stderr
    assert "stack differs" not in same.stdout
    other = bench(tmp, "compare", str(run_dir), "--base-target", "bare", "--target", "host", "--markdown", "c.md")
    assert other.returncode in (0, 1), other.stderr
    assert "stack differs" in other.stdout
    assert "not a boundary cost alone: cpu.gemm" in other.stdout
    assert "stack differs between bare and host" in (tmp / "c.md").read_text()
    accepted = bench(tmp, "compare", str(run_dir), "--base-target", "bare", "--target", "host", "--under-test", "stack")
    assert "stack differs" not in accepted.stdout
    md = bench(tmp, "report", str(run_dir), "--format", "md")
    assert md.returncode == 0, md.stderr
    assert "- Stack: cpu.gemm" in md.stdout
    headline = md.stdout.split("## Headline", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in headline.splitlines() if line.startswith("| "))
    names = [cell.strip() for cell in header.split("|")]
    col = {t: next(i for i, c in enumerate(names) if c.split(" ")[0].strip("`*") == t) for t in ("box", "host")}
    rows = [line for line in headline.splitlines() if line.startswith("| cpu.gemm")]
    assert rows
    for row in rows:  # columns in the report's boundary order (bare metal first), found by target name
        cells = row.split("|")
        assert "stack differs" not in cells[col["box"]]
        assert "stack differs" in cells[col["host"]]
    html = bench(tmp, "report", str(run_dir), "-o", str(tmp / "r.html"))
    assert html.returncode == 0, html.stderr
    assert "stack differs" in (tmp / "r.html").read_text()


@pytest.mark.ssh
def test_one_stack_over_ssh_is_sent_once_and_gives_the_same_digest(
    image: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`stack:` on an ssh target (real sshd on 127.0.0.1, root login): the image's rootfs is streamed over the
    connection once (a `stack_unpack` phase in the first instance only), then every instance runs chrooted into it,
    with the same digest per workload as the controller's own chroot; nothing partial is left in the host's cache."""
    from tests.integration import sshd as S
    from tests.integration.test_docker import run_suite

    remote_cache = tmp_path_factory.mktemp("remote-stacks")
    with S.required(tmp_path_factory.mktemp("sshd")) as server:
        targets = {
            "bare": {"kind": "local", "stack": image},
            "remote": server.spec(stack=image, stack_cache=str(remote_cache)),
        }
        _, run = run_suite(tmp_path, targets, STACK_SUITE)
    cases = run.cases
    assert set(cases.status) == {"ok"}, cases[["target", "status", "reason"]].to_string()
    digests = cases.groupby(["workload", "target"]).stack_digest.unique()
    for workload in ("cpu.gemm", "util.noop"):
        assert list(digests[workload, "remote"]) == list(digests[workload, "bare"])
    remote = cases[cases.target == "remote"].sort_values("case")
    unpacked = [bool(p.get("stack_unpack")) for p in remote.phases]
    assert unpacked == [True] + [False] * (len(unpacked) - 1)  # sent once, found in the host's cache after
    assert [p.name for p in remote_cache.iterdir()] == [rootfs.cache_dir(stack_id(image)).name]
    assert run.env["remote"]["stack_image"]["boundary"] == "chroot"


def stack_id(image: str) -> str:
    return rootfs.inspect(image).id


def test_gpu_driver_libraries_come_from_the_host_as_in_a_container(stack: rootfs.Rootfs) -> None:
    """The NVIDIA-Container-Toolkit-style injection, without a GPU: a stand-in driver library (a real ELF, named
    like one, behind a versioned symlink as libcuda.so.1 is) exists only on the host; inside the chroot it is bound
    at its host path and found by soname through the image's own ldconfig — and gone from the cache afterwards."""
    libdir = Path("/usr/lib/x86_64-linux-gnu")
    donor = libdir / "libz.so.1"
    if not donor.exists():
        pytest.skip("needs the host's libz as a stand-in ELF")
    real = libdir / "libnvidia-benchbedtest.so.1.0"
    link = libdir / "libnvidia-benchbedtest.so.1"
    code = (
        "import ctypes; ctypes.CDLL('libnvidia-benchbedtest.so.1');"
        "print(sorted({l.split()[-1] for l in open('/proc/self/maps') if 'benchbedtest' in l}))"
    )
    shutil.copyfile(donor, real)
    link.symlink_to(real.name)
    try:
        outs = {}
        for libs in ([], [str(link)]):
            work = tempfile.mkdtemp(prefix="benchbed-stacktest-")
            try:
                argv, extra = chroot.wrap(["python3", "-c", code], rootfs=stack.path, workdir=work, driver_libs=libs)
                outs[bool(libs)] = subprocess.run(
                    argv, env={**os.environ, **extra}, capture_output=True, text=True, timeout=60
                )
            finally:
                shutil.rmtree(work)
    finally:
        link.unlink()
        real.unlink()
    assert outs[False].returncode != 0  # the image alone has no driver
    assert "benchbedtest" in outs[False].stderr
    assert outs[True].returncode == 0, outs[True].stderr[-2000:]
    assert outs[True].stdout.strip() == repr([str(real)])  # mapped from the host's file, at the host's path
    assert chroot.host_driver_libraries("\tlibnvidia-benchbedtest.so.1 (libc6,x86-64) => " + str(link) + "\n") == [
        str(link)
    ]
    assert not list(stack.path.glob("usr/lib/x86_64-linux-gnu/libnvidia-benchbedtest*"))  # the cache is untouched
