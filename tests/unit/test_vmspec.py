"""The libvirt target's libvirt-free parts: config, PCI addresses, overlays, domain XML, the overlay sweep."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from benchbed.schema import TargetsFile
from benchbed.targets import vmspec
from benchbed.targets.libvirt import LibvirtTarget
from benchbed.targets.vmspec import Pci


def spec(**extra: Any) -> LibvirtTarget:
    return LibvirtTarget.model_validate({"kind": "libvirt", "image": "/img.raw", **extra})


def test_defaults_and_union() -> None:
    s = TargetsFile.model_validate({"targets": {"vm": {"kind": "libvirt", "image": "/x.qcow2"}}}).expanded()["vm"]
    assert isinstance(s, LibvirtTarget)
    assert (s.uri, s.virt_type, s.cpu_mode, s.ssh.reach, s.ssh.user) == (
        "qemu:///system",
        "kvm",
        "host-passthrough",
        "port_forward",
        "root",
    )


@pytest.mark.parametrize("bad", ["17:00.0", "0000:17:00.8", "0000:zz:00.0", "pci_0000_17_00_0"])
def test_malformed_pci_addresses_are_config_errors(bad: str) -> None:
    with pytest.raises(ValidationError):
        spec(gpus=[bad])


def test_pci_forms() -> None:
    p = Pci.parse("0000:17:00.1")
    assert p.nodedev == "pci_0000_17_00_1"
    assert Pci.from_xml({"domain": "0x0000", "bus": "0x17", "slot": "0x00", "function": "0x1"}) == p
    assert str(p) == "0000:17:00.1"
    assert p.same_device(Pci.parse("0000:17:00.0"))
    assert not p.same_device(Pci.parse("0000:18:00.0"))


def test_xml_is_escaped_and_carries_metadata(tmp_path: Path) -> None:
    s = spec(
        kernel="/k",
        initrd="/i",
        cmdline="root=/dev/vda console=ttyS0 <x>&",
        vcpus=2,
        memory=512,
        hugepages=True,
        vcpu_pinning=["2", "3"],
        virt_type="kvm",
    )
    xml = vmspec.render_domain(
        s,
        name="benchbed-r-1",
        run_id="r",
        target="vm",
        overlay=tmp_path / "o.qcow2",
        pci=[],
        host_port=2200,
        console_log=tmp_path / "c.log",
    )
    root = ET.fromstring(xml)
    assert root.findtext("os/cmdline") == "root=/dev/vda console=ttyS0 <x>&"
    assert root.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
    assert [v.get("cpuset") for v in root.iterfind("cputune/vcpupin")] == ["2", "3"]
    assert root.find("memoryBacking/hugepages") is not None
    meta = root.find(f"metadata/{{{vmspec.METADATA_NS}}}instance")
    assert meta is not None
    assert meta.findtext(f"{{{vmspec.METADATA_NS}}}owner") == vmspec.owner_label()
    assert root.find("devices/interface") is None  # port_forward: user-mode netdev only, no libvirt network


def test_lease_mode_uses_a_network_and_the_guest_agent(tmp_path: Path) -> None:
    s = spec(ssh={"reach": "lease", "network": "lab"})
    xml = vmspec.render_domain(
        s, name="n", run_id="r", target="vm", overlay=tmp_path / "o", pci=[], host_port=None, console_log=None
    )
    root = ET.fromstring(xml)
    assert root.find("devices/interface/source").get("network") == "lab"  # type: ignore[union-attr]
    assert root.find("devices/channel/target").get("name") == "org.qemu.guest_agent.0"  # type: ignore[union-attr]
    assert "qemu:commandline" not in xml


def test_overlay_formats(tmp_path: Path) -> None:
    raw = tmp_path / "b.raw"
    raw.write_bytes(b"\0" * 4096)
    assert vmspec.image_format(raw) == "raw"
    qcow = tmp_path / "b.qcow2"
    qcow.write_bytes(vmspec.QCOW2_MAGIC + b"\0" * 100)
    assert vmspec.image_format(qcow) == "qcow2"


def test_overlay_sweep_keeps_live_runs(tmp_path: Path) -> None:
    d = tmp_path / "ov"
    for name, owner in [("benchbed-a-1", f"{os.uname().nodename}:999999999"), ("benchbed-b-1", vmspec.owner_label())]:
        claim = vmspec.write_claim(d, name, name, "vm")
        claim.write_text(json.dumps({**json.loads(claim.read_text()), "owner": owner}))
        (d / f"{name}.qcow2").write_bytes(b"x")
        (d / f"{name}.console.log").write_text("boot")
    removed = vmspec.sweep_overlays(d)
    assert len(removed) == 1
    assert "benchbed-a-1.qcow2" in removed[0]
    assert sorted(p.name for p in d.iterdir()) == [
        "benchbed-b-1.console.log",
        "benchbed-b-1.json",
        "benchbed-b-1.qcow2",
    ]
    assert len(vmspec.sweep_overlays(d, everything=True)) == 1
    assert list(d.iterdir()) == []
