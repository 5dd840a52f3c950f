"""`libvirt`: a fresh transient VM per instance, reached with the same paramiko session as `ssh`.

check passthrough devices (a bad PCI address fails before anything starts) → `overlay` + `create` + `boot`
(`libvirtboot`), or with `start: restore` `overlay` + `restore` + `resume` from a guest saved once (`libvirtsave`)
→ `connect` + `first_rtt` (the ssh kind on the polled socket; a restored guest's refresh rides on it). Teardown destroys
the domain and removes the overlay on success, failure and Ctrl-C, then checks that passed-through devices went
back to their host driver. Domains carry benchbed metadata (run, controller host:pid) and overlays a claim
file, so `benchbed cleanup` and the sweep at run start can remove what a killed harness left.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import libvirt

from benchbed.errors import ProvisionError, TransportError
from benchbed.interrupts import held_signals
from benchbed.targets import libvirtboot, libvirtdev, libvirtsave, vmplace, vmrestore, vmspec
from benchbed.targets.base import PhaseClock, TargetImpl
from benchbed.targets.libvirtboot import Booter
from benchbed.targets.libvirtinfo import with_stack
from benchbed.targets.sshhost import SshProvisioner
from benchbed.targets.sshlink import SshSession
from benchbed.targets.vmspec import PREFIX, Pci

if TYPE_CHECKING:  # the kind module imports this one on use; only the type comes back
    from benchbed.targets.libvirt import LibvirtTarget as LibvirtSpec

log = logging.getLogger(__name__)

SAVE_CONNECT_S = 60.0  # the guest to be saved, just booted (daemons still starting), gets this long for SSH
_SEQ = itertools.count(1)  # instance numbers, unique across targets within this controller process


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


# ── target ─────────────────────────────────────────────────────────────────────────────────────────────────
class LibvirtProvisioner(TargetImpl):
    def __init__(self, name: str, spec: LibvirtSpec, run_id: str) -> None:
        super().__init__(name, spec, run_id)
        self.spec: LibvirtSpec = spec
        self.dir = vmspec.overlay_dir(spec)
        self._conn: libvirt.virConnect | None = None
        self._stale = False  # the last teardown lost the connection to libvirtd
        self.booter = Booter(name, spec, run_id, self.dir)
        self._stack: dict[str, Any] = {}
        self.warnings: list[str] = []
        self._saved: libvirtsave.Saved | None = None  # the running guest saved once, with start: restore
        self.workload: str | None = None  # the next instance's workload (next_case)
        self.started: str | None = None  # how the latest instance started: booted | restored
        self.clock_behind: float | None = None  # how far (s) the latest restored guest's clock was behind
        self.preimported = 0  # standard-library modules the saved guest imported before its save

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
        out = {**self.booter.described, **self._stack}
        if "libvirt" in out:
            start: dict[str, Any] = {"mode": self.spec.start, "latest": self.started}
            if self._saved is not None:
                start.update(save_file_bytes=self._saved.size, shared=list(vmrestore.SHARED))
                start.update(clock_behind_s=self.clock_behind, preimported_modules=self.preimported)
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

    @contextmanager
    def provision(self) -> Iterator[SshSession]:
        self._clock = clock = PhaseClock()
        if self.spec.stack and not self._stack:  # built once per image id and host: its cost is `stack_build`
            self.spec, self._stack, build_s = with_stack(self.spec)
            self.booter.spec = self.spec
            if build_s:
                clock.add("stack_build", build_s)
        spec, n = self.spec, f"target {self.name!r}"
        t = time.perf_counter()
        vmspec.files_exist(spec, n)
        pci, drivers = libvirtdev.check_devices(self.conn, spec, self.name)  # before anything exists that needs undoing
        cells = libvirtdev.host_cells(self.conn) if spec.numa != "off" else {}
        self.booter.placement = vmplace.plan(spec, self.name, libvirtdev.gpu_numa_node(self.conn, pci), cells)
        mode = self._start_mode(bool(pci or spec.mdevs))
        name = f"{PREFIX}{self.run_id}-{next(_SEQ)}"
        live: list[libvirt.virDomain] = []  # what the finally destroys, bound as soon as it exists
        try:
            vmspec.write_claim(self.dir, name, self.run_id, self.name)
            if mode == "restore":
                if self._saved is None:  # once per target and run: boot, save; charged to this instance
                    self._saved = self._save_once(pci, drivers, clock)
                sock, port = libvirtsave.restore_instance(self.conn, self._saved, name, self.booter, live, clock)
                host = "127.0.0.1"
            else:
                sock, host, port = self.booter.boot(self.conn, name, pci, drivers, live, clock, t)
            self.started = "restored" if mode == "restore" else "booted"
            dom = live[0]
            ssh = SshProvisioner(self.name, vmspec.guest_ssh_spec(self.spec, self.dir, host, port, name), self.run_id)
            ssh.remove_workdir = False  # the VM is destroyed right after
            if mode == "restore":  # fresh entropy and clock, in the same round trip as the workdir probe
                ssh.prelude = libvirtsave.refresh_prelude(spec.ssh.sudo)
            try:
                with ssh.provision(sock) as session:
                    session.forward = self.booter.serve_fwd  # serve.latency reaches the guest's port through it
                    clock.phases.update(ssh.startup_phases())
                    if ssh.prelude:
                        self.clock_behind = vmrestore.clock_behind(ssh.prelude_sent, ssh.prelude_out)
                    yield session
            except TransportError as err:  # say why the link dropped when the domain knows
                state = libvirtboot.state(dom)
                if state != "running":
                    raise TransportError(f"{n}: guest {name} stopped mid-case ({state}): {err}") from err
                raise
        finally:
            with held_signals():  # a second Ctrl-C or SIGTERM waits until the domain and its files are gone
                for dom in live:
                    self._destroy(dom, name)
                vmspec.remove_instance_files(self.dir, name)
        if not self._stale:  # with libvirtd gone, nothing can be asked about the devices
            libvirtdev.ensure_home(self.conn, drivers, self.name, self.warnings)

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

    def _save_once(self, pci: list[Pci], drivers: dict[str, str | None], clock: PhaseClock) -> libvirtsave.Saved:
        """Boot one guest, import the workloads' standard-library modules in it (their files then sit in the page
        cache every restored guest starts from) and save it; the whole cost is the first instance's `save` phase."""
        t = time.perf_counter()
        name = f"{PREFIX}{self.run_id}-{next(_SEQ)}"
        vmspec.write_claim(self.dir, name, self.run_id, self.name)

        def boot(live: list[libvirt.virDomain]) -> None:
            sock, host, port = self.booter.boot(self.conn, name, pci, drivers, live, PhaseClock(), t)
            guest = vmspec.guest_ssh_spec(self.spec, self.dir, host, port, name)  # a guest just up is at its slowest:
            guest = guest.model_copy(update={"connect_timeout_s": max(guest.connect_timeout_s, SAVE_CONNECT_S)})
            ssh = SshProvisioner(self.name, guest, self.run_id)
            ssh.remove_workdir = False
            with ssh.provision(sock) as session:
                self.preimported = libvirtsave.preimport(session, self.spec.python, f"target {self.name!r}")

        saved = libvirtsave.save_once(self.conn, self.dir, name, f"target {self.name!r}", boot)
        clock.add("save", time.perf_counter() - t)
        return saved
