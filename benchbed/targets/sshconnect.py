"""Dialing an SSH host with paramiko: host-key policies (always verified; an unknown key refused unless
`accept_new_host_key`, a changed one always), the jump host, TCP_NODELAY, and one clear error per failure."""

from __future__ import annotations

import base64
import errno
import getpass
import hashlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko

from benchbed.errors import ProvisionError

if TYPE_CHECKING:
    from benchbed.targets.ssh import SshTarget as SshSpec

log = logging.getLogger(__name__)
_KNOWN_HOSTS_LOCK = threading.Lock()


# ── host keys ──────────────────────────────────────────────────────────────────────────────────────────────
def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's notation (`ssh-ed25519 SHA256:…`), so users can compare it with `ssh-keygen -lf`."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def known_hosts_name(host: str, port: int) -> str:
    """The name OpenSSH and paramiko file a host under: plain for port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


class UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"unknown host key for {hostname}: {fingerprint(key)}")
        self.hostname = hostname
        self.key = key


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """The default: a host we have never seen is refused (paramiko refuses changed keys before any policy)."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise UnknownHostKey(hostname, key)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """`accept_new_host_key: true`: trust a never-seen key once and append it to known_hosts (like OpenSSH's
    StrictHostKeyChecking=accept-new). Appends, never rewrites, so comments and hashed entries survive."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _KNOWN_HOSTS_LOCK:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        line = "\n" + line
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            except OSError as err:
                raise paramiko.SSHException(f"cannot record the new host key in {self.path}: {err.strerror}") from err
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("accepted new host key for %s (%s) and saved it to %s", hostname, fingerprint(key), self.path)


# ── dialing ─────────────────────────────────────────────────────────────────────────────────────────────────
def _jump(spec: str, default_user: str) -> tuple[str, str, int]:
    """`[user@]host[:port]` → (user, host, port)."""
    user, _, hostport = spec.rpartition("@")
    host, port = hostport, 22
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 22
    elif hostport.count(":") == 1:
        host, _, p = hostport.partition(":")
        port = int(p)
    return user or default_user, host, port


def _tcp(host: str, port: int, timeout: float) -> socket.socket:
    """TCP_NODELAY matters: with Nagle on, every SSH request/reply pair waits out a 40 ms delayed ACK."""
    sock = socket.create_connection((host, port), timeout=timeout)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class SshDialer:
    """Connecting as one spec says: host keys verified, the key or agent, an optional jump host; every failure
    becomes one ProvisionError naming the target (`label`) and what to check."""

    def __init__(self, spec: SshSpec, label: str) -> None:
        self.spec = spec
        self.label = label
        self.user = spec.user or getpass.getuser()
        self.known_hosts = Path(spec.known_hosts).expanduser()
        self.key = Path(spec.key).expanduser() if spec.key else None

    def error(self, message: str, *, hint: str | None = None) -> ProvisionError:
        return ProvisionError(f"{self.label}: {message}", hint=hint)

    def connect(self, sock: socket.socket | None = None) -> tuple[paramiko.SSHClient, paramiko.SSHClient | None]:
        """An authenticated client (and the jump host's client, to be closed after it), or one clear error."""
        spec = self.spec
        if self.key is not None and not self.key.is_file():
            raise self.error(f"key file {self.key} not found")
        if sock is not None or not spec.proxy_jump:
            return self._client(spec.host, spec.port, self.user, sock), None
        try:
            juser, jhost, jport = _jump(spec.proxy_jump, self.user)
        except ValueError as err:
            raise self.error(f"proxy_jump {spec.proxy_jump!r} is not [user@]host[:port]") from err
        jump = self._client(jhost, jport, juser, None, via="jump host ")
        try:
            transport = jump.get_transport()
            assert transport is not None
            try:
                chan = transport.open_channel(
                    "direct-tcpip", (spec.host, spec.port), ("127.0.0.1", 0), timeout=spec.connect_timeout_s
                )
            except (paramiko.SSHException, OSError, EOFError) as err:
                raise self.error(f"jump host {jhost}:{jport} cannot reach {spec.host}:{spec.port}: {err}") from err
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
                raise self.error(f"cannot read known_hosts {self.known_hosts}: {err}") from err
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
        n = self.label
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
