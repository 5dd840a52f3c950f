"""Booting one `libvirt` instance: overlay (qcow2 over the base image) → create (createXML: the domain is running
when it returns) → boot (until the guest's sshd sends its banner). Split from `libvirtvm.LibvirtProvisioner`,
which owns the instance's lifetime (teardown, devices, restore): this part only brings a domain up to its sshd.
"""

from __future__ import annotations

import socket
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import libvirt

from benchbed.errors import ProvisionError
from benchbed.interrupts import held_signals
from benchbed.targets import vmplace, vmspec
from benchbed.targets.base import PhaseClock
from benchbed.targets.libvirtinfo import create_error, describe_domain
from benchbed.targets.vmspec import POLL_S, Pci, wait_for_banner

if TYPE_CHECKING:
    from benchbed.targets.libvirt import LibvirtTarget as LibvirtSpec

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
}


def state(dom: libvirt.virDomain) -> str:
    try:
        return _STATES.get(dom.state()[0], "unknown")
    except libvirt.libvirtError:
        return "gone"


def _lease_address(dom: libvirt.virDomain) -> str | None:
    """The guest's IPv4 address: the network's DHCP lease, else the guest agent."""
    for source in (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT):
        with suppress(libvirt.libvirtError):
            for iface in (dom.interfaceAddresses(source) or {}).values():
                for addr in iface.get("addrs") or []:
                    if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and not addr["addr"].startswith("127."):
                        return str(addr["addr"])
    return None


class Booter:
    """One target's booted instances: what the latest one's domain looks like (for describe) and its serve port."""

    def __init__(self, name: str, spec: LibvirtSpec, run_id: str, directory: Path) -> None:
        self.name, self.spec, self.run_id, self.dir = name, spec, run_id, directory
        self.placement = vmplace.VmPlacement()
        self.serve_fwd: tuple[int, int] | None = None  # (guest, host) port of `serve_port`, per instance
        self.described: dict[str, Any] = {}

    def boot(
        self,
        conn: libvirt.virConnect,
        name: str,
        pci: list[Pci],
        drivers: dict[str, str | None],
        live: list[libvirt.virDomain],
        clock: PhaseClock,
        t: float,
    ) -> tuple[socket.socket, str, int]:
        """overlay → create → boot: a fresh domain on its own overlay (bound into `live` as soon as it exists), up to
        its sshd's banner: the socket, host and port."""
        overlay, console = self.dir / f"{name}.qcow2", self.dir / f"{name}.console.log"
        assert self.spec.image is not None  # the spec's validator, or with_stack, made sure
        vmspec.create_overlay(Path(self.spec.image).expanduser(), overlay)
        clock.add("overlay", time.perf_counter() - t)
        t = time.perf_counter()
        with held_signals():  # created means bound to `live`, so the caller's finally destroys it
            dom, xml, port = self._create(conn, name, overlay, pci, console)
            live.append(dom)
        clock.add("create", time.perf_counter() - t)
        t = time.perf_counter()
        host, port = self._reach(dom, port)
        sock = self.banner(dom, name, host, port, t, console)
        clock.add("boot", time.perf_counter() - t)
        if not self.described:
            self.described = describe_domain(conn, self.spec, dom, xml, pci, drivers, self.placement)
        return sock, host, port

    def banner(
        self,
        dom: libvirt.virDomain,
        name: str,
        host: str,
        port: int,
        t: float,
        console: Path,
        probes: int = vmspec.MAX_PROBES,
    ) -> socket.socket:
        """The guest's sshd banner within boot_timeout_s of `t`, or one line saying why not."""
        n, spec = f"target {self.name!r}", self.spec
        try:
            return wait_for_banner(
                host, port, t + spec.boot_timeout_s, lambda: state(dom) == "running", max_probes=probes
            )
        except TimeoutError:
            raise ProvisionError(
                f"{n}: guest {name} did not answer SSH on {host}:{port} within {spec.boot_timeout_s:g} s "
                f"(domain destroyed){vmspec.console_tail(console)}",
                hint="raise boot_timeout_s (software emulation boots slowly) or check the console log above",
            ) from None
        except ConnectionAbortedError:
            raise ProvisionError(
                f"{n}: guest {name} stopped while booting ({state(dom)}){vmspec.console_tail(console)}"
            ) from None

    def _create(
        self, conn: libvirt.virConnect, name: str, overlay: Path, pci: list[Pci], console: Path
    ) -> tuple[libvirt.virDomain, str, int | None]:
        """createXML (transient: gone once destroyed); a forwarded port taken in the meantime gets one retry."""
        for attempt in range(3):
            port = (self.spec.ssh.host_port or vmspec.free_port()) if self.spec.ssh.reach == "port_forward" else None
            guest = self.spec.ssh.serve_port
            serve = vmspec.free_port() if port is not None and guest else None
            self.serve_fwd = (guest, serve) if guest and serve else None
            xml = vmspec.render_domain(
                self.spec,
                name=name,
                run_id=self.run_id,
                target=self.name,
                overlay=overlay,
                pci=pci,
                host_port=port,
                console_log=console,
                placement=self.placement,
                serve_host_port=serve,
            )
            try:
                return conn.createXML(xml, 0), xml, port
            except libvirt.libvirtError as err:
                msg = err.get_error_message() or str(err)
                if "host forwarding" in msg and attempt < 2 and not self.spec.ssh.host_port:
                    continue
                raise create_error(f"target {self.name!r}", msg) from err
        raise AssertionError("unreachable")

    def _reach(self, dom: libvirt.virDomain, port: int | None) -> tuple[str, int]:
        if port is not None:
            return "127.0.0.1", port
        deadline = time.perf_counter() + self.spec.boot_timeout_s
        while time.perf_counter() < deadline:
            addr = _lease_address(dom)
            if addr:
                return addr, self.spec.ssh.port
            time.sleep(POLL_S)
        raise ProvisionError(
            f"target {self.name!r}: guest got no address on network {self.spec.ssh.network!r} "
            f"within {self.spec.boot_timeout_s:g} s (no DHCP lease, no guest agent answer)"
        )
