"""A file into a running container over the exec stream: the one way of shipping that works in every runtime.

The engine's archive API writes into the container's root filesystem from the host side. A runtime with its own
kernel does not see that after start: gVisor caches the rootfs it was started with (and mounts its own tmpfs over
an empty /tmp), Kata shares it into a VM. A process inside the container sees what the workload sees, so the file
goes in through one: `python -c RECEIVE dest size`, fed `size` bytes on stdin, writes dest atomically and prints
the count. The size is in argv, so no half-close of the hijacked socket is needed (podman's compatible API and
SSH-tunnelled engines do not all pass one on).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import docker.errors
from docker.utils.socket import frames_iter

RECEIVE = (
    "import os, sys\n"
    "dest, size = sys.argv[1], int(sys.argv[2])\n"
    "data = sys.stdin.buffer.read(size)\n"
    "if len(data) != size:\n"
    "    sys.exit(f'got {len(data)} of {size} bytes')\n"
    "tmp = dest + '.part'\n"
    "with open(tmp, 'wb') as f:\n"
    "    f.write(data)\n"
    "os.chmod(tmp, 0o644)\n"
    "os.replace(tmp, dest)\n"
    "print(size)\n"
)


class ShipError(Exception):
    """Why the file did not arrive (the caller names the target)."""


def send_file(api: Any, container_id: str, local: Path, remote: str, *, python: str, user: str, timeout: float) -> None:
    """Copy `local` to `remote` inside the container through an exec of `python`; raises ShipError."""
    data = local.read_bytes()
    argv = [python, "-c", RECEIVE, str(PurePosixPath(remote)), str(len(data))]
    try:
        exec_id = api.exec_create(container_id, argv, stdin=True, stdout=True, stderr=True, user=user)["Id"]
        sock = api.exec_start(exec_id, socket=True)
    except docker.errors.APIError as err:
        raise ShipError(f"exec failed: {err.explanation or err}") from err
    raw = getattr(sock, "_sock", sock)  # SocketIO over a unix/TCP socket; SSH tunnels hand back a socket-like
    out: list[bytes] = []
    try:
        if hasattr(raw, "settimeout"):
            raw.settimeout(timeout)
        raw.sendall(data)
        out = [chunk for _, chunk in frames_iter(sock, tty=False)]
    except OSError as err:  # a timeout too
        raise ShipError(f"exec stream broke after {len(data)} bytes were offered: {err}") from err
    finally:
        sock.close()
        if raw is not sock:  # closing the SocketIO wrapper leaves the socket itself open
            raw.close()
    try:
        rc = api.exec_inspect(exec_id).get("ExitCode")
    except docker.errors.APIError as err:
        raise ShipError(f"cannot read the copy's exit status: {err.explanation or err}") from err
    text = b"".join(out).decode("utf-8", "replace").strip()
    if rc != 0 or text.splitlines()[-1:] != [str(len(data))]:
        raise ShipError(f"copy to {remote} exited {rc}: {text[-200:] or 'no output'}")
