"""The paramiko side of the `ssh` kind: connecting (host keys always verified, proxy_jump), the probe that makes a
private workdir, and teardown that removes it even over a fresh connection when the first one dropped."""

from __future__ import annotations

import errno
import getpass
import logging
import shlex
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko

from benchbed.errors import ProvisionError, TransportError
from benchbed.targets.base import PhaseClock
from benchbed.targets.ssh import SshTarget as SshSpec
from benchbed.targets.sshlink import (
    _NO_PYTHON,
    _NO_SUDO,
    _NO_WORKDIR,
    WORKDIR_PREFIX,
    Host,
    SshSession,
    UnknownHostKey,
    _AcceptNew,
    _jump,
    _RejectUnknown,
    _tcp,
    fingerprint,
    kill_script,
    known_hosts_name,
)

log = logging.getLogger(__name__)


class SshProvisioner(Host):
    """One host. Holds no connection between instances: provision() connects, and always cleans up and closes.
    Anything that reaches a machine over SSH (a VM through a forwarded port, say) can reuse it with an SshSpec."""

    def __init__(self, name: str, spec: SshSpec, run_id: str) -> None:
        super().__init__(name, spec, run_id)
        self.spec: SshSpec = spec
        self.user = spec.user or getpass.getuser()
        self.where = f"{self.user}@{spec.host}:{spec.port}"
        self.known_hosts = Path(spec.known_hosts).expanduser()
        self.key = Path(spec.key).expanduser() if spec.key else None
        self.remove_workdir = True  # off for a machine that is destroyed right after (a VM): saves a round trip

    @contextmanager
    def provision(self, sock: socket.socket | None = None) -> Iterator[SshSession]:
        """`sock`: an already connected socket to use instead of dialing (a VM's port, polled until sshd spoke)."""
        self._clock = clock = PhaseClock()
        t0 = time.perf_counter()
        client, jump = self.connect(sock)
        clock.add("connect", time.perf_counter() - t0)
        session: SshSession | None = None
        try:
            t1 = time.perf_counter()
            session = SshSession(self, client, "")
            session.workdir = self._probe(session)
            clock.add("first_rtt", time.perf_counter() - t1)
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

    # -- connection --
    def connect(self, sock: socket.socket | None = None) -> tuple[paramiko.SSHClient, paramiko.SSHClient | None]:
        """An authenticated client (and the jump host's client, to be closed after it), or one clear error."""
        spec = self.spec
        if self.key is not None and not self.key.is_file():
            raise self.error(ProvisionError, f"key file {self.key} not found")
        if sock is not None or not spec.proxy_jump:
            return self._client(spec.host, spec.port, self.user, sock), None
        try:
            juser, jhost, jport = _jump(spec.proxy_jump, self.user)
        except ValueError as err:
            raise self.error(ProvisionError, f"proxy_jump {spec.proxy_jump!r} is not [user@]host[:port]") from err
        jump = self._client(jhost, jport, juser, None, via="jump host ")
        try:
            transport = jump.get_transport()
            assert transport is not None
            try:
                chan = transport.open_channel(
                    "direct-tcpip", (spec.host, spec.port), ("127.0.0.1", 0), timeout=spec.connect_timeout_s
                )
            except (paramiko.SSHException, OSError, EOFError) as err:
                raise self.error(
                    ProvisionError, f"jump host {jhost}:{jport} cannot reach {spec.host}:{spec.port}: {err}"
                ) from err
            return self._client(spec.host, spec.port, self.user, chan), jump
        except BaseException:
            jump.close()
            raise

    def _client(
        self, host: str, port: int, user: str, sock: paramiko.Channel | socket.socket | None, via: str = ""
    ) -> paramiko.SSHClient:
        spec = self.spec
        where = f"{via}{user}@{host}:{port}"
        client = paramiko.SSHClient()
        try:
            try:
                client.load_host_keys(str(self.known_hosts))
            except FileNotFoundError:
                pass  # nothing known yet: every key is unknown
            except (OSError, paramiko.SSHException) as err:
                raise self.error(ProvisionError, f"cannot read known_hosts {self.known_hosts}: {err}") from err
            client.set_missing_host_key_policy(
                _AcceptNew(self.known_hosts) if spec.accept_new_host_key else _RejectUnknown()
            )
            t = spec.connect_timeout_s
            try:
                if sock is None:
                    sock = _tcp(host, port, t)
                client.connect(
                    host,
                    port=port,
                    username=user,
                    key_filename=str(self.key) if self.key else None,
                    allow_agent=self.key is None,
                    look_for_keys=self.key is None,
                    timeout=t,
                    banner_timeout=t,
                    auth_timeout=t,
                    channel_timeout=t,
                    sock=sock,
                )
            except Exception as err:
                if isinstance(sock, socket.socket):
                    sock.close()
                raise self._connect_error(err, host, port, where) from err
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(30)
            return client
        except BaseException:
            client.close()
            raise

    def _connect_error(self, err: Exception, host: str, port: int, where: str) -> ProvisionError:
        n = f"target {self.name!r}"
        hn = known_hosts_name(host, port)
        if isinstance(err, UnknownHostKey):
            return ProvisionError(
                f"{n}: host key of {hn} is unknown ({fingerprint(err.key)}, not in {self.known_hosts}); refusing",
                hint="check the fingerprint out of band, then add it to known_hosts or set accept_new_host_key: true",
            )
        if isinstance(err, paramiko.BadHostKeyException):
            return ProvisionError(
                f"{n}: host key of {hn} has CHANGED: server offers {fingerprint(err.key)}, {self.known_hosts} has "
                f"{fingerprint(err.expected_key)}; refusing (possible man-in-the-middle)",
                hint=f"if the host was reinstalled, remove the old key: ssh-keygen -f {self.known_hosts} -R '{hn}'",
            )
        if isinstance(err, paramiko.PasswordRequiredException):
            return ProvisionError(
                f"{n}: key {self.key} is passphrase-protected", hint="load it into ssh-agent and omit `key:`"
            )
        if isinstance(err, paramiko.AuthenticationException):
            how = f"key {self.key}" if self.key else "the SSH agent and default keys"
            return ProvisionError(
                f"{n}: authentication failed for {where} with {how}",
                hint="check `user:` and `key:`, and that the public key is in the host's authorized_keys",
            )
        if isinstance(err, paramiko.ssh_exception.NoValidConnectionsError):
            refused = all(getattr(e, "errno", None) == errno.ECONNREFUSED for e in err.errors.values())
            why = "connection refused" if refused else str(err)
            return ProvisionError(f"{n}: cannot connect to {where}: {why}", hint="is sshd running there?")
        if isinstance(err, ConnectionRefusedError):
            return ProvisionError(f"{n}: cannot connect to {where}: connection refused", hint="is sshd running there?")
        if isinstance(err, socket.gaierror):
            return ProvisionError(f"{n}: cannot resolve host {host!r}: {err.strerror}")
        if isinstance(err, TimeoutError):
            return ProvisionError(f"{n}: no answer from {where} within {self.spec.connect_timeout_s:g} s")
        if isinstance(err, (paramiko.SSHException, EOFError)):
            return ProvisionError(f"{n}: SSH handshake with {where} failed: {err or type(err).__name__}")
        if isinstance(err, OSError):
            return ProvisionError(f"{n}: cannot connect to {where}: {err.strerror or err}")
        return ProvisionError(f"{n}: cannot connect to {where}: {type(err).__name__}: {err}")

    # -- remote workdir --
    def _probe(self, session: SshSession) -> str:
        """First command: python present? (sudo usable?) then a fresh private workdir (mktemp -d: mode 700)."""
        spec, q = self.spec, shlex.quote
        if spec.workdir:
            parent = spec.workdir
            parent_sh = f'"$HOME"/{q(parent[2:])}' if parent.startswith("~/") else q(parent)
        else:
            parent, parent_sh = "$TMPDIR or /tmp", '"${TMPDIR:-/tmp}"'
        template = q(f"/{WORKDIR_PREFIX}{self.run_id}-XXXXXX")
        script = [f"command -v {q(spec.python)} >/dev/null 2>&1 || exit {_NO_PYTHON}"]
        if spec.sudo:
            script.append(f"sudo -n true || exit {_NO_SUDO}")
        script.append(f"umask 077; mkdir -p {parent_sh} && mktemp -d {parent_sh}{template} || exit {_NO_WORKDIR}")
        res = session.sh("; ".join(script), self.spec.command_timeout_s)
        last_err = (res.stderr.strip().splitlines() or ["no stderr"])[-1]
        n = f"target {self.name!r}"
        if res.rc == _NO_PYTHON:
            raise ProvisionError(
                f"{n}: python {spec.python!r} not found on {self.where}", hint="install python3 or set `python:`"
            )
        if res.rc == _NO_SUDO:
            raise ProvisionError(f"{n}: `sudo: true` but sudo -n fails on {self.where}: {last_err}")
        if res.rc == _NO_WORKDIR:
            raise ProvisionError(f"{n}: cannot create a private workdir under {parent} on {self.where}: {last_err}")
        path = res.stdout.strip().splitlines()[-1:] if res.rc == 0 else []
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
            client, jump = self.connect()
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
