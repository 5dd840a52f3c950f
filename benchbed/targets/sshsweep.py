"""The `ssh` kind's sweep: the workdirs a killed harness left on its hosts.

Teardown removes a workdir even on Ctrl-C; only a harness that never ran its teardown (SIGKILL, a lost controller)
leaves one. The probe writes the harness's host:pid into every workdir (`.benchbed-owner`, as `local` does), so a
sweep can tell a dead run's from a live one. Per host and parent: one connection and one command, which lists the
claimed workdirs, then reads back on its stdin which of them to remove — only the controller can judge whether one
of its own pids is alive (owner.py) — ends a command still working in one (its process group, recorded by the
command wrapper, checked by its cwd so a reused pid is never hit) and removes it.
"""

from __future__ import annotations

import getpass
import logging
import shlex
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import paramiko

from benchbed.errors import ProvisionError, TransportError
from benchbed.owner import OWNER_FILE, owner_alive
from benchbed.targets.ssh import SshTarget as SshSpec
from benchbed.targets.sshhost import SshProvisioner, workdir_parent
from benchbed.targets.sshlink import (
    WORKDIR_PREFIX,
    Deadline,
    SshSession,
    StderrTail,
    close_channel,
    drain,
    exit_status,
    open_channel,
)

log = logging.getLogger(__name__)

LISTED = "listed"  # the line between the listing and the removals
MAX_HOSTS_AT_ONCE = 8  # a fleet's hosts are swept side by side: an unreachable one costs one connect timeout


@dataclass(frozen=True)
class Leftover:
    """A claimed workdir on a host: its name under the parent and the host:pid of the harness that made it."""

    name: str
    owner: str


def sweep_script(parent_sh: str, *, sudo: bool) -> str:
    """The remote side. Prints `in<TAB>parent`, `dir<TAB>name<TAB>owner` for each claimed workdir of the login
    user, then `listed`; then takes names on stdin, ends the process groups still working in each (the wrapper's
    `.pid-*` files; a group counts only while its leader's cwd is that workdir) and prints `removed<TAB>name`."""
    priv = "sudo -n " if sudo else ""
    p, f = WORKDIR_PREFIX, OWNER_FILE
    return (
        f'cd -- {parent_sh} 2>/dev/null || exit 0; here=$(pwd -P); printf "in\\t%s\\n" "$PWD"; '
        f"for d in {p}*; do "
        f'[ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] && [ -f "$d/{f}" ] || continue; '
        f'o=; {{ IFS= read -r o < "$d/{f}"; }} 2>/dev/null; printf "dir\\t%s\\t%s\\n" "$d" "$o"; done; '
        f"echo {LISTED}; "
        f"while IFS= read -r d; do case $d in */*) continue;; {p}?*) ;; *) continue;; esac; "
        f'[ -d "$d" ] && [ ! -L "$d" ] || continue; '
        f'for g in "$d"/.pid-*; do [ -f "$g" ] || continue; pg=; {{ IFS= read -r pg < "$g"; }} 2>/dev/null; '
        f'case $pg in ""|*[!0-9]*) continue;; esac; '
        f'[ "$(readlink "/proc/$pg/cwd" 2>/dev/null)" = "$here/$d" ] && {priv}kill -s KILL -- "-$pg" 2>/dev/null; '
        f'done; {priv}rm -rf -- "$d" && [ ! -e "$d" ] && printf "removed\\t%s\\n" "$d"; done; true'
    )


def parse_lines(text: str, tag: str) -> list[list[str]]:
    """The tab-separated fields of the lines tagged `tag`."""
    rows = [line.split("\t") for line in text.splitlines()]
    return [row[1:] for row in rows if len(row) > 1 and row[0] == tag]


def parse_listing(text: str) -> list[Leftover]:
    """The claimed workdirs the listing names (a name that is not a workdir's is dropped, never sent back)."""
    found = []
    for fields in parse_lines(text, "dir"):
        name, owner = fields[0], "\t".join(fields[1:])
        if name.startswith(WORKDIR_PREFIX) and "/" not in name and len(name) > len(WORKDIR_PREFIX):
            found.append(Leftover(name, owner.strip()))
    return found


def judge(found: Sequence[Leftover], *, everything: bool) -> tuple[list[Leftover], list[Leftover]]:
    """(the workdirs to remove, those left because another controller made them). owner.py's rule: a harness
    of this host whose pid is gone is dead; one of another host cannot be judged here and counts as alive."""
    remove, foreign = [], []
    for item in found:
        if everything or not owner_alive(item.owner):
            remove.append(item)
        elif item.owner.rpartition(":")[0] != socket.gethostname():
            foreign.append(item)
    return remove, foreign


def sweep(specs: Sequence[SshSpec], *, everything: bool) -> list[str]:
    """Sweep each distinct host, user and parent once (a host listed twice, or by a group, is one)."""
    hosts: dict[tuple[str, int, str, str, str | None], tuple[SshSpec, bool]] = {}
    for spec in specs:
        key = (spec.host, spec.port, spec.user or getpass.getuser(), workdir_parent(spec)[1], spec.proxy_jump)
        first, sudo = hosts.get(key, (spec, False))
        hosts[key] = (first, sudo or spec.sudo)  # a sudo run may have left root's files in its workdir
    if not hosts:
        return []
    with ThreadPoolExecutor(min(MAX_HOSTS_AT_ONCE, len(hosts)), thread_name_prefix="ssh-sweep") as pool:
        done = pool.map(lambda job: sweep_host(job[0], sudo=job[1], everything=everything), hosts.values())
        return [line for lines in done for line in lines]


def sweep_host(spec: SshSpec, *, sudo: bool, everything: bool) -> list[str]:
    """What was removed on one host; a host that cannot be reached is one warning, and skipped."""
    host = SshProvisioner("cleanup", spec, "cleanup")
    host.dialer.label = "ssh cleanup"
    try:
        client, jump = host.dialer.connect()
    except ProvisionError as err:
        log.warning("%s; its workdirs are not swept%s", err.args[0], f" (hint: {err.hint})" if err.hint else "")
        return []
    try:
        return _converse(host, SshSession(host, client, ""), sudo=sudo, everything=everything)
    except TransportError as err:
        log.warning("ssh cleanup on %s stopped: %s", host.where, err)
        return []
    finally:
        client.close()
        if jump is not None:
            jump.close()


def _converse(host: SshProvisioner, session: SshSession, *, sudo: bool, everything: bool) -> list[str]:
    """Run the sweep script: read its listing, answer with the workdirs to remove, collect what it removed."""
    script = sweep_script(workdir_parent(host.spec)[1], sudo=sudo)
    chan = open_channel(host, session.transport, f"sh -c {shlex.quote(script)}", hold_stdin=True)
    err, out, where = StderrTail(), bytearray(), host.where
    doomed: list[Leftover] | None = None
    deadline = time.perf_counter() + host.spec.command_timeout_s
    try:
        for chunk in drain(chan, err, deadline):
            out += chunk
            if doomed is None and (out.startswith(f"{LISTED}\n".encode()) or f"\n{LISTED}\n".encode() in out):
                doomed, foreign = judge(parse_listing(out.decode(errors="replace")), everything=everything)
                for item in foreign:
                    log.info("ssh cleanup: %s on %s left: made by %s, another controller", item.name, where, item.owner)
                chan.sendall("".join(f"{item.name}\n" for item in doomed).encode())
                chan.shutdown_write()
        exit_status(chan, deadline)
    except Deadline:
        raise TransportError(f"timed out after {host.spec.command_timeout_s:g} s") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise TransportError(f"connection lost: {exc or type(exc).__name__}") from exc
    finally:
        close_channel(chan)
    text = out.decode(errors="replace")
    parent = next(iter(parse_lines(text, "in")), [workdir_parent(host.spec)[0]])[0]
    removed = {fields[0] for fields in parse_lines(text, "removed")}
    lines = []
    for item in doomed or []:
        if item.name in removed:
            lines.append(f"ssh workdir {where}:{parent}/{item.name} (harness {item.owner})")
        else:
            why = (err.text().strip().splitlines() or ["no reason given"])[-1]
            log.warning("ssh cleanup: could not remove %s/%s on %s: %s", parent, item.name, where, why)
    return lines
