"""A stack's VM image: the spec rules of `stack:` on libvirt, the cache's naming, the expected-difference note."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from benchbed.stacks import parity, vmimage
from benchbed.targets.libvirt import LibvirtTarget


def test_a_libvirt_target_takes_a_disk_or_a_stack_never_both() -> None:
    assert LibvirtTarget.model_validate({"kind": "libvirt", "stack": "img:1"}).image is None
    with pytest.raises(ValidationError, match="builds the guest's image, kernel and initrd: drop \\['image'"):
        LibvirtTarget.model_validate({"kind": "libvirt", "stack": "img:1", "image": "/x.raw"})
    with pytest.raises(ValidationError, match="drop \\['kernel'\\]"):
        LibvirtTarget.model_validate({"kind": "libvirt", "stack": "img:1", "kernel": "/vmlinuz"})
    with pytest.raises(ValidationError, match="give `image`"):
        LibvirtTarget.model_validate({"kind": "libvirt"})


def test_the_cache_is_named_by_image_id_and_recipe(tmp_path: Path) -> None:
    d = vmimage.image_dir("sha256:" + "ab" * 32, tmp_path)
    assert d.parent == tmp_path
    assert d.name == f"stack-{'ab' * 6}-{vmimage.recipe()}"
    assert vmimage.recipe() == vmimage.recipe()  # a function of the layer script's bytes, nothing volatile
    assert b"linux-image-amd64" in vmimage.layer_script()
    vm = vmimage.VmImage("img:1", "sha256:x", d, 0.0)
    assert vm.lines() == [
        f"image={d}/image.raw",
        f"kernel={d}/vmlinuz",
        f"initrd={d}/initrd.img",
        f"key={d}/id_ed25519",
        f"host_key={d}/ssh_host_ed25519_key.pub",
    ]


def test_a_build_without_root_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmimage.os, "geteuid", lambda: 1000)
    assert "needs root" in str(vmimage.missing_prerequisite())


def test_a_half_built_image_of_a_dead_harness_is_swept(tmp_path: Path) -> None:
    dead = tmp_path / f"{vmimage.BUILD_PREFIX}999999999-x"
    alive = tmp_path / f"{vmimage.BUILD_PREFIX}{os.getpid()}-y"
    dead.mkdir()
    alive.mkdir()
    assert vmimage.sweep(tmp_path) == [str(dead)]
    assert alive.is_dir()


def test_only_a_vm_names_its_own_gpu_driver_as_the_expected_difference() -> None:
    env = {
        "bare": {"stack_image": {"boundary": "chroot"}},
        "vm": {"stack_image": {"boundary": "vm"}},
        "plain": {},
    }
    (note,) = parity.expected_differences(env, ["bare", "vm", "plain", "absent"])
    assert note.startswith("GPU driver: the guest's own in vm ")
    assert parity.expected_differences(env, ["bare", "plain"]) == []


def test_rootfs_sweep_removes_a_dead_harness_partial_unpack_only(tmp_path: Path) -> None:
    from benchbed.stacks import rootfs

    dead = tmp_path / f"{rootfs.PARTIAL_PREFIX}999999999-abc"
    live = tmp_path / f"{rootfs.PARTIAL_PREFIX}{os.getpid()}-abc"
    done = tmp_path / ("f" * 64)
    for d in (dead, live, done):
        (d / "rootfs").mkdir(parents=True)
    assert rootfs.sweep(tmp_path) == [str(dead)]
    assert live.is_dir()
    assert done.is_dir()
