"""A passthrough VM's NUMA and hugepage placement (libvirt-free): the plan, the domain XML, the report's notes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from benchbed.errors import ProvisionError
from benchbed.report.gpunotes import env_notes
from benchbed.targets import vmplace, vmspec
from benchbed.targets.libvirt import LibvirtTarget

CELLS = {0: set(range(0, 8)), 1: set(range(8, 16))}
GPU = "0000:3b:00.0"


def spec(**extra: Any) -> LibvirtTarget:
    return LibvirtTarget.model_validate({"kind": "libvirt", "image": "/img.raw", **extra})


def test_auto_binds_a_gpu_vm_to_the_gpus_node() -> None:
    p = vmplace.plan(spec(gpus=[GPU], hugepages=True), "vm", 1, CELLS)
    assert (p.numa_node, p.vcpu_cpuset, p.notes) == (1, "8-15", ())


def test_auto_leaves_a_vm_without_gpu_alone() -> None:
    p = vmplace.plan(spec(), "vm", None, CELLS)
    assert (p.numa_node, p.vcpu_cpuset, p.notes) == (None, None, ())


def test_what_is_off_is_said() -> None:
    p = vmplace.plan(spec(gpus=[GPU], numa="off"), "vm", 1, CELLS)
    assert p.numa_node is None
    assert p.notes[0].startswith("NUMA pinning off (numa: off)")
    assert p.notes[1].startswith("hugepages off")
    unknown = vmplace.plan(spec(gpus=[GPU], hugepages=True), "vm", None, CELLS)
    assert unknown.notes == (
        "NUMA pinning off (the host does not say which node the GPU is on): the VM's memory and vCPUs may sit on "
        "another socket than its GPU",
    )
    elsewhere = vmplace.plan(spec(gpus=[GPU], hugepages=True, numa=0), "vm", 1, CELLS)
    assert elsewhere.notes == ("NUMA: the VM is bound to node 0, its GPU is on node 1",)


def test_explicit_pinning_wins_and_a_missing_node_is_refused() -> None:
    p = vmplace.plan(spec(gpus=[GPU], vcpu_pinning=["9", "10"]), "vm", 1, CELLS)
    assert (p.numa_node, p.vcpu_cpuset) == (1, None)
    with pytest.raises(ProvisionError, match="numa: 3 is not a NUMA node of this host"):
        vmplace.plan(spec(gpus=[GPU], numa=3), "vm", 1, CELLS)


def test_domain_xml_carries_numatune_and_cpuset(tmp_path: Path) -> None:
    s = spec(gpus=[GPU], hugepages=True)
    kw: dict[str, Any] = {"name": "n", "run_id": "r", "target": "vm", "overlay": tmp_path / "o"}
    kw.update(pci=[vmspec.Pci.parse(GPU)], host_port=2200, console_log=None)
    root = ET.fromstring(vmspec.render_domain(s, **kw, placement=vmplace.plan(s, "vm", 1, CELLS)))
    assert root.find("numatune/memory").attrib == {"mode": "strict", "nodeset": "1"}  # type: ignore[union-attr]
    assert root.find("vcpu").get("cpuset") == "8-15"  # type: ignore[union-attr]
    assert root.find("memoryBacking/hugepages") is not None
    plain = ET.fromstring(vmspec.render_domain(spec(), **kw))
    assert plain.find("numatune") is None
    assert plain.find("vcpu").get("cpuset") is None  # type: ignore[union-attr]


def test_libvirt_xml_readers() -> None:
    dev = "<device><capability type='pci'><domain>0</domain><numa node='1'/></capability></device>"
    assert vmplace.pci_numa_node(dev) == 1
    assert vmplace.pci_numa_node(dev.replace("'1'", "'-1'")) is None
    assert vmplace.pci_numa_node("<device><capability type='pci'/></device>") is None
    caps = (
        "<capabilities><host><topology><cells num='2'>"
        "<cell id='0'><cpus num='2'><cpu id='0'/><cpu id='1'/></cpus></cell>"
        "<cell id='1'><cpus num='2'><cpu id='2'/><cpu id='3'/></cpus></cell>"
        "</cells></topology></host></capabilities>"
    )
    assert vmplace.host_cells(caps) == {0: {0, 1}, 1: {2, 3}}


def test_host_driver_version_only_for_a_local_libvirt(tmp_path: Path) -> None:
    (tmp_path / "module/nvidia").mkdir(parents=True)
    (tmp_path / "module/nvidia/version").write_text("570.86.15\n")
    assert vmplace.driver_version("qemu:///system", "nvidia", tmp_path) == "570.86.15"
    assert vmplace.driver_version("qemu+ssh://gpuhost/system", "nvidia", tmp_path) is None
    assert vmplace.driver_version("qemu:///system", "vfio-pci", tmp_path) is None


def test_report_notes_come_from_the_fingerprint() -> None:
    placement = vmplace.plan(spec(gpus=[GPU]), "vm", None, CELLS).to_json()
    env = {"vm": {"libvirt": {"placement": placement}}, "local": {"gpus": [{"persistence_mode": "enabled"}]}}
    notes = env_notes(env, ["local", "vm"])
    assert [n["target"] for n in notes] == ["vm", "vm"]
    assert notes[1]["note"].startswith("hugepages off")
