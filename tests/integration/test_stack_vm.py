"""One stack through three boundaries: chrooted on the host, in a container, and as a libvirt guest.

Real dockerd, real root chroot, real libvirtd under emulation (TCG). The guest disk is the stack image's rootfs plus
the guest layer (kernel, sshd, dhcp), built by the run itself on first use and cached by image id; the agent's
stack digest per workload must be the one the chroot and the container report, which also proves the guest layer's
apt-get changed none of the files the agent maps. One instance per target (a TCG boot is ~30 s or more).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchbed.stacks import vmimage
from tests.conftest import need
from tests.integration import dockerd, libvirtd
from tests.integration.test_settle import check_settle_records

pytestmark = [pytest.mark.libvirt, pytest.mark.docker]

SUITE = """name: stack-vm
baseline: bare
defaults: {instances: 1, repetitions: 2, warmup: 0, settle_s: 2}
workloads:
  - {name: cpu.gemm, params: {n: 64}}
  - {name: util.noop, params: {duration_ms: 2}}
"""


@pytest.fixture(scope="module")
def overlays() -> Iterator[Path]:
    with libvirtd.libvirt_overlays() as path:
        yield path


@pytest.fixture(scope="module")
def image() -> str:
    why = vmimage.missing_prerequisite()
    if why:
        need("libvirt", why)
    return dockerd.required_image()


def test_one_stack_through_chroot_container_and_vm_gives_one_digest(image: str, overlays: Path, tmp_path: Path) -> None:
    from tests.integration.test_docker import bench, run_suite

    guest = {
        k: v
        for k, v in libvirtd.guest_spec(overlays).items()
        if k not in ("image", "kernel", "initrd", "cmdline", "ssh")
    }
    targets = {
        "bare": {"kind": "local", "stack": image},
        "box": {"kind": "docker", "stack": image},
        "vm": {**guest, "stack": image},
    }
    _, run = run_suite(tmp_path, targets, SUITE)
    cases = run.cases
    assert set(cases.status) == {"ok"}, cases[["target", "workload", "status", "reason"]].to_string()
    check_settle_records(cases, 2.0, busy=False)  # the gate ran in the guest too (on the guest's /proc/stat)
    digests = cases.groupby(["workload", "target"]).stack_digest.unique()
    for workload in ("cpu.gemm", "util.noop"):
        (digest,) = digests[workload, "bare"]
        assert list(digests[workload, "box"]) == [digest]
        assert list(digests[workload, "vm"]) == [digest], run.env["vm"]["stacks"]
        assert run.env["vm"]["stacks"][digest]["files"] == run.env["bare"]["stacks"][digest]["files"]
    stack = run.env["vm"]["stack_image"]
    assert stack["boundary"] == "vm"
    assert stack["id"] == run.env["bare"]["stack_image"]["id"]
    assert (Path(stack["vm_image"]) / ".complete").is_file()
    assert libvirtd.benchbed_domains() == []
    assert list(overlays.iterdir()) == []
    same = bench(tmp_path, "compare", str(run.dir), "--base-target", "bare", "--target", "vm")
    assert same.returncode in (0, 1), same.stderr
    assert "stack differs" not in same.stdout
    assert "expected difference: GPU driver: the guest's own in" in same.stdout  # the one, named
    md = bench(tmp_path, "report", str(run.dir), "--format", "md")
    assert md.returncode == 0, md.stderr
    assert "- Expected difference: GPU driver: the guest's own in vm" in md.stdout
    assert "- Caveat, vm: software emulation" in md.stdout  # CI's guest is TCG, and the Markdown says so


def test_stack_with_a_disk_of_its_own_is_one_config_line(tmp_path: Path) -> None:
    from tests.integration.test_docker import bench

    (tmp_path / "t.yaml").write_text('targets:\n  vm: {kind: libvirt, stack: "x:y", image: /tmp/disk.raw}\n')
    out = bench(tmp_path, "targets", "check", str(tmp_path / "t.yaml"))
    assert out.returncode == 2
    assert "builds the guest's image, kernel and initrd" in out.stderr
    assert "Traceback" not in out.stderr
