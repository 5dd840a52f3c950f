"""Access to a real libvirtd (qemu:///system) and the guest scripts/build-vm-image builds, for tests and benchmarks.

`.ci/run` installs and starts libvirtd and builds the guest; locally, tests skip when either is missing — and
fail when BENCHBED_REQUIRE includes `libvirt`. Guests run under software emulation (`virt_type: qemu`): nested
KVM hangs on our CI machines. Overlays go to a directory the qemu user can reach (not a 700 pytest tmp dir).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
URI = "qemu:///system"


def image_dir() -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-vm-image"), "--print-dir"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def missing_reason() -> str | None:
    why = libvirt_missing()
    if why:
        return why
    if not (image_dir() / ".complete").is_file():
        return f"test guest not built (scripts/build-vm-image → {image_dir()})"
    return None


def libvirt_missing() -> str | None:
    """Why libvirtd cannot run guests here (None: it can), whatever guest image a test brings."""
    try:
        import libvirt
    except ImportError:
        return "libvirt-python is not installed (pip install 'benchbed[libvirt]')"
    try:
        libvirt.open(URI).close()
    except libvirt.libvirtError as err:
        return f"libvirtd not reachable at {URI}: {err.get_error_message()}"
    return None


def overlay_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="benchbed-test-overlays-", dir="/var/tmp"))
    path.chmod(0o755)
    return path


def guest_spec(overlays: Path, **extra: Any) -> dict[str, Any]:
    d = image_dir()
    return {
        "kind": "libvirt",
        "uri": URI,
        "image": str(d / "image.raw"),
        "kernel": str(d / "vmlinuz"),
        "initrd": str(d / "initrd.img"),
        "cmdline": "root=/dev/vda rw console=ttyS0 net.ifnames=0",
        "virt_type": "qemu",
        "vcpus": 2,
        "memory": 1024,
        "overlay_dir": str(overlays),
        "boot_timeout_s": 600,
        "ssh": {"key": str(d / "id_ed25519"), "host_key": str(d / "ssh_host_ed25519_key.pub")},
        **extra,
    }


def benchbed_domains(under: Path | None = None) -> list[str]:
    """benchbed's domains on the system libvirt; with `under`, only those whose overlay is in that directory (other
    test sessions sharing the machine run their own)."""
    import libvirt

    from benchbed.targets.vmspec import METADATA_NS

    def ours(dom: Any) -> bool:
        if under is None:
            return True
        try:
            meta = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
        except libvirt.libvirtError:
            return False
        return f"{under}/" in meta

    conn = libvirt.open(URI)
    try:
        return sorted(d.name() for d in conn.listAllDomains(0) if d.name().startswith("benchbed-") and ours(d))
    finally:
        conn.close()


def destroy(name: str) -> None:
    import libvirt

    conn = libvirt.open(URI)
    try:
        conn.lookupByName(name).destroy()
    finally:
        conn.close()


@contextlib.contextmanager
def libvirt_overlays() -> Iterator[Path]:
    """As required_overlays, for a test that builds its own guest (a stack's): only libvirtd must be usable."""
    import shutil

    from tests.conftest import need

    why = libvirt_missing()
    if why:
        need("libvirt", why)
    path = overlay_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def required_overlays() -> Iterator[Path]:
    """The overlay directory for a test module's VMs, removed afterwards — or a skip (a failure under
    BENCHBED_REQUIRE=libvirt) saying why libvirt is unusable here."""
    import shutil

    from tests.conftest import need

    why = missing_reason()
    if why:
        need("libvirt", why)
    path = overlay_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
