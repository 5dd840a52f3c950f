"""`stack: IMAGE` on an ssh target: bare metal on the stack's userland, on a remote host.

The image lives in the controller's Docker engine. Its flattened filesystem is streamed once over the SSH
connection into `tar -x` on the host (as root: `sudo: true`, or a root login), into `<stack_cache>/<image id>`,
filled under a `.partial-*` name and renamed when complete, so a cut transfer leaves nothing that looks usable.
Every command then runs as `benchbed.stacks.chroot` builds it — the same private mount namespace, overlay and
binds as on the controller, with the host's own GPU driver libraries (its `ldconfig -p`).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence

import paramiko

from benchbed.errors import ProvisionError
from benchbed.stacks import chroot
from benchbed.stacks.rootfs import Image, exported, inspect
from benchbed.targets.sshlink import SshSession

UNPACK_TIMEOUT_S = 1800.0  # a multi-GB image over a slow link


class RemoteStack:
    """The stack's rootfs on one host and the argv wrapper for its commands."""

    def __init__(self, image: Image, rootfs: str, driver_libs: Sequence[str]) -> None:
        self.image = image
        self.rootfs = rootfs
        self.driver_libs = list(driver_libs)

    def wrap(self, argv: Sequence[str], workdir: str, binds: Sequence[str]) -> list[str]:
        """argv chrooted into the stack; the wrapper's variables travel as `env K=V` (sudo resets the environment)."""
        wrapped, extra = chroot.wrap(
            argv,
            rootfs=self.rootfs,
            workdir=workdir,
            binds=binds,
            image_env=self.image.env,
            driver_libs=self.driver_libs,
        )
        return ["env", *(f"{k}={v}" for k, v in extra.items()), *wrapped]


def prepare(session: SshSession, image_name: str, cache: str, *, sudo: bool, where: str) -> tuple[RemoteStack, float]:
    """(the host's stack, seconds spent unpacking it there: 0.0 when the host had it already)."""
    image = inspect(image_name)
    q = shlex.quote
    final = f"{cache.rstrip('/')}/{image.id.replace('sha256:', '')[:64]}"
    root = "" if sudo else '[ "$(id -u)" = 0 ] || exit 77; '
    as_root = "sudo -n " if sudo else ""
    probe = session.sh(f"{root}{as_root}test -d {q(final + '/rootfs')}", 60.0)
    if probe.rc == 77:
        raise ProvisionError(
            f"{where}: running on a stack (chroot into the image) needs root on the host",
            hint="log in as root, or set `sudo: true`",
        )
    took = 0.0
    if probe.rc != 0:
        t0 = time.perf_counter()
        _transfer(session, image, cache, final, as_root, where)
        took = time.perf_counter() - t0
    libs = chroot.host_driver_libraries(session.sh("/sbin/ldconfig -p 2>/dev/null || true", 60.0).stdout)
    return RemoteStack(image, f"{final}/rootfs", libs), took


def _transfer(session: SshSession, image: Image, cache: str, final: str, as_root: str, where: str) -> None:
    q = shlex.quote
    script = (
        f"set -e; mkdir -p {q(cache)}; P=$(mktemp -d {q(cache.rstrip('/') + '/.partial-ssh-XXXXXX')}); "
        "trap 'rm -rf \"$P\"' EXIT; trap 'exit 1' HUP INT TERM; mkdir \"$P/rootfs\"; "
        'tar -x --numeric-owner -p -C "$P/rootfs"; '
        f'mv -T "$P" {q(final)} 2>/dev/null || test -d {q(final + "/rootfs")}'
    )
    command = f"{as_root}sh -c {q(script)}"
    chan = session.transport.open_session()
    try:
        chan.exec_command(command)
        with exported(image.id) as chunks:
            for chunk in chunks:
                chan.sendall(chunk)
        chan.shutdown_write()
        deadline = time.monotonic() + UNPACK_TIMEOUT_S
        while not chan.exit_status_ready():
            if time.monotonic() > deadline:
                raise ProvisionError(f"{where}: unpacking stack {image.name!r} timed out")
            time.sleep(0.05)
        rc = chan.recv_exit_status()
        err = b""
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
    except (paramiko.SSHException, OSError, EOFError) as err_:
        raise ProvisionError(f"{where}: sending stack {image.name!r} failed: {err_ or type(err_).__name__}") from err_
    finally:
        chan.close()
    if rc != 0:
        last = (err.decode(errors="replace").strip().splitlines() or [f"exit {rc}"])[-1]
        raise ProvisionError(f"{where}: unpacking stack {image.name!r} into {cache} failed: {last}")
