"""The paramiko side of the `ssh` kind: host-key policies and the session (commands, copies, kill on abort).

Each instance gets its own connection, a private workdir (mode 700) and a fresh agent process, so every phase
is measured honestly from the controller: `connect` (TCP + SSH handshake + auth), `first_rtt` (first command
round trip: probe the python, create the workdir). Host keys are always verified; an unknown key is refused
unless `accept_new_host_key` is set, and a changed key is refused, always.

The remote side runs under a small POSIX-sh wrapper that records its pid — sshd makes every session its own
process group, so that pid is the group to kill when a command times out or the controller is interrupted.
Teardown removes the workdir in every case it can reach the host. When it cannot run at all (the harness was
SIGKILLed), the agent ends itself: its stdin is the channel, held open, which sshd closes with the connection.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import re
import select
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any

import paramiko

from benchbed.errors import TransportError
from benchbed.protocol import WATCH_ENV
from benchbed.targets.base import CommandResult, Endpoint, LineHandler, SessionImpl, Tail, TargetImpl
from benchbed.targets.streams import iter_lines


class Host(TargetImpl):
    """What a session needs of the provisioner that opened it (`sshhost.SshProvisioner`)."""

    where: str


log = logging.getLogger(__name__)

WORKDIR_PREFIX = "benchbed-"
CHUNK = 1 << 16
POLL_S = 0.5  # longest select() wait: bounds how late a deadline, an abort or a dropped link is noticed
KILL_WAIT_S = 10.0
NO_STATUS = 255  # what OpenSSH's client reports when it gets no exit status either
SIGNAL_MARK = "__benchbed_signal__ "
_SIGNAL_RE = re.compile(r"\n?" + re.escape(SIGNAL_MARK) + r"(\d+)\n?$")
# exit codes of the probe script (and of the command wrapper, for a workdir gone)
_NO_PYTHON, _NO_WORKDIR, _NO_SUDO = 90, 91, 92


# ── session ────────────────────────────────────────────────────────────────────────────────────────────────
class Deadline(Exception):
    """The command ran past its timeout."""


class _Aborted(Exception):
    """abort() was called (from another thread) while the command ran."""


class StderrTail:
    """stderr kept as a bounded tail; decoded incrementally so multi-byte characters split across chunks survive."""

    def __init__(self) -> None:
        self.tail = Tail()
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, data: bytes) -> None:
        self.tail.add(self._dec.decode(data))

    def text(self) -> str:
        self.tail.add(self._dec.decode(b"", final=True))
        return str(self.tail)


# ── one channel ──────────────────────────────────────────────────────────────────────────────────────────
def wrap_command(argv: Sequence[str], workdir: str, pidfile: str, *, sudo: bool) -> str:
    """cd to the workdir, record the session's pid (= its process group, sshd made it a session leader),
    run argv and turn a death by signal into a marker line the controller maps back to rc = -signal."""
    cmd = shlex.join(argv)
    if sudo:
        cmd = "sudo -n -- " + cmd
    q = shlex.quote
    # fd 3 carries the command's stderr; the shell's own (bash's "Killed" notices) goes to /dev/null
    return (
        f"cd {q(workdir)} || exit {_NO_WORKDIR}; echo $$ > {q(pidfile)}; exec 3>&2 2>/dev/null; "
        f"{cmd} 2>&3 3>&-; rc=$?; "
        f'if [ $rc -gt 128 ] && [ $rc -lt 193 ]; then echo "{SIGNAL_MARK}$((rc - 128))" >&3; fi; '
        f"rm -f {q(pidfile)}; exit $rc"
    )


def unwrap_result(argv: Sequence[str], rc: int, stderr: str, elapsed: float, timed_out: bool) -> CommandResult:
    """The command's result as the wrapper reported it: its signal marker turned back into rc = -signal."""
    m = _SIGNAL_RE.search(stderr)
    if m and rc > 128:
        rc, stderr = -int(m.group(1)), stderr[: m.start()] + "\n"
    elif rc == NO_STATUS:
        stderr += "benchbed: the remote command ended without an exit status (killed with its shell?)\n"
    return CommandResult(tuple(argv), rc, "", stderr, elapsed, timed_out)


def open_channel(
    target: Host, transport: paramiko.Transport, command: str, *, hold_stdin: bool = False
) -> paramiko.Channel:
    """A new channel on the session's connection, running `command`; a failure is one TransportError line.
    `hold_stdin`: the command's stdin stays open until the channel closes (with us, or with the connection), so an
    agent watching it ends itself when the harness dies; otherwise it gets EOF at once."""
    try:
        chan = transport.open_session(timeout=target.spec.connect_timeout_s)
    except (paramiko.SSHException, OSError, EOFError) as err:
        why = str(err) or type(err).__name__
        raise target.error(TransportError, f"cannot open a channel to {target.where}: {why}") from err
    try:
        chan.exec_command(command)
        if not hold_stdin:
            chan.shutdown_write()
    except (paramiko.SSHException, OSError, EOFError) as err:
        close_channel(chan)
        raise target.error(TransportError, f"cannot start a command on {target.where}: {err}") from err
    return chan


def close_channel(chan: paramiko.Channel) -> None:
    with suppress(Exception):
        chan.close()


def drain(
    chan: paramiko.Channel, err: StderrTail, deadline: float, aborted: threading.Event | None = None
) -> Iterator[bytes]:
    """stdout chunks until the remote side closes its output, draining stderr on the way."""
    fd = chan.fileno()  # a pipe paramiko sets when either stream has data, or at EOF / close
    while True:
        if chan.recv_stderr_ready():
            err.add(chan.recv_stderr(CHUNK))
        if chan.recv_ready():
            data = chan.recv(CHUNK)
            if data:
                yield data
                continue
        if (chan.eof_received or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
            return
        left = deadline - time.perf_counter()
        if left <= 0:
            raise Deadline
        if aborted is not None and aborted.is_set():
            raise _Aborted
        select.select([fd], [], [], min(left, POLL_S))


def exit_status(chan: paramiko.Channel, deadline: float, aborted: threading.Event | None = None) -> int | None:
    """The exit status once it arrives; None if the channel closed without one (the link dropped)."""
    while not chan.status_event.wait(min(POLL_S, max(deadline - time.perf_counter(), 0.0))):
        if time.perf_counter() >= deadline:
            raise Deadline
        if aborted is not None and aborted.is_set():
            raise _Aborted
    rc: int = chan.exit_status
    if rc == -1:  # paramiko's "no exit-status message": closed under us, or exit-signal from a killed shell
        transport = chan.get_transport()
        return None if chan.closed and not (transport and transport.is_active()) else NO_STATUS
    return rc


class SshSession(SessionImpl):
    """A live connection plus the private workdir on the host. Commands run with the workdir as cwd."""

    def __init__(self, target: Host, client: paramiko.SSHClient, workdir: str) -> None:
        self.target = target
        self.client = client
        self.workdir = workdir
        self._sftp: paramiko.SFTPClient | None = None
        self._count = 0
        self.aborted = threading.Event()
        self.unfinished: list[str] = []  # pid files of commands that may still run (connection lost)
        self.wrap: Callable[[Sequence[str]], list[str]] | None = None  # a stack's chroot around every command

    @property
    def transport(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise self.target.error(TransportError, f"connection to {self.target.where} is closed")
        return transport

    # (guest port, host port) a VM forwards from 127.0.0.1 next to SSH's (libvirt `serve_port`), else None
    forward: tuple[int, int] | None = None

    def serve_net(self) -> dict[str, Any]:
        if self.forward:  # QEMU's user-mode network reaches the guest's own interface, not its loopback
            return {"bind": "0.0.0.0", "port": self.forward[0]}
        return {"bind": "127.0.0.1", "port": 0}  # reached through an SSH tunnel (sshtunnel), on the far loopback

    def endpoint(self, port: int) -> AbstractContextManager[Endpoint | None]:
        if self.forward and port == self.forward[0]:
            return contextlib.nullcontext(Endpoint("127.0.0.1", self.forward[1], "forwarded-port"))
        from benchbed.targets.sshtunnel import tunnel

        return tunnel(self.transport, port)

    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    # -- files --
    def put(self, local: Path, remote: str) -> None:
        where = self.target.where
        try:
            if self._sftp is None:
                self._sftp = self.client.open_sftp()
            self._sftp.put(str(local), remote)
        except PermissionError as err:
            raise self.target.error(TransportError, f"permission denied writing {remote} on {where}") from err
        except (OSError, paramiko.SSHException, EOFError) as err:
            why = getattr(err, "strerror", None) or str(err) or type(err).__name__
            raise self.target.error(TransportError, f"cannot copy {local.name} to {where}:{remote}: {why}") from err

    # -- commands --
    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        """Run argv on the host; stdout lines go to on_line as they arrive, stderr is drained alongside (never a
        deadlock, whatever either side writes). On timeout, interrupt or a raising on_line the remote process
        group is killed before this returns or raises."""
        t0 = time.perf_counter()
        limit = timeout if timeout is not None else self.target.spec.command_timeout_s
        deadline = t0 + limit
        self._count += 1
        pidfile = f"{self.workdir}/.pid-{self._count}"
        if self.aborted.is_set():
            raise self.target.error(TransportError, "command aborted")
        # the agent ends itself, with the session's process group, once its stdin closes (the harness is gone);
        # set inside a stack's chroot, whose `env -i` would drop it, and past sudo, which resets the environment
        watched = ["env", f"{WATCH_ENV}=group", *argv]
        run = self.wrap(watched) if self.wrap else watched
        command = wrap_command(run, self.workdir, pidfile, sudo=self.target.spec.sudo)
        chan = open_channel(self.target, self.transport, command, hold_stdin=True)
        err = StderrTail()
        finished = timed_out = False
        try:
            try:
                rest = iter_lines(drain(chan, err, deadline, self.aborted), on_line)
                if rest:
                    on_line(rest)
                rc = exit_status(chan, deadline, self.aborted)
            except Deadline:
                timed_out, rc = True, -9
            except _Aborted:
                raise self.target.error(TransportError, "command aborted") from None
            if rc is None:
                raise self.target.error(
                    TransportError, f"connection to {self.target.where} dropped while {argv[0]!r} was running"
                )
            finished = not timed_out
        finally:
            if not finished:
                self._kill(pidfile)
            close_channel(chan)
        return unwrap_result(argv, rc, err.text(), time.perf_counter() - t0, timed_out)

    def sh(self, script: str, timeout: float) -> CommandResult:
        """A plumbing command (probe, kill, cleanup): plain sh, no wrapper, no cwd; works after abort()."""
        chan = open_channel(self.target, self.transport, script)
        err, out = StderrTail(), bytearray()
        t0 = time.perf_counter()
        try:
            try:
                for chunk in drain(chan, err, t0 + timeout):
                    out += chunk
                rc = exit_status(chan, t0 + timeout)
            except Deadline:
                raise self.target.error(
                    TransportError, f"a plumbing command timed out after {timeout:g} s on {self.target.where}"
                ) from None
        finally:
            close_channel(chan)
        if rc is None:
            raise self.target.error(TransportError, f"connection to {self.target.where} dropped")
        return CommandResult(
            ("sh", "-c", script), rc, out.decode(errors="replace"), err.text(), time.perf_counter() - t0
        )

    def abort(self) -> None:
        """Called from another thread (the runner on Ctrl-C): the running command is killed within POLL_S and
        stream() raises; teardown follows in the owning thread. Only a flag: closing a paramiko channel from
        another thread would close the pipe fd its owner is select()ing on."""
        self.aborted.set()

    def _kill(self, pidfile: str) -> None:
        """Best effort: kill the process group recorded in pidfile. Waits briefly for the wrapper to write it,
        in case we are interrupted within milliseconds of the start."""
        if not self.alive():
            self.unfinished.append(pidfile)
            return
        try:
            self.sh(kill_script([pidfile], self.target.spec.sudo, wait=True), KILL_WAIT_S)
        except TransportError as err:
            self.unfinished.append(pidfile)
            log.warning("%s", err)

    def close_sftp(self) -> None:
        if self._sftp is not None:
            with suppress(Exception):
                self._sftp.close()
            self._sftp = None


def kill_script(pidfiles: Sequence[str], sudo: bool, *, wait: bool) -> str:
    q = shlex.quote
    priv = "sudo -n " if sudo else ""
    parts = []
    for f in pidfiles:
        poll = f"i=0; while [ ! -s {q(f)} ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done; " if wait else ""
        parts.append(f"{poll}if [ -s {q(f)} ]; then {priv}kill -s KILL -- -$(cat {q(f)}) 2>/dev/null; rm -f {q(f)}; fi")
    return "; ".join([*parts, "true"])
