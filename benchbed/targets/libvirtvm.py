"""`libvirt`: a fresh transient VM per instance, reached with the same paramiko session as `ssh`.

check passthrough devices (a bad PCI address fails before anything starts) → `overlay` (qcow2 over the base
image) → `create` (createXML: the domain is running when it returns) → `boot` (until the guest's sshd sends
its banner, polled every 50 ms) → `connect` + `first_rtt` (the ssh kind on the polled socket). Teardown destroys
the domain and removes the overlay on success, failure and Ctrl-C, then checks that passed-through devices went
back to their host driver. Domains carry benchbed metadata (run, controller host:pid) and overlays a claim
file, so `benchbed cleanup` and the sweep at run start can remove what a killed harness left.
"""

from __future__ import annotations

import itertools
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import libvirt

from benchbed.errors import ProvisionError, TransportError
from benchbed.interrupts import held_signals
from benchbed.targets import libvirtdev, libvirtsave, vmplace, vmrestore, vmspec
from benchbed.targets.base import PhaseClock, TargetImpl
from benchbed.targets.libvirtinfo import create_error, describe_domain, with_stack
from benchbed.targets.sshhost import SshProvisioner
from benchbed.targets.sshlink import SshSession
from benchbed.targets.vmspec import POLL_S, PREFIX, Pci, wait_for_banner

if TYPE_CHECKING:  # the kind module imports this one on use; only the type comes back
    from benchbed.targets.libvirt import LibvirtTarget as LibvirtSpec

log = logging.getLogger(__name__)

_SEQ = itertools.count(1)  # instance numbers, unique across targets within this controller process
_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
}


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised as exceptions instead."""


libvirt.registerErrorHandler(_quiet, None)


def connect(uri: str, where: str) -> libvirt.virConnect:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as err:
        raise ProvisionError(
            f"{where}: cannot connect to libvirt at {uri}: {err.get_error_message()}",
            hint="is libvirtd running (libvirtd -d)? set `uri:` to the hypervisor's URI",
        ) from err


def _state(dom: libvirt.virDomain) -> str:
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


# ── target ─────────────────────────────────────────────────────────────────────────────────────────────────
class LibvirtProvisioner(TargetImpl):
    def __init__(self, name: str, spec: LibvirtSpec, run_id: str) -> None:
        super().__init__(name, spec, run_id)
        self.spec: LibvirtSpec = spec
        self.dir = vmspec.overlay_dir(spec)
        self._conn: libvirt.virConnect | None = None
        self._stale = False  # the last teardown lost the connection to libvirtd
        self._described: dict[str, Any] = {}
        self._placement = vmplace.VmPlacement()
        self._serve_fwd: tuple[int, int] | None = None  # (guest, host) port of `serve_port`, per instance
        self._stack: dict[str, Any] = {}
        self.warnings: list[str] = []
        self._saved: libvirtsave.Saved | None = None  # the running guest saved once, with start: restore
        self.workload: str | None = None  # the next instance's workload (next_case)
        self.started: str | None = None  # how the latest instance started: booted | restored

    @property
    def conn(self) -> libvirt.virConnect:
        if self._stale:  # the last teardown lost libvirtd: connect afresh
            self._stale = False
            self.close()
        if self._conn is None:
            self._conn = connect(self.spec.uri, f"target {self.name!r}")
        return self._conn

    def describe(self) -> dict[str, Any]:
        """Controller-side facts for the fingerprint: the domain XML as started, virt type, versions, devices, and
        how instances start (restored ones share the saved guest's page cache and running processes' layout)."""
        out = {**self._described, **self._stack}
        if "libvirt" in out:
            start: dict[str, Any] = {"mode": self.spec.start, "latest": self.started}
            if self._saved is not None:
                start.update(save_file_bytes=self._saved.size, shared=list(vmrestore.SHARED))
            out["libvirt"] = {**out["libvirt"], "start": start}
        return out

    def next_case(self, workload: str) -> None:
        self.workload = workload

    def instance_start(self) -> str | None:
        return self.started

    def close(self) -> None:
        if self._saved is not None:  # the save file and its disk outlive instances, not the run
            with held_signals():
                self._saved.remove()
            self._saved = None
        if self._conn is not None:
            with suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    def _files_exist(self) -> None:
        for key in ("image", "kernel", "initrd"):
            value = getattr(self.spec, key)
            if value and not Path(value).expanduser().is_file():
                raise self.error(
                    ProvisionError, f"{key} {value} not found", hint="scripts/build-vm-image builds a test guest"
                )

    @contextmanager
    def provision(self) -> Iterator[SshSession]:
        self._clock = clock = PhaseClock()
        if self.spec.stack and not self._stack:  # built once per image id and host: its cost is `stack_build`
            self.spec, self._stack, build_s = with_stack(self.spec)
            if build_s:
                clock.add("stack_build", build_s)
        spec, n = self.spec, f"target {self.name!r}"
        t = time.perf_counter()
        self._files_exist()
        pci, drivers = libvirtdev.check_devices(self.conn, spec, self.name)  # before anything exists that needs undoing
        cells = libvirtdev.host_cells(self.conn) if spec.numa != "off" else {}
        self._placement = vmplace.plan(spec, self.name, libvirtdev.gpu_numa_node(self.conn, pci), cells)
        mode = self._start_mode(bool(pci or spec.mdevs))
        name = f"{PREFIX}{self.run_id}-{next(_SEQ)}"
        live: list[libvirt.virDomain] = []  # what the finally destroys, bound as soon as it exists
        try:
            vmspec.write_claim(self.dir, name, self.run_id, self.name)
            if mode == "restore":
                if self._saved is None:  # once per target and run: boot, save; charged to this instance
                    self._saved = self._save_once(pci, drivers, clock)
                t = time.perf_counter()
                sock, host, port = self._restored(name, live, clock, t)
            else:
                sock, host, port = self._booted(name, pci, drivers, live, clock, t)
            self.started = "restored" if mode == "restore" else "booted"
            dom = live[0]
            ssh = SshProvisioner(self.name, vmspec.guest_ssh_spec(self.spec, self.dir, host, port, name), self.run_id)
            ssh.remove_workdir = False  # the VM is destroyed right after
            try:
                with ssh.provision(sock) as session:
                    session.forward = self._serve_fwd  # serve.latency reaches the guest's port through it
                    clock.phases.update(ssh.startup_phases())
                    if mode == "restore":
                        t = time.perf_counter()
                        libvirtsave.refresh(session, n)
                        clock.add("refresh", time.perf_counter() - t)
                    yield session
            except TransportError as err:  # say why the link dropped when the domain knows
                state = _state(dom)
                if state != "running":
                    raise TransportError(f"{n}: guest {name} stopped mid-case ({state}): {err}") from err
                raise
        finally:
            with held_signals():  # a second Ctrl-C or SIGTERM waits until the domain and its files are gone
                for dom in live:
                    self._destroy(dom, name)
                vmspec.remove_instance_files(self.dir, name)
        if not self._stale:  # with libvirtd gone, nothing can be asked about the devices
            self._devices_home(drivers)

    def _destroy(self, dom: libvirt.virDomain, name: str) -> None:
        """Destroy the instance's domain. With the connection to libvirtd lost it cannot be: say so, and drop the
        connection, so the next instance connects afresh (and fails with one line while libvirtd stays away)."""
        try:
            dom.destroy()
        except libvirt.libvirtError as err:
            if err.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
                return  # gone already (destroyed from outside, or stopped by itself)
            log.warning("target %r: domain %s left for `benchbed cleanup` (%s)", self.name, name, err)
            self._stale = True

    def _start_mode(self, has_devices: bool) -> str:
        """boot or restore for the next instance; a fallback to booting is said once per target."""
        mode, why = vmrestore.start_mode(self.spec, self.name, has_devices=has_devices, workload=self.workload)
        if mode == "boot" and self.spec.start != "boot" and why.startswith("target") and why not in self.warnings:
            log.warning("%s", why)
            self.warnings.append(why)
        return mode

    def _booted(
        self,
        name: str,
        pci: list[Pci],
        drivers: dict[str, str | None],
        live: list[libvirt.virDomain],
        clock: PhaseClock,
        t: float,
    ) -> tuple[socket.socket, str, int]:
        """overlay → create → boot: a fresh domain on its own overlay, up to its sshd's banner."""
        overlay, console = self.dir / f"{name}.qcow2", self.dir / f"{name}.console.log"
        assert self.spec.image is not None  # the spec's validator, or with_stack, made sure
        vmspec.create_overlay(Path(self.spec.image).expanduser(), overlay)
        clock.add("overlay", time.perf_counter() - t)
        t = time.perf_counter()
        with held_signals():  # created means bound to `live`, so the caller's finally destroys it
            dom, xml, port = self._create(name, overlay, pci, console)
            live.append(dom)
        clock.add("create", time.perf_counter() - t)
        t = time.perf_counter()
        host, port = self._reach(dom, port)
        sock = self._banner(dom, name, host, port, t, console)
        clock.add("boot", time.perf_counter() - t)
        if not self._described:
            self._described = describe_domain(self.conn, self.spec, dom, xml, pci, drivers, self._placement)
        return sock, host, port

    def _banner(
        self,
        dom: libvirt.virDomain,
        name: str,
        host: str,
        port: int,
        t: float,
        console: Path,
        probes: int = vmspec.MAX_PROBES,
    ) -> socket.socket:
        n, spec = f"target {self.name!r}", self.spec
        try:
            return wait_for_banner(
                host, port, t + spec.boot_timeout_s, lambda: _state(dom) == "running", max_probes=probes
            )
        except TimeoutError:
            raise ProvisionError(
                f"{n}: guest {name} did not answer SSH on {host}:{port} within {spec.boot_timeout_s:g} s "
                f"(domain destroyed){vmspec.console_tail(console)}",
                hint="raise boot_timeout_s (software emulation boots slowly) or check the console log above",
            ) from None
        except ConnectionAbortedError:
            raise ProvisionError(
                f"{n}: guest {name} stopped while booting ({_state(dom)}){vmspec.console_tail(console)}"
            ) from None

    def _save_once(self, pci: list[Pci], drivers: dict[str, str | None], clock: PhaseClock) -> libvirtsave.Saved:
        """Boot one guest to its sshd and save it; the whole cost is the first restored instance's `save` phase."""
        t = time.perf_counter()
        name = f"{PREFIX}{self.run_id}-{next(_SEQ)}"
        vmspec.write_claim(self.dir, name, self.run_id, self.name)

        def boot(live: list[libvirt.virDomain]) -> socket.socket:
            return self._booted(name, pci, drivers, live, PhaseClock(), t)[0]

        saved = libvirtsave.save_once(self.conn, self.dir, name, f"target {self.name!r}", boot)
        clock.add("save", time.perf_counter() - t)
        return saved

    def _restored(
        self, name: str, live: list[libvirt.virDomain], clock: PhaseClock, t: float
    ) -> tuple[socket.socket, str, int]:
        assert self._saved is not None
        console = self.dir / f"{name}.console.log"

        def banner(dom: libvirt.virDomain, port: int, start: float) -> socket.socket:
            return self._banner(dom, name, "127.0.0.1", port, start, console, probes=1)

        guest = self.spec.ssh.serve_port
        sock, port, serve = libvirtsave.restore_instance(
            self.conn, self._saved, name, self.spec.ssh.host_port, live, clock, t, banner, serve=guest is not None
        )
        self._serve_fwd = (guest, serve) if guest and serve else None
        return sock, "127.0.0.1", port

    def _create(
        self, name: str, overlay: Path, pci: list[Pci], console: Path
    ) -> tuple[libvirt.virDomain, str, int | None]:
        """createXML (transient: gone once destroyed); a forwarded port taken in the meantime gets one retry."""
        for attempt in range(3):
            port = (self.spec.ssh.host_port or vmspec.free_port()) if self.spec.ssh.reach == "port_forward" else None
            guest = self.spec.ssh.serve_port
            serve = vmspec.free_port() if port is not None and guest else None
            self._serve_fwd = (guest, serve) if guest and serve else None
            xml = vmspec.render_domain(
                self.spec,
                name=name,
                run_id=self.run_id,
                target=self.name,
                overlay=overlay,
                pci=pci,
                host_port=port,
                console_log=console,
                placement=self._placement,
                serve_host_port=serve,
            )
            try:
                return self.conn.createXML(xml, 0), xml, port
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
        raise self.error(
            ProvisionError,
            f"guest got no address on network {self.spec.ssh.network!r} "
            f"within {self.spec.boot_timeout_s:g} s (no DHCP lease, no guest agent answer)",
        )

    def _devices_home(self, drivers: dict[str, str | None]) -> None:
        """After destroy, managed passthrough devices must be back on their host driver (nvidia, say)."""
        wrong = libvirtdev.devices_not_home(self.conn, drivers)
        if wrong:
            msg = f"target {self.name!r}: after the VM, passthrough devices did not return to the host: " + "; ".join(
                wrong
            )
            log.warning("%s", msg)
            self.warnings.append(msg)
            raise ProvisionError(msg, hint="virsh nodedev-reattach <device>, or reload the driver")
