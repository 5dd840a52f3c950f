"""The parts of the `libvirt` target that need no libvirt: domain XML, overlays, PCI addresses, the overlay sweep.

Kept apart from targets/libvirt.py so `benchbed cleanup` can remove a dead run's overlays, and tests can check
the XML, on a machine without libvirt-python.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from benchbed.errors import ConfigError, ProvisionError
from benchbed.owner import owner_alive, owner_label
from benchbed.targets.ssh import SshTarget
from benchbed.targets.vmplace import VmPlacement

if TYPE_CHECKING:  # the kind module imports this one on use; only the type comes back
    from benchbed.targets.libvirt import LibvirtTarget as LibvirtSpec

METADATA_NS = "https://benchbed.dev/xmlns/libvirt/1"
PREFIX = "benchbed-"
TEMPLATE = Path(__file__).resolve().parent / "vm" / "domain.xml.j2"
QCOW2_MAGIC = b"QFI\xfb"
_PCI = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")
POLL_S = 0.05  # a refused probe of the guest's sshd is retried this soon: the most the harness adds to the boot
SILENT_S = 0.25  # a probe silent this long may be stuck (slirp holds it while the guest has no IP): add another
MAX_PROBES = 4  # in flight at once: each costs the guest an sshd fork, and sshd drops floods (MaxStartups)
PROBE_LIFE_S = 5.0  # a probe that saw nothing for this long is dropped


@dataclass(frozen=True, order=True)
class Pci:
    domain: str
    bus: str
    slot: str
    function: str

    @classmethod
    def parse(cls, text: str) -> Pci:
        m = _PCI.match(text.lower())
        if not m:
            raise ValueError(f"{text!r} is not a PCI address like 0000:17:00.0")
        return cls(*m.groups())

    @classmethod
    def from_xml(cls, attrs: dict[str, str]) -> Pci:
        """From an <address domain='0x0000' bus='0x17' slot='0x00' function='0x0'/> element's attributes."""

        def hexval(key: str, width: int) -> str:
            return f"{int(attrs[key], 16):0{width}x}"

        return cls(hexval("domain", 4), hexval("bus", 2), hexval("slot", 2), hexval("function", 1))

    def __str__(self) -> str:
        return f"{self.domain}:{self.bus}:{self.slot}.{self.function}"

    @property
    def nodedev(self) -> str:
        """libvirt's node device name (virsh nodedev-list): pci_0000_17_00_0."""
        return f"pci_{self.domain}_{self.bus}_{self.slot}_{self.function}"

    def same_device(self, other: Pci) -> bool:
        return (self.domain, self.bus, self.slot) == (other.domain, other.bus, other.slot)


def default_overlay_dir() -> Path:
    """/var/lib is reachable by the unprivileged user qemu:///system runs guests as; a home directory is not."""
    if os.geteuid() == 0:
        return Path("/var/lib/benchbed/overlays")
    return Path("~/.cache/benchbed/overlays").expanduser()


def overlay_dir(spec: LibvirtSpec) -> Path:
    return Path(spec.overlay_dir).expanduser() if spec.overlay_dir else default_overlay_dir()


def files_exist(spec: LibvirtSpec, n: str) -> None:
    """The base disk, kernel and initrd the spec names are there (before anything is created)."""
    for key in ("image", "kernel", "initrd"):
        value = getattr(spec, key)
        if value and not Path(value).expanduser().is_file():
            raise ProvisionError(f"{n}: {key} {value} not found", hint="scripts/build-vm-image builds a test guest")


def image_format(path: Path) -> str:
    with path.open("rb") as f:
        return "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"


def create_overlay(base: Path, overlay: Path) -> None:
    """A copy-on-write qcow2 on top of base: the base is only read, every instance starts from the same bytes."""
    fmt = image_format(base)
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", fmt, str(overlay)]
    try:
        subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
    except FileNotFoundError as err:
        raise ProvisionError("qemu-img not found", hint="apt-get install qemu-utils") from err
    except subprocess.CalledProcessError as err:
        raise ProvisionError(f"cannot create overlay {overlay} on {base}: {err.stderr.strip()}") from err
    overlay.chmod(0o644)


def write_claim(directory: Path, name: str, run_id: str, target: str) -> Path:
    """NAME.json beside the overlay, written first: who owns it, so a sweep never takes a live run's files."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    claim = directory / f"{name}.json"
    claim.write_text(json.dumps({"run": run_id, "target": target, "owner": owner_label(), "name": name}))
    return claim


def instance_files(directory: Path, name: str) -> list[Path]:
    return [directory / f"{name}{ext}" for ext in (".qcow2", ".save", ".console.log", ".known_hosts", ".json")]


def remove_instance_files(directory: Path, name: str) -> None:
    for path in instance_files(directory, name):  # the claim last: until then a sweep still knows whose it is
        with suppress(FileNotFoundError):
            path.unlink()


def sweep_overlays(directory: Path, *, everything: bool = False) -> list[str]:
    """Remove overlays (and save files, console logs, known_hosts) of runs whose harness is gone."""
    removed: list[str] = []
    if not directory.is_dir():
        return removed
    for claim in sorted(directory.glob(f"{PREFIX}*.json")):
        try:
            info: dict[str, Any] = json.loads(claim.read_text())
        except (OSError, ValueError):
            info = {}
        if everything or not owner_alive(str(info.get("owner", ""))):
            name = claim.name.removesuffix(".json")
            remove_instance_files(directory, name)
            removed.append(f"overlay {directory / name}.qcow2 (run {info.get('run')}, target {info.get('target')})")
    return removed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def load_template(path: str | None) -> jinja2.Template:
    """The shipped domain template, or the user's; autoescaped, since every value ends up in XML."""
    file = Path(path).expanduser() if path else TEMPLATE
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(file.parent)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    try:
        return env.get_template(file.name)
    except jinja2.TemplateNotFound as err:
        raise ConfigError(f"domain template {file} not found") from err
    except jinja2.TemplateSyntaxError as err:
        raise ConfigError(f"domain template {file}:{err.lineno}: {err.message}") from err


def effective_cpu_mode(spec: LibvirtSpec) -> str | None:
    """host-passthrough needs KVM; under software emulation it means QEMU's `max` model (every feature TCG can
    emulate). QEMU's default, qemu64, lacks SSE4.2/POPCNT (x86-64-v2), which pip's numpy 2 and torch wheels
    require: their import dies with SIGILL."""
    if spec.virt_type == "qemu" and spec.cpu_mode == "host-passthrough":
        return "maximum"
    return spec.cpu_mode


def render_domain(
    spec: LibvirtSpec,
    *,
    name: str,
    run_id: str,
    target: str,
    overlay: Path,
    pci: list[Pci],
    host_port: int | None,
    console_log: Path | None,
    placement: VmPlacement | None = None,
    serve_host_port: int | None = None,
) -> str:
    template = load_template(spec.template)
    placed = placement or VmPlacement()
    try:
        return template.render(
            name=name,
            metadata_ns=METADATA_NS,
            run_id=run_id,
            owner=owner_label(),
            target=target,
            virt_type=spec.virt_type,
            machine=spec.machine,
            memory_mib=spec.memory,
            vcpus=spec.vcpus,
            cpu_mode=effective_cpu_mode(spec),
            hugepages=spec.hugepages,
            pinning=spec.vcpu_pinning or [],
            numa_node=placed.numa_node,
            vcpu_cpuset=placed.vcpu_cpuset,
            kernel=str(Path(spec.kernel).expanduser()) if spec.kernel else None,
            initrd=str(Path(spec.initrd).expanduser()) if spec.initrd else None,
            cmdline=spec.cmdline,
            overlay=str(overlay),
            console_log=str(console_log) if console_log else None,
            pci=pci,
            mdevs=[u.lower() for u in spec.mdevs],
            reach=spec.ssh.reach,
            host_port=host_port,
            guest_port=spec.ssh.port,
            network=spec.ssh.network,
            serve_host_port=serve_host_port,
            serve_guest_port=spec.ssh.serve_port,
        )
    except jinja2.TemplateError as err:
        raise ConfigError(f"target {target!r}: domain template: {err}") from err


# ── guest sshd ─────────────────────────────────────────────────────────────────────────────────────────────
def wait_for_banner(
    host: str,
    port: int,
    deadline: float,
    alive: Callable[[], bool],
    poll_s: float = POLL_S,
    max_probes: int = MAX_PROBES,
) -> socket.socket:
    """A connected socket whose peer has sent an SSH banner (peeked, not consumed: paramiko reads it).

    Through QEMU's user-mode forward the TCP connect succeeds at once whatever the guest does, so connect alone
    proves nothing: a guest without sshd yet shows as a connection closed at once (retried after poll_s), and a
    probe opened before the guest had an IP may hang until slirp retries. So while the newest probe has been
    silent for SILENT_S another one starts beside it (at most max_probes), and the first to show `SSH-` wins. A
    restored guest has its address already, so one probe is enough there: more only make it fork more sshds.
    """
    probes: dict[socket.socket, float] = {}
    next_probe = newest = 0.0
    try:
        while True:
            now = time.perf_counter()
            if now >= deadline:
                raise TimeoutError
            if now >= next_probe:
                if not alive():
                    raise ConnectionAbortedError
                next_probe = now + poll_s
                if not probes or (now - newest >= SILENT_S and len(probes) < max_probes):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    s.connect_ex((host, port))
                    probes[s] = newest = now
            ready, _, _ = select.select(list(probes), [], [], max(0.0, min(next_probe, deadline) - now))
            for s in ready:
                try:
                    head = s.recv(4, socket.MSG_PEEK)
                except BlockingIOError:
                    continue
                except OSError:
                    head = b""
                if head.startswith(b"SSH-"):
                    del probes[s]
                    s.setblocking(True)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return s
                if not head or not b"SSH-".startswith(head):
                    del probes[s]
                    s.close()
            for s, t in list(probes.items()):
                if time.perf_counter() - t > PROBE_LIFE_S:
                    del probes[s]
                    s.close()
    finally:
        for s in probes:
            s.close()


def guest_ssh_spec(spec: LibvirtSpec, known_dir: Path, host: str, port: int, name: str) -> SshTarget:
    """How the ssh kind reaches the guest: the VM's `ssh:` settings, with a private known_hosts per instance."""
    s = spec.ssh
    fields: dict[str, Any] = {
        "kind": "ssh",
        "host": host,
        "port": port,
        "user": s.user,
        "key": s.key,
        "python": spec.python,
        "workdir": s.workdir,
        "sudo": s.sudo,
        "connect_timeout_s": s.connect_timeout_s,
        "command_timeout_s": s.command_timeout_s,
    }
    if s.host_key or s.accept_new_host_key:  # a private known_hosts per instance: never the user's file
        known = known_dir / f"{name}.known_hosts"
        text = ""
        if s.host_key:
            kind, b64 = Path(s.host_key).expanduser().read_text().split()[:2]
            text = f"{host if port == 22 else f'[{host}]:{port}'} {kind} {b64}\n"
        known.write_text(text)
        fields.update(known_hosts=str(known), accept_new_host_key=not s.host_key)
    return SshTarget(**fields)


def console_tail(console: Path, lines: int = 8) -> str:
    """The end of the guest's serial console, for an error that says why it never answered."""
    try:
        tail = console.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return ("; guest console ends with:\n  " + "\n  ".join(tail)) if tail else "; the guest console is empty"
