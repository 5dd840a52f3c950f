"""`start: restore` without libvirt: whether an instance may be restored, the saved domain XML rewritten for a new
instance, and the command that makes a restored guest fresh (new entropy, the controller's clock).

A restored guest is the saved one byte for byte: the same RNG state, the clock of the moment it was saved, the
same page cache and the same ASLR layout of the processes already running. Entropy and clock are renewed over the
agent's connection before anything is measured; the rest is shared by design (docs/targets-libvirt.md).
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchbed.errors import ProvisionError

if TYPE_CHECKING:
    from benchbed.targets.libvirt import LibvirtTarget as LibvirtSpec

_HOSTFWD = re.compile(r"(hostfwd=tcp:127\.0\.0\.1:)(\d+)(-:\d+)")
SEED_BYTES = 512
BOOT_ONLY = ("startup.",)  # workloads that time a cold start: their instances always boot
SHARED = (  # what every instance restored from one save has in common (the fingerprint lists it)
    "the guest kernel's and running processes' ASLR layout",
    "the guest page cache as saved (files read before the save are warm; io.* drop their own files' pages)",
    "the guest's uptime and boot_id",
)


def start_mode(spec: LibvirtSpec, name: str, *, has_devices: bool, workload: str | None = None) -> tuple[str, str]:
    """("boot" | "restore", why): how the next instance starts. Raises when `restore!` cannot be honoured."""
    if spec.start == "boot":
        return "boot", "start: boot"
    if workload and workload.startswith(BOOT_ONLY):
        return "boot", f"{workload} times a cold start: booted"
    problem = None
    if has_devices:
        problem = "a domain with passthrough devices (gpus/mdevs: hostdev) cannot be saved"
    elif spec.ssh.reach != "port_forward":
        problem = "restore needs ssh.reach: port_forward (a restored guest keeps the saved one's MAC and address)"
    if problem is None:
        return "restore", "start: restore"
    if spec.start == "restore!":
        raise ProvisionError(
            f"target {name!r}: start: restore! — {problem}",
            hint="use start: restore (falls back to booting) or start: boot",
        )
    return "boot", f"target {name!r}: start: restore — {problem}; booting every instance instead"


def rewrite_saved_xml(
    xml: str, *, old: str, new: str, directory: Path, host_port: int, serve_host_port: int | None = None
) -> str:
    """The saved domain's XML for a new instance: its overlay, console log (files named `new`) and forwarded ports:
    SSH's (the template's first hostfwd) and, with `ssh.serve_port`, serve.latency's (its second).

    Everything else (name, UUID, devices, their addresses) must stay as saved: libvirt checks that the restored
    domain matches the saved one. A custom template without these elements cannot be restored."""
    prefix_old, prefix_new = f"{directory}/{old}.", f"{directory}/{new}."
    if prefix_old + "qcow2" not in xml:
        raise ProvisionError(
            f"the saved domain {old}'s XML has no overlay {prefix_old}qcow2 to replace",
            hint="keep the overlay disk of the shipped template, or use start: boot",
        )
    out = xml.replace(prefix_old, prefix_new)
    ports = [host_port] if serve_host_port is None else [host_port, serve_host_port]
    n = len(_HOSTFWD.findall(out))
    if n != len(ports):
        raise ProvisionError(
            f"the saved domain {old}'s XML has {n} hostfwd port forwards, not {len(ports)}",
            hint="keep the shipped template's -netdev user,hostfwd=… argument, or use start: boot",
        )
    new_ports = iter(ports)
    return _HOSTFWD.sub(lambda m: f"{m.group(1)}{next(new_ports)}{m.group(3)}", out)


def refresh_script(now: float | None = None, seed: bytes | None = None) -> str:
    """A shell command that mixes controller entropy into the guest's RNG and sets its clock to `now`.

    Writing to /dev/urandom mixes the bytes into the pool (without crediting entropy), which is enough to make two
    guests restored from one save diverge; `date -s` moves the wall clock the saved guest stopped at. It prints the
    guest's clock before the fix, so the skew it had is known. Run in the same round trip as the session's first
    command (the workdir probe). Under TCG each program a restored guest runs costs about a second (its code is
    translated afresh), so only `date -s` is one: the seed goes through the shell's `printf` (octal escapes) and the
    old clock is bash's $EPOCHREALTIME where the login shell is bash (`date` otherwise)."""
    data = seed if seed is not None else os.urandom(SEED_BYTES)
    octal = "".join(f"\\{b:03o}" for b in data)
    when = time.time() if now is None else now
    return (
        f"echo ${{EPOCHREALTIME:-$(date +%s.%N)}}; printf '{octal}' > /dev/urandom && date -u -s @{when:.6f} >/dev/null"
    )


def clock_behind(script: str, out: str) -> float | None:
    """How far (s) the restored guest's clock was behind when `script` (refresh_script) set it, from its output."""
    try:
        guest = float(out.split()[0])
        when = float(script.rsplit("@", 1)[1].split()[0])
    except (IndexError, ValueError):
        return None
    return when - guest


@functools.cache
def preimport_modules() -> tuple[str, ...]:
    """The standard-library modules the agent and the built-in workloads import (at the top or inside a function):
    the saved guest imports them once before the save, so the interpreter, its shared libraries and these modules'
    files are in the page cache every restored instance starts from. Read from the sources (no import here), so
    a module the guest's Python lacks is only skipped there. Third-party imports (numpy, torch) are left out:
    they are the workload's business, and a GPU library must not initialise before the save."""
    from benchbed.agent.build import PKG_ROOT

    found: set[str] = set()
    for sub in ("agent", "workloads"):
        for path in sorted((PKG_ROOT / sub).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module)
    return tuple(sorted(m for m in found if m.split(".", 1)[0] in sys.stdlib_module_names))


def preimport_script(python: str) -> str:
    """Shell: import preimport_modules() in the guest's `python`, each on its own (one the guest lacks is skipped);
    prints how many it imported."""
    code = (
        "import importlib\nn = 0\n"
        f"for m in {list(preimport_modules())!r}:\n"
        "    try:\n        importlib.import_module(m)\n        n += 1\n"
        "    except Exception:\n        pass\n"
        "print(n)\n"
    )
    return f"{shlex.quote(python)} -c {shlex.quote(code)}"
