"""What the `libvirt` target says about a domain: the fingerprint's `libvirt` section, what a failed start means,
and a stack's VM image filled into the spec."""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any

import libvirt

from benchbed.errors import ProvisionError
from benchbed.targets import vmplace, vmspec
from benchbed.targets.vmspec import Pci

if TYPE_CHECKING:
    from benchbed.targets.libvirt import LibvirtTarget as LibvirtSpec


def _version(n: int) -> str:
    return f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}"


def with_stack(spec: LibvirtSpec) -> tuple[LibvirtSpec, dict[str, Any], float]:
    """The spec with the stack's VM image (disk, kernel, initrd, keys) filled in, what describe() records of the
    stack, and the seconds its build took (0 when cached). The guest's GPU driver is its own: a VM cannot borrow
    the host's, so the driver is the one difference expected against the same stack on bare metal."""
    from benchbed.stacks.vmimage import CMDLINE, ensure_vm_image

    assert spec.stack
    vm = ensure_vm_image(spec.stack)
    ssh = spec.ssh.model_copy(
        update={"key": spec.ssh.key or str(vm.key), "host_key": spec.ssh.host_key or str(vm.host_key)}
    )
    filled = spec.model_copy(
        update={
            "image": str(vm.disk),
            "kernel": str(vm.kernel),
            "initrd": str(vm.initrd),
            "cmdline": spec.cmdline or CMDLINE,
            "ssh": ssh,
        }
    )
    record = {"name": vm.image, "id": vm.image_id, "boundary": "vm", "vm_image": str(vm.dir), "driver": "guest's own"}
    return filled, {"stack_image": record}, vm.build_s


def create_error(n: str, msg: str) -> ProvisionError:
    """What a failed createXML means: no KVM, passthrough refused, or anything else."""
    if "/dev/kvm" in msg or "KVM is not available" in msg or ("kvm" in msg.lower() and "support" in msg.lower()):
        return ProvisionError(
            f"{n}: KVM is not available to libvirt: {msg}",
            hint="check /dev/kvm (chgrp kvm /dev/kvm; chmod 660 /dev/kvm) or set virt_type: qemu (emulation)",
        )
    if "vfio" in msg.lower() or "iommu" in msg.lower():
        return ProvisionError(f"{n}: device passthrough failed: {msg}", hint="is vfio-pci loaded and the IOMMU on?")
    return ProvisionError(f"{n}: domain did not start: {msg}")


def describe_domain(
    conn: libvirt.virConnect,
    spec: LibvirtSpec,
    dom: libvirt.virDomain,
    xml: str,
    pci: list[Pci],
    drivers: dict[str, str | None],
    placement: vmplace.VmPlacement,
) -> dict[str, Any]:
    """Controller-side facts for the fingerprint: the domain XML as started, virt type, versions, devices."""
    try:
        live_xml = dom.XMLDesc(0)
    except libvirt.libvirtError:
        live_xml = xml
    info: dict[str, Any] = {
        "uri": spec.uri,
        "virt_type": spec.virt_type,
        "representative": spec.virt_type == "kvm",
        "cpu_mode": vmspec.effective_cpu_mode(spec),
        "libvirt_version": _version(conn.getLibVersion()),
        "domain_xml": live_xml,
        "placement": placement.to_json(),
        "passthrough": {
            "pci": [
                {
                    "address": str(p),
                    "host_driver": drivers.get(str(p)),
                    "host_driver_version": vmplace.driver_version(spec.uri, drivers.get(str(p))),
                }
                for p in pci
            ],
            "mdevs": list(spec.mdevs),
        },
    }
    with suppress(libvirt.libvirtError):
        info["hypervisor"] = conn.getType()
        info["qemu_version"] = _version(conn.getVersion())
    if spec.virt_type == "qemu":
        info["warning"] = "software emulation (TCG): timings are not representative of a KVM guest"
    return {"libvirt": info}
