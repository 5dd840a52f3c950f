"""PCI passthrough as libvirt sees it: which functions an instance takes (the whole IOMMU group), that none is
in use, and that each is back on its host driver after the VM."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from contextlib import suppress
from typing import TYPE_CHECKING

import libvirt

from benchbed.errors import ProvisionError
from benchbed.targets import vmplace
from benchbed.targets.vmspec import Pci

if TYPE_CHECKING:
    from benchbed.targets.libvirt import LibvirtTarget as LibvirtSpec

log = logging.getLogger(__name__)


def _nodedev(conn: libvirt.virConnect, pci: Pci) -> ET.Element | None:
    try:
        return ET.fromstring(conn.nodeDeviceLookupByName(pci.nodedev).XMLDesc(0))
    except libvirt.libvirtError:
        return None


def host_driver(conn: libvirt.virConnect, pci: Pci) -> str | None:
    node = _nodedev(conn, pci)
    return None if node is None else node.findtext("driver/name")


def gpu_numa_node(conn: libvirt.virConnect, pci: list[Pci]) -> int | None:
    """The host NUMA node of the first passed-through function that has one (libvirt's node device)."""
    for p in pci:
        with suppress(libvirt.libvirtError):
            node = vmplace.pci_numa_node(conn.nodeDeviceLookupByName(p.nodedev).XMLDesc(0))
            if node is not None:
                return node
    return None


def host_cells(conn: libvirt.virConnect) -> dict[int, set[int]]:
    try:
        return vmplace.host_cells(conn.getCapabilities())
    except libvirt.libvirtError:
        return {}


def _in_use(conn: libvirt.virConnect) -> dict[Pci, str]:
    """PCI functions already handed to a running domain → that domain's name."""
    used: dict[Pci, str] = {}
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        with suppress(libvirt.libvirtError, ET.ParseError, KeyError, ValueError):
            for addr in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/hostdev[@type='pci']/source/address"):
                used[Pci.from_xml(dict(addr.attrib))] = dom.name()
    return used


def check_devices(conn: libvirt.virConnect, spec: LibvirtSpec, name: str) -> tuple[list[Pci], dict[str, str | None]]:
    """Every requested GPU function plus its siblings in the IOMMU group (its audio function, say), and the host
    driver each is bound to now. Raises before anything starts when a device is unknown, has no IOMMU group
    (IOMMU off), shares its group with another device, or is in use by a running domain."""
    n = f"target {name!r}"
    wanted: list[Pci] = []
    drivers: dict[str, str | None] = {}
    used = _in_use(conn) if spec.gpus else {}
    for text in spec.gpus:
        pci = Pci.parse(text)
        node = _nodedev(conn, pci)
        if node is None:
            raise ProvisionError(
                f"{n}: no PCI device {pci} on this host (libvirt node device {pci.nodedev} not found)",
                hint="list them with `virsh nodedev-list --cap pci` or `lspci -D`",
            )
        group = node.find("capability[@type='pci']/iommuGroup")
        if group is None:
            raise ProvisionError(
                f"{n}: PCI device {pci} is in no IOMMU group: the IOMMU is off or not supported",
                hint="enable VT-d/AMD-Vi in firmware and boot with intel_iommu=on (or amd_iommu=on) iommu=pt",
            )
        members = [Pci.from_xml(dict(a.attrib)) for a in group.iterfind("address")] or [pci]
        strangers = [m for m in members if not m.same_device(pci)]
        if strangers:
            raise ProvisionError(
                f"{n}: PCI device {pci} shares IOMMU group {group.get('number')} with other devices "
                f"({', '.join(map(str, strangers))}); they cannot be passed through separately",
                hint="move the card to another slot, or pass the whole group",
            )
        for member in sorted(members):
            if member in used:
                raise ProvisionError(f"{n}: PCI device {member} is in use by running domain {used[member]!r}")
            if member not in wanted:
                wanted.append(member)
                drivers[str(member)] = host_driver(conn, member)
    for uuid in spec.mdevs:
        try:
            conn.nodeDeviceLookupByName(f"mdev_{uuid.lower().replace('-', '_')}")
        except libvirt.libvirtError as err:
            raise ProvisionError(
                f"{n}: mediated device {uuid} not found", hint="create the vGPU slice first (mdevctl start)"
            ) from err
    return wanted, drivers


def devices_not_home(conn: libvirt.virConnect, drivers: dict[str, str | None]) -> list[str]:
    """Devices not back on the host driver they had before the VM (nvidia, say): one line each."""
    wrong = []
    for addr, before in drivers.items():
        now = host_driver(conn, Pci.parse(addr))
        if before and now != before:
            wrong.append(f"{addr} is on {now or 'no driver'}, was {before}")
    return wrong


def ensure_home(conn: libvirt.virConnect, drivers: dict[str, str | None], target: str, warnings: list[str]) -> None:
    """After destroy, managed passthrough devices must be back on their host driver (nvidia, say): else a warning
    (kept in `warnings` for the report) and a ProvisionError."""
    wrong = devices_not_home(conn, drivers)
    if wrong:
        msg = f"target {target!r}: after the VM, passthrough devices did not return to the host: " + "; ".join(wrong)
        log.warning("%s", msg)
        warnings.append(msg)
        raise ProvisionError(msg, hint="virsh nodedev-reattach <device>, or reload the driver")
