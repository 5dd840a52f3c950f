"""`start: restore`: a running guest saved once (memory to NAME.save, its disk NAME.qcow2 kept read-only), then
restored per instance onto a new overlay backed by that disk (files named after the instance), with a new port
forward. The domain keeps the saved one's name and UUID: libvirt refuses a restore that changes either.

The saved disk is never written after the save: each restored instance writes to its own qcow2 overlay over it, so
every instance sees exactly the bytes the saved guest saw. Restores of one save share its name, so they must not
overlap: a target's instances never do (one lane runs a machine's cases one after another).
"""

from __future__ import annotations

import shlex
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import libvirt

from benchbed.errors import ProvisionError
from benchbed.interrupts import held_signals
from benchbed.targets import vmrestore, vmspec
from benchbed.targets.base import PhaseClock
from benchbed.targets.libvirtboot import Booter
from benchbed.targets.sshlink import SshSession


class PortTaken(Exception):
    """The forwarded port was taken between choosing it and QEMU binding it: choose another."""


@dataclass(frozen=True)
class Saved:
    name: str
    directory: Path
    xml: str  # the domain XML stored in the save file
    size: int  # bytes of the save file

    @property
    def file(self) -> Path:
        return self.directory / f"{self.name}.save"

    @property
    def disk(self) -> Path:
        return self.directory / f"{self.name}.qcow2"

    def remove(self) -> None:
        vmspec.remove_instance_files(self.directory, self.name)


def save_once(
    conn: libvirt.virConnect,
    directory: Path,
    name: str,
    n: str,
    boot: Callable[[list[libvirt.virDomain]], None],
) -> Saved:
    """Boot a guest and make it ready (`boot` binds its domain into the list as soon as it exists), then save it. Its
    disk becomes every restored instance's read-only backing; on any failure or interrupt nothing of it is left."""
    live: list[libvirt.virDomain] = []
    try:
        boot(live)
        with held_signals():
            return save(conn, live.pop(), directory, name, n)
    except BaseException:
        with held_signals():
            for dom in live:
                with suppress(libvirt.libvirtError):
                    dom.destroy()
            vmspec.remove_instance_files(directory, name)
        raise


def restore_instance(
    conn: libvirt.virConnect,
    saved: Saved,
    name: str,
    booter: Booter,
    live: list[libvirt.virDomain],
    clock: PhaseClock,
) -> tuple[socket.socket, int]:
    """overlay (over the saved disk) → restore (this instance's files, new ports; the domain bound into `live`)
    → resume (until sshd's banner): the socket and SSH's forwarded port; with `ssh.serve_port` the booter's
    serve_fwd is this instance's serve.latency forward."""
    t = time.perf_counter()
    fixed_port, guest = booter.spec.ssh.host_port, booter.spec.ssh.serve_port
    vmspec.create_overlay(saved.disk, saved.directory / f"{name}.qcow2")
    clock.add("overlay", time.perf_counter() - t)
    t = time.perf_counter()
    for attempt in range(3):  # a free port taken before QEMU binds it gets another try
        port = fixed_port or vmspec.free_port()
        serve_port = vmspec.free_port() if guest else None
        try:
            with held_signals():
                live.append(restore(conn, saved, name, port, serve_port))
            break
        except PortTaken as err:
            if attempt == 2 or fixed_port:
                raise ProvisionError(
                    f"cannot restore {saved.file}: forwarded port {port} is taken ({err})",
                    hint="free the port, or drop ssh.host_port to take a free one",
                ) from err
    clock.add("restore", time.perf_counter() - t)
    t = time.perf_counter()
    console = saved.directory / f"{name}.console.log"
    sock = booter.banner(live[0], name, "127.0.0.1", port, t, console, probes=1)  # it has its address: no extras
    clock.add("resume", time.perf_counter() - t)
    booter.serve_fwd = (guest, serve_port) if guest and serve_port else None
    return sock, port


def save(conn: libvirt.virConnect, dom: libvirt.virDomain, directory: Path, name: str, n: str) -> Saved:
    """virDomainSave: the guest's memory to a file, the (transient) domain gone, its disk flushed and frozen."""
    path = directory / f"{name}.save"
    try:
        dom.save(str(path))
        xml = conn.saveImageGetXMLDesc(str(path), 0)
    except libvirt.libvirtError as err:
        with suppress(libvirt.libvirtError):
            dom.destroy()
        raise ProvisionError(
            f"{n}: cannot save guest {name}: {err.get_error_message()}", hint="use start: boot"
        ) from err
    (directory / f"{name}.qcow2").chmod(0o444)  # a backing file from now on: read by every restored instance
    return Saved(name, directory, xml, path.stat().st_size)


def restore(
    conn: libvirt.virConnect, saved: Saved, name: str, host_port: int, serve_host_port: int | None = None
) -> libvirt.virDomain:
    """The saved guest, running again on overlay NAME.qcow2 (created by the caller) and `host_port`."""
    dxml = vmrestore.rewrite_saved_xml(
        saved.xml,
        old=saved.name,
        new=name,
        directory=saved.directory,
        host_port=host_port,
        serve_host_port=serve_host_port,
    )
    try:
        conn.restoreFlags(str(saved.file), dxml, libvirt.VIR_DOMAIN_SAVE_RUNNING)
        return conn.lookupByName(saved.name)
    except libvirt.libvirtError as err:
        msg = err.get_error_message() or str(err)
        if "host forwarding" in msg:
            raise PortTaken(msg) from err
        raise ProvisionError(f"cannot restore {saved.file} as {name}: {msg}", hint="use start: boot") from err


def refresh_prelude(sudo: bool) -> tuple[Callable[[], str], str, str]:
    """The restored guest's refresh (new entropy, the controller's clock) as the ssh session's prelude: run in its
    first round trip, before anything else, so before anything is measured; made when sent, so its clock is fresh."""

    def script() -> str:
        text = vmrestore.refresh_script()
        return f"sudo -n sh -c {shlex.quote(text)}" if sudo else text

    return (
        script,
        "could not reseed the restored guest's RNG and set its clock",
        "the guest needs a POSIX shell and date, and root (ssh.user: root, or ssh.sudo: true)",
    )


def preimport(session: SshSession, python: str, n: str) -> int:
    """Import the workloads' standard-library modules in the guest about to be saved: how many it imported."""
    res = session.sh(vmrestore.preimport_script(python), 300)
    try:
        count = int(res.stdout.split()[-1]) if res.rc == 0 else -1
    except (IndexError, ValueError):
        count = -1
    if count < 0:
        tail = (res.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise ProvisionError(f"{n}: the guest to be saved could not run {python}: {tail}", hint="set `python:`")
    return count
