"""The `libvirt` target's XML and lifecycle against libvirt's in-process `test://` driver: fast, boots nothing.

The driver is loaded with a node file holding a GPU (0000:17:00.0) and its audio function (0000:17:00.1) in one
IOMMU group, so passthrough checks see a realistic host.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.errors import ProvisionError
from benchbed.targets import vmspec
from benchbed.targets.libvirt import LibvirtTarget as LibvirtSpec
from tests.conftest import need

pytestmark = pytest.mark.libvirt
NODE = Path(__file__).resolve().parent / "data" / "libvirt-test-node.xml"
URI = f"test://{NODE}"


@pytest.fixture(scope="module")
def lv() -> Any:
    try:
        import libvirt
    except ImportError:
        need("libvirt", "libvirt-python is not installed (pip install 'benchbed[libvirt]')")
    return libvirt


@pytest.fixture
def base(tmp_path: Path) -> Path:
    image = tmp_path / "base.raw"
    with image.open("wb") as f:
        f.truncate(1 << 20)
    return image


def make(base: Path, tmp_path: Path, **extra: Any) -> LibvirtSpec:
    fields: dict[str, Any] = {
        "kind": "libvirt",
        "uri": URI,
        "image": str(base),
        "overlay_dir": str(tmp_path / "overlays"),
        "virt_type": "qemu",
        "boot_timeout_s": 0.3,
        **extra,
    }
    return LibvirtSpec.model_validate(fields)


@pytest.fixture
def target_of(lv: Any) -> Iterator[Any]:
    from benchbed.targets.libvirtvm import LibvirtProvisioner as LibvirtTarget

    made: list[LibvirtTarget] = []

    def factory(spec: LibvirtSpec) -> LibvirtTarget:
        made.append(LibvirtTarget("vm", spec, "r1"))
        return made[-1]

    yield factory
    for t in made:
        t.close()


def test_gpu_and_its_iommu_siblings_become_hostdevs(lv: Any, target_of: Any, base: Path, tmp_path: Path) -> None:
    from benchbed.targets.libvirtdev import check_devices

    spec = make(base, tmp_path, gpus=["0000:17:00.0"], mdevs=["3f5b2c4e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"])
    t = target_of(spec)
    pci, _ = check_devices(t.conn, spec.model_copy(update={"mdevs": []}), "vm")
    assert [str(p) for p in pci] == ["0000:17:00.0", "0000:17:00.1"]  # the audio function comes along
    xml = vmspec.render_domain(
        spec,
        name="benchbed-r1-1",
        run_id="r1",
        target="vm",
        overlay=tmp_path / "o.qcow2",
        pci=pci,
        host_port=2222,
        console_log=None,
    )
    root = ET.fromstring(xml)
    addrs = [a.attrib for a in root.iterfind("devices/hostdev[@type='pci']/source/address")]
    assert addrs == [
        {"domain": "0x0000", "bus": "0x17", "slot": "0x00", "function": "0x0"},
        {"domain": "0x0000", "bus": "0x17", "slot": "0x00", "function": "0x1"},
    ]
    assert all(h.get("managed") == "yes" for h in root.iterfind("devices/hostdev[@type='pci']"))
    mdev = root.find("devices/hostdev[@type='mdev']")
    assert mdev is not None
    assert mdev.get("model") == "vfio-pci"
    assert mdev.find("source/address").get("uuid") == "3f5b2c4e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"  # type: ignore[union-attr]
    assert root.get("type") == "qemu"
    cpu = root.find("cpu")  # host-passthrough needs KVM: under emulation QEMU's `max` model (qemu64 lacks x86-64-v2)
    assert cpu is not None
    assert cpu.get("mode") == "maximum"
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in xml
    # the XML defines and starts on a real libvirt driver, hostdevs kept
    dom = t.conn.createXML(xml.replace("<qemu:commandline>", "<!--").replace("</qemu:commandline>", "-->"), 0)
    try:
        assert len(ET.fromstring(dom.XMLDesc(0)).findall("devices/hostdev")) == 3
    finally:
        dom.destroy()


def test_bad_devices_are_rejected_before_anything_starts(lv: Any, target_of: Any, base: Path, tmp_path: Path) -> None:
    for gpus, mdevs, expect in [
        (["0000:99:00.0"], [], "no PCI device 0000:99:00.0 on this host"),
        (
            [],
            ["00000000-0000-0000-0000-000000000000"],
            "mediated device 00000000-0000-0000-0000-000000000000 not found",
        ),
    ]:
        t = target_of(make(base, tmp_path, gpus=gpus, mdevs=mdevs))
        with pytest.raises(ProvisionError, match=expect), t.provision():
            pass
        assert t.conn.listAllDomains(0) == []
        assert not (tmp_path / "overlays").exists() or list((tmp_path / "overlays").iterdir()) == []


def test_boot_timeout_destroys_the_domain_and_removes_the_overlay(
    lv: Any, target_of: Any, base: Path, tmp_path: Path
) -> None:
    # the test driver boots nothing: nothing ever answers on the forwarded port
    t = target_of(make(base, tmp_path, ssh={"reach": "port_forward"}, gpus=["0000:17:00.0"]))
    t.booter._create = _without_qemu_namespace(t.booter._create)
    with (
        pytest.raises(
            ProvisionError, match=r"did not answer SSH on 127\.0\.0\.1:\d+ within 0\.3 s \(domain destroyed\)"
        ),
        t.provision(),
    ):
        pass
    assert [d for d in t.conn.listAllDomains(0) if d.name().startswith("benchbed-")] == []
    assert list((tmp_path / "overlays").iterdir()) == []
    assert set(t.startup_phases()) == {"overlay", "create"}


def test_passthrough_domain_falls_back_to_boot_with_one_line_or_refuses_restore_strictly(
    lv: Any, target_of: Any, base: Path, tmp_path: Path
) -> None:
    # start: restore with a GPU: said once, then the instance boots (and times out here: the driver boots nothing)
    t = target_of(make(base, tmp_path, gpus=["0000:17:00.0"], start="restore"))
    t.booter._create = _without_qemu_namespace(t.booter._create)
    for _ in range(2):
        with pytest.raises(ProvisionError, match="did not answer SSH"), t.provision():
            pass
        assert set(t.startup_phases()) == {"overlay", "create"}  # booted: no save, no restore
    assert t.warnings == [
        "target 'vm': start: restore — a domain with passthrough devices (gpus/mdevs: hostdev) cannot be saved; "
        "booting every instance instead"
    ]
    # start: restore! refuses before anything exists
    t = target_of(make(base, tmp_path, gpus=["0000:17:00.0"], start="restore!"))
    with pytest.raises(ProvisionError, match=r"start: restore! — a domain with passthrough devices"), t.provision():
        pass
    assert [d for d in t.conn.listAllDomains(0) if d.name().startswith("benchbed-")] == []
    assert list((tmp_path / "overlays").iterdir()) == []


def _without_qemu_namespace(create: Any) -> Any:
    """The test driver keeps no <qemu:commandline>: drop it, as QEMU would consume it."""
    from benchbed.targets import libvirtvm as L

    def wrapped(conn: Any, name: str, overlay: Path, pci: Any, console: Path) -> Any:
        real = vmspec.render_domain

        def render(*a: Any, **kw: Any) -> str:
            xml = real(*a, **kw)
            start, end = xml.find("<qemu:commandline>"), xml.find("</qemu:commandline>")
            return xml[:start] + xml[end + len("</qemu:commandline>") :] if start >= 0 else xml

        L.vmspec.render_domain = render  # type: ignore[assignment]
        try:
            return create(conn, name, overlay, pci, console)
        finally:
            L.vmspec.render_domain = real  # type: ignore[assignment]

    return wrapped


def test_metadata_and_the_sweep_of_dead_runs(lv: Any, target_of: Any, base: Path, tmp_path: Path) -> None:
    from benchbed.targets import libvirtsweep as L

    spec = make(base, tmp_path)
    t = target_of(spec)
    overlays = tmp_path / "overlays"
    doms = {}
    for who, owner in [("dead", f"{os.uname().nodename}:999999999"), ("live", vmspec.owner_label())]:
        name = f"benchbed-{who}-1"
        vmspec.write_claim(overlays, name, who, "vm")
        claim = overlays / f"{name}.json"
        claim.write_text(claim.read_text().replace(vmspec.owner_label(), owner))
        vmspec.create_overlay(base, overlays / f"{name}.qcow2")
        xml = vmspec.render_domain(
            spec,
            name=name,
            run_id=who,
            target="vm",
            overlay=overlays / f"{name}.qcow2",
            pci=[],
            host_port=None,
            console_log=None,
        ).replace(vmspec.owner_label(), owner)
        doms[who] = t.conn.createXML(xml, 0)
    assert L._metadata(doms["dead"]) == {
        "run": "dead",
        "owner": f"{os.uname().nodename}:999999999",
        "target": "vm",
        "overlay": str(overlays / "benchbed-dead-1.qcow2"),
    }
    # the test driver is per connection: sweep through the target's own connection
    removed = _sweep_on(t.conn, overlays)
    assert [r.split(" (")[0] for r in removed] == [
        "domain benchbed-dead-1",
        f"overlay {overlays}/benchbed-dead-1.qcow2",
    ]
    assert {d.name() for d in t.conn.listAllDomains(0)} == {"benchbed-live-1"}
    assert sorted(p.name for p in overlays.iterdir()) == ["benchbed-live-1.json", "benchbed-live-1.qcow2"]
    assert [r.split(" (")[0] for r in _sweep_on(t.conn, overlays, everything=True)] == [
        "domain benchbed-live-1",
        f"overlay {overlays}/benchbed-live-1.qcow2",
    ]
    assert list(overlays.iterdir()) == []


def _sweep_on(conn: Any, overlays: Path, everything: bool = False) -> list[str]:
    from benchbed.targets import libvirtsweep as L

    real_open = L.libvirt.open
    L.libvirt.open = lambda uri: conn  # type: ignore[assignment]
    conn.close = lambda: 0
    try:
        return L.sweep(URI, overlays, everything=everything)
    finally:
        L.libvirt.open = real_open  # type: ignore[assignment]
        del conn.close


def test_device_not_back_on_its_host_driver_fails_loudly(
    lv: Any, target_of: Any, base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchbed.targets import libvirtdev

    t = target_of(make(base, tmp_path))
    monkeypatch.setattr(libvirtdev, "host_driver", lambda conn, pci: "vfio-pci")
    with pytest.raises(ProvisionError, match=r"0000:17:00\.0 is on vfio-pci, was nvidia"):
        libvirtdev.ensure_home(t.conn, {"0000:17:00.0": "nvidia"}, t.name, t.warnings)
    assert t.warnings
    assert "did not return to the host" in t.warnings[0]


def test_importing_benchbed_does_not_import_libvirt() -> None:
    import subprocess
    import sys

    code = "import sys, benchbed.cli, benchbed.cleanup, benchbed.targets.vmspec; print('libvirt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_banner_probe_survives_refusals_and_a_silent_forward(lv: Any) -> None:
    """Like QEMU's forward while a guest boots: first connections close at once (no sshd yet), one hangs
    (no guest IP yet); the banner that follows is seen within a poll, and left unread for paramiko."""
    import socket
    import threading
    import time

    from benchbed.targets.vmspec import wait_for_banner

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    held: list[socket.socket] = []

    def serve() -> None:
        for i in range(5):
            conn, _ = srv.accept()
            if i < 3:
                conn.close()
            elif i == 3:
                held.append(conn)  # silent: the prober must open another beside it
            else:
                held.append(conn)
                conn.sendall(b"SSH-2.0-test\r\n")

    threading.Thread(target=serve, daemon=True).start()
    t0 = time.perf_counter()
    sock = wait_for_banner("127.0.0.1", port, t0 + 10, lambda: True)
    try:
        assert time.perf_counter() - t0 < 2.0
        assert sock.recv(64) == b"SSH-2.0-test\r\n"  # peeked, not consumed
    finally:
        sock.close()
        for c in held:
            c.close()
        srv.close()


def test_gpu_vm_is_bound_to_the_gpus_node(lv: Any, target_of: Any, base: Path, tmp_path: Path) -> None:
    """libvirt's node device says the GPU is on node 1: numa auto binds the domain's memory there, the XML with
    <numatune> and hugepages starts on a real libvirt driver, and the placement is in the fingerprint."""
    from benchbed.targets import libvirtdev, vmplace
    from benchbed.targets.libvirtinfo import describe_domain

    spec = make(base, tmp_path, gpus=["0000:17:00.0"], hugepages=True)
    t = target_of(spec)
    pci, drivers = libvirtdev.check_devices(t.conn, spec, "vm")
    assert libvirtdev.gpu_numa_node(t.conn, pci) == 1
    placement = vmplace.plan(spec, "vm", libvirtdev.gpu_numa_node(t.conn, pci), libvirtdev.host_cells(t.conn))
    assert (placement.numa_node, placement.notes) == (1, ())
    xml = vmspec.render_domain(
        spec,
        name="benchbed-r1-2",
        run_id="r1",
        target="vm",
        overlay=tmp_path / "o.qcow2",
        pci=pci,
        host_port=2222,
        console_log=None,
        placement=placement,
    )
    dom = t.conn.createXML(xml.replace("<qemu:commandline>", "<!--").replace("</qemu:commandline>", "-->"), 0)
    try:
        live = ET.fromstring(dom.XMLDesc(0))
        assert live.find("numatune/memory").attrib == {"mode": "strict", "nodeset": "1"}  # type: ignore[union-attr]
        info = describe_domain(t.conn, spec, dom, xml, pci, drivers, placement)["libvirt"]
        assert info["placement"]["numa_node"] == 1
        assert "host_driver_version" in info["passthrough"]["pci"][0]
    finally:
        dom.destroy()
