"""A stack as a libvirt guest: the image's rootfs plus the guest layer, built once per image id and recipe.

Inside a VM nothing of the host's userland can be borrowed, so the guest disk is the image's own bytes (the rootfs
`rootfs.ensure_rootfs` unpacked) with what a guest needs added by `data/vm-guest-layer.sh`: kernel, initramfs,
systemd, sshd, dhcp on eth0, keys. apt only *adds* packages there; whether it left every file the agent maps
untouched is what the stack digest of a run proves (the integration test checks it against a container). The
one expected difference is the GPU driver, which in a VM is necessarily the guest's own (kept out of the digest).

The cache is `/var/lib/benchbed/images/stack-<image id 12>-<recipe 12>/` (`BENCHBED_VM_CACHE` moves it; libvirt's
qemu user must be able to read it), filled under `.build-<pid>-…` and renamed into place with a `.complete`
marker, so an interrupted build leaves nothing that looks usable.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from benchbed.errors import ProvisionError
from benchbed.stacks.rootfs import ensure_rootfs, publish

CACHE_ROOT = Path(os.environ.get("BENCHBED_VM_CACHE", "/var/lib/benchbed/images"))
HEADROOM_MB = 1024  # free space in the guest for scratch files (io workloads write there)
CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
BUILD_PREFIX = ".build-"
TOOLS = ("mkfs.ext4", "ssh-keygen", "unshare", "chroot", "cp")


@dataclass(frozen=True)
class VmImage:
    image: str
    image_id: str
    dir: Path
    build_s: float  # 0.0 when cached

    @property
    def disk(self) -> Path:
        return self.dir / "image.raw"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key.pub"

    def lines(self) -> list[str]:
        """What scripts/build-vm-image prints: `name=path` lines a targets file takes."""
        return [
            f"image={self.disk}",
            f"kernel={self.kernel}",
            f"initrd={self.initrd}",
            f"key={self.key}",
            f"host_key={self.host_key}",
        ]


def layer_script() -> bytes:
    return resources.files("benchbed").joinpath("data/vm-guest-layer.sh").read_bytes()


def recipe() -> str:
    """What the guest adds to the image, hashed: a changed layer gets a new directory, never a stale one."""
    return hashlib.sha256(layer_script() + f"\n{HEADROOM_MB}\n{CMDLINE}".encode()).hexdigest()[:12]


def image_dir(image_id: str, root: Path = CACHE_ROOT) -> Path:
    return root / f"stack-{image_id.replace('sha256:', '')[:12]}-{recipe()}"


def missing_prerequisite() -> str | None:
    """One line naming what the build cannot do without, or None."""
    if os.geteuid() != 0:
        return "building a stack's VM image needs root (chroot, mounts, files owned by the image's users)"
    for tool in TOOLS:
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists() and not Path("/sbin", tool).exists():
            return f"building a stack's VM image needs {tool} (apt-get install e2fsprogs openssh-client util-linux)"
    return None


def ensure_vm_image(image: str, root: Path = CACHE_ROOT) -> VmImage:
    """The stack's guest disk, kernel, initrd and keys, built first if this host has none for its image id."""
    t0 = time.perf_counter()
    rootfs = ensure_rootfs(image)  # the image id, and the bytes (cached by id, shared with the chroot boundary)
    final = image_dir(rootfs.image_id, root)
    if (final / ".complete").is_file():
        return VmImage(image, rootfs.image_id, final, 0.0)
    why = missing_prerequisite()
    if why:
        raise ProvisionError(f"stack {image!r}: {why}")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # libvirt's qemu user reads the disk, kernel and initrd from here
    work = Path(tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{os.getpid()}-", dir=root))
    try:
        _run(["cp", "-a", "--reflink=auto", str(rootfs.path), str(work / "rootfs")], image, "copying the rootfs")
        script = work / "vm-guest-layer.sh"
        script.write_bytes(layer_script())
        _run(
            ["bash", str(script), "--install", str(work / "rootfs"), str(work), str(HEADROOM_MB)],
            image,
            "the guest layer",
        )
        script.unlink()
        (work / ".complete").touch()
        work.chmod(0o755)
        publish(work, final, final / ".complete")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return VmImage(image, rootfs.image_id, final, time.perf_counter() - t0)


def _run(argv: list[str], image: str, what: str) -> None:
    with tempfile.TemporaryFile() as log:
        rc = subprocess.run(argv, stdout=log, stderr=log, check=False).returncode
        if rc != 0:
            log.seek(0)
            last = log.read().decode(errors="replace").strip().splitlines()[-3:]
            raise ProvisionError(f"stack {image!r}: VM image build failed in {what} (exit {rc}): {' | '.join(last)}")


def sweep(root: Path = CACHE_ROOT) -> list[str]:
    """Remove half-built directories whose harness is gone (a SIGKILL mid-build)."""
    from benchbed.stacks import rootfs

    return rootfs.sweep(root, BUILD_PREFIX)
