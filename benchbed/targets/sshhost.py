"""The paramiko side of the `ssh` kind: connecting (host keys always verified, proxy_jump), the probe that makes a
private workdir, and teardown that removes it even over a fresh connection when the first one dropped."""

from __future__ import annotations

import logging
import shlex
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from benchbed.errors import ProvisionError, TransportError
from benchbed.owner import OWNER_FILE, owner_label
from benchbed.targets.base import PhaseClock
from benchbed.targets.ssh import SshTarget as SshSpec
from benchbed.targets.sshconnect import SshDialer
from benchbed.targets.sshlink import _NO_PYTHON, _NO_SUDO, _NO_WORKDIR, WORKDIR_PREFIX, Host, SshSession, kill_script

if TYPE_CHECKING:
    from benchbed.targets.sshstack import RemoteStack

log = logging.getLogger(__name__)
_PRELUDE_FAILED = 93


def workdir_parent(spec: SshSpec) -> tuple[str, str]:
    """(how to name it, how sh writes it) for the directory the per-instance workdirs are made in."""
    if not spec.workdir:
        return "$TMPDIR or /tmp", '"${TMPDIR:-/tmp}"'
    parent = spec.workdir
    return parent, f'"$HOME"/{shlex.quote(parent[2:])}' if parent.startswith("~/") else shlex.quote(parent)


class SshProvisioner(Host):
    """One host. Holds no connection between instances: provision() connects, and always cleans up and closes.
    Anything that reaches a machine over SSH (a VM through a forwarded port, say) can reuse it with an SshSpec."""

    def __init__(self, name: str, spec: SshSpec, run_id: str) -> None:
        super().__init__(name, spec, run_id)
        self.spec: SshSpec = spec
        self.dialer = SshDialer(spec, f"target {name!r}")
        self.user = self.dialer.user
        self.where = f"{self.user}@{spec.host}:{spec.port}"
        self.remove_workdir = True  # off for a machine that is destroyed right after (a VM): saves a round trip
        # A command run in the first round trip, before the workdir probe (a restored VM's refresh: made when sent,
        # so a clock it carries is fresh), and what to say when it fails; the script as sent is kept in
        # prelude_sent and its stdout (all but the probe's last line) in prelude_out.
        self.prelude: tuple[Callable[[], str], str, str] | None = None  # (make the script, failure message, hint)
        self.prelude_sent = self.prelude_out = ""
        self.owner = owner_label()  # written into the workdir: `sshsweep` removes it once this harness is gone
        self._stack_image: dict[str, str] | None = None
        self._remote: RemoteStack | None = None

    @contextmanager
    def provision(self, sock: socket.socket | None = None) -> Iterator[SshSession]:
        """`sock`: an already connected socket to use instead of dialing (a VM's port, polled until sshd spoke)."""
        self._clock = clock = PhaseClock()
        t0 = time.perf_counter()
        client, jump = self.dialer.connect(sock)
        clock.add("connect", time.perf_counter() - t0)
        session: SshSession | None = None
        try:
            t1 = time.perf_counter()
            session = SshSession(self, client, "")
            session.workdir = self._probe(session)
            clock.add("first_rtt", time.perf_counter() - t1)
            if self.spec.stack:
                self._on_stack(session, self.spec.stack)
            yield session
        finally:
            try:
                if session is not None and session.workdir:
                    session.close_sftp()
                    if self.remove_workdir:
                        self._cleanup(session)
            finally:
                client.close()
                if jump is not None:
                    jump.close()

    def _on_stack(self, session: SshSession, image: str) -> None:
        """Commands of this session run chrooted into the stack, unpacked on the host first if it is not yet."""
        from benchbed.targets.sshstack import prepare

        if self._remote is None:  # once per run and host: the image, the host's cache and its driver libraries
            self._remote, took = prepare(
                session, image, self.spec.stack_cache, sudo=self.spec.sudo, where=f"target {self.name!r}"
            )
            if took:
                self._clock.add("stack_unpack", took)
        stack = self._remote
        binds = [self.spec.scratch_dir] if self.spec.scratch_dir else []
        workdir = session.workdir
        session.wrap = lambda argv: stack.wrap(argv, workdir, binds)
        self._stack_image = {"name": stack.image.name, "id": stack.image.id, "boundary": "chroot"}

    def describe(self) -> dict[str, Any]:
        return {"stack_image": self._stack_image} if self._stack_image else {}

    # -- remote workdir --
    def _probe(self, session: SshSession) -> str:
        """First command: python present? (sudo usable?) then a fresh private workdir (mktemp -d: mode 700)."""
        spec, q = self.spec, shlex.quote
        parent, parent_sh = workdir_parent(spec)
        template = q(f"/{WORKDIR_PREFIX}{self.run_id}-XXXXXX")
        self.prelude_sent = self.prelude[0]() if self.prelude else ""
        script = [f"{{ {self.prelude_sent}; }} || exit {_PRELUDE_FAILED}"] if self.prelude else []
        script.append(f"command -v {q(spec.python)} >/dev/null 2>&1 || exit {_NO_PYTHON}")
        if spec.sudo:
            script.append(f"sudo -n true || exit {_NO_SUDO}")
        mkdir = f"{{ [ -d {parent_sh} ] || mkdir -p {parent_sh}; }}"  # a builtin test: no program run when it exists
        script.append(f"umask 077; {mkdir} && bb_wd=$(mktemp -d {parent_sh}{template}) || exit {_NO_WORKDIR}")
        # the workdir names its harness (owner.py) from the start, so a sweep can tell a killed run's from a live one
        claim = f'printf "%s\\n" {q(self.owner)} > "$bb_wd"/{OWNER_FILE}'
        script.append(f'{claim} || {{ rm -rf "$bb_wd"; exit {_NO_WORKDIR}; }}; printf "%s\\n" "$bb_wd"')
        res = session.sh("; ".join(script), self.spec.command_timeout_s)
        last_err = (res.stderr.strip().splitlines() or ["no stderr"])[-1]
        n = f"target {self.name!r}"
        if res.rc == _NO_PYTHON:
            raise ProvisionError(
                f"{n}: python {spec.python!r} not found on {self.where}", hint="install python3 or set `python:`"
            )
        if res.rc == _PRELUDE_FAILED and self.prelude:
            raise ProvisionError(f"{n}: {self.prelude[1]}: {last_err}", hint=self.prelude[2])
        if res.rc == _NO_SUDO:
            raise ProvisionError(f"{n}: `sudo: true` but sudo -n fails on {self.where}: {last_err}")
        if res.rc == _NO_WORKDIR:
            raise ProvisionError(f"{n}: cannot create a private workdir under {parent} on {self.where}: {last_err}")
        lines = res.stdout.strip().splitlines()
        path = lines[-1:] if res.rc == 0 else []
        self.prelude_out = "\n".join(lines[:-1])
        if not path or not path[0].startswith("/"):
            raise ProvisionError(f"{n}: workdir probe on {self.where} failed (rc {res.rc}): {last_err}")
        return path[0]

    def _cleanup(self, session: SshSession) -> None:
        """Kill what may still run, remove the workdir. Over the live connection, or a fresh one if it dropped."""
        rm = ("sudo -n " if self.spec.sudo else "") + f"rm -rf -- {shlex.quote(session.workdir)}"
        script = kill_script(session.unfinished, self.spec.sudo, wait=False) + "; " + rm
        try:
            if session.alive():
                session.sh(script, self.spec.command_timeout_s)
                return
        except TransportError:
            pass
        try:  # the link dropped: one fresh attempt, so nothing is left behind on a host that is still up
            client, jump = self.dialer.connect()
        except ProvisionError as err:
            log.warning("target %r: could not remove %s on %s: %s", self.name, session.workdir, self.where, err)
            return
        try:
            SshSession(self, client, session.workdir).sh(script, self.spec.command_timeout_s)
        except TransportError as err:
            log.warning("target %r: could not remove %s on %s: %s", self.name, session.workdir, self.where, err)
        finally:
            client.close()
            if jump is not None:
                jump.close()
