"""Where a passthrough VM's vCPUs and memory live: on the GPU's NUMA node, from hugepages, or not (libvirt-free).

A VM whose memory sits on the other socket pays the inter-socket link on every host↔device copy, and one backed
by 4 KiB host pages pays IOMMU and TLB misses on DMA: both would be blamed on the hypervisor. With `numa: auto`
(the default) a VM with a GPU gets `<numatune>` (memory strict on the GPU's node, as libvirt's node device says)
and, unless `vcpu_pinning` says otherwise, its vCPUs on that node's CPUs. Hugepages need a reservation on the
host, so they stay opt-in; the fingerprint's `libvirt.placement.notes` (and the report) say when either is off.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from benchbed.errors import ProvisionError
from benchbed.workloads.numa import format_cpulist

if TYPE_CHECKING:
    from benchbed.targets.libvirt import LibvirtTarget as LibvirtSpec


@dataclass(frozen=True)
class VmPlacement:
    gpu_node: int | None = None  # the passed-through GPU's host NUMA node, as libvirt reports it
    numa_node: int | None = None  # <numatune> memory node; None: not bound
    vcpu_cpuset: str | None = None  # <vcpu cpuset=...>; None: the scheduler's choice (or per-vCPU pinning)
    hugepages: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "gpu_numa_node": self.gpu_node,
            "numa_node": self.numa_node,
            "vcpu_cpuset": self.vcpu_cpuset,
            "hugepages": self.hugepages,
            "notes": list(self.notes),
        }


def pci_numa_node(nodedev_xml: str) -> int | None:
    """The NUMA node in a libvirt PCI node device's XML (<numa node='1'/>); None when absent or -1."""
    try:
        numa = ET.fromstring(nodedev_xml).find("capability[@type='pci']/numa")
    except ET.ParseError:
        return None
    node = numa.get("node") if numa is not None else None
    return int(node) if node is not None and node.lstrip("-").isdigit() and int(node) >= 0 else None


def host_cells(capabilities_xml: str) -> dict[int, set[int]]:
    """CPUs per NUMA cell from virConnectGetCapabilities."""
    try:
        root = ET.fromstring(capabilities_xml)
    except ET.ParseError:
        return {}
    cells: dict[int, set[int]] = {}
    for cell in root.iterfind("host/topology/cells/cell"):
        cpus = {int(c.get("id", "-1")) for c in cell.iterfind("cpus/cpu")} - {-1}
        cells[int(cell.get("id", "0"))] = cpus
    return cells


def plan(spec: LibvirtSpec, name: str, gpu_node: int | None, cells: dict[int, set[int]]) -> VmPlacement:
    """The placement the domain XML gets, with a note for each thing a GPU user would want and does not get."""
    has_gpu = bool(spec.gpus or spec.mdevs)
    if spec.numa == "off":
        node = None
    elif spec.numa == "auto":
        node = gpu_node if has_gpu else None
    else:
        node = spec.numa
        if cells and node not in cells:
            raise ProvisionError(
                f"target {name!r}: numa: {node} is not a NUMA node of this host (nodes: {sorted(cells)})",
                hint="`virsh capabilities` lists the cells; or use numa: auto to follow the GPU",
            )
    cpuset = None
    if node is not None and not spec.vcpu_pinning and cells.get(node):
        cpuset = format_cpulist(cells[node])
    notes: list[str] = []
    if has_gpu and node is None:
        why = "numa: off" if spec.numa == "off" else "the host does not say which node the GPU is on"
        notes.append(f"NUMA pinning off ({why}): the VM's memory and vCPUs may sit on another socket than its GPU")
    elif has_gpu and gpu_node is not None and node != gpu_node:
        notes.append(f"NUMA: the VM is bound to node {node}, its GPU is on node {gpu_node}")
    if has_gpu and not spec.hugepages:
        notes.append("hugepages off: guest memory is backed by 4 KiB host pages (DMA pays IOMMU/TLB misses)")
    return VmPlacement(gpu_node, node, cpuset, spec.hugepages, tuple(notes))


def driver_version(uri: str, driver: str | None, sys: Path = Path("/sys")) -> str | None:
    """The host driver module's version (nvidia: "570.86.15"), readable only when libvirt runs on this host."""
    if not driver or urlparse(uri).hostname:
        return None
    try:
        return (sys / "module" / driver.replace("-", "_") / "version").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
