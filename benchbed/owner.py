"""Who created an object: `host:pid` of the harness, stored on every container, VM, overlay and run directory.

Stdlib-only and below both the results store and the targets: the store asks whether a `running` run's writer is
still alive, the sweeps ask whether a leftover's harness is gone.
"""

from __future__ import annotations

import os
import socket

OWNER_FILE = ".benchbed-owner"  # host:pid of the harness, in every workdir it makes (local, ssh): a sweep's evidence


def owner_label() -> str:
    """host:pid of this harness, stored with everything it creates so a sweep can tell live runs from dead ones."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """Is the harness named by `host:pid` still running? Another host's cannot be judged, so it counts as alive."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return pid_alive(int(pid))


def pid_alive(pid: int) -> bool:
    """Is process `pid` on this host still running (one we may not signal counts as running)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
