"""Why an exec in a container ended: its exit code, and the container's own account when it knows better (OOM
kill, container killed or stopped). Apart from the session so streaming and post-mortem stay small and separate."""

from __future__ import annotations

import time
from typing import Any

import docker.errors
import requests.exceptions

# What a call to the engine raises when the engine itself is gone or dropped the connection (dockerd stopped,
# socket removed): the SDK's own errors and the HTTP transport's underneath it, which it does not wrap.
# The SDK reads an exec's stream from the raw socket, so a reset connection can surface as a bare ConnectionError.
ENGINE_ERRORS: tuple[type[Exception], ...] = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    ConnectionError,
)


def exec_exit(api: Any, container: Any, exec_id: str, memory: str | None) -> tuple[int, str | None]:
    """Exit code of the exec, and why it died when the container knows better (OOM, container killed).
    `memory` is the container's configured limit, named in an OOM reason."""
    try:
        info = api.exec_inspect(exec_id)
        rc = -1 if info.get("ExitCode") is None else int(info["ExitCode"])
        state = settled_state(container, rc)
    except requests.exceptions.RequestException as err:
        return -1, f"Docker engine connection lost mid-case ({err.__class__.__name__})"
    except docker.errors.DockerException as err:
        return -1, f"container vanished mid-case ({err.__class__.__name__})"
    if state.get("OOMKilled") or (rc == 137 and oom_kills(container) > 0):
        limit = memory or "the host's memory"
        return rc, f"OOM-killed in the container (memory limit {limit})"
    if not state.get("Running", False):
        return rc, f"container stopped mid-case ({state.get('Status')}, exit {state.get('ExitCode')})"
    return rc, None


def settled_state(container: Any, rc: int) -> dict[str, Any]:
    """After a SIGKILL (rc 137) the exec's stream ends before dockerd records the container's death: give
    the state up to 2 s to catch up, so a killed container is not reported as a bare exit code."""
    deadline = time.monotonic() + (2.0 if rc in (137, -1) else 0.0)
    while True:
        container.reload()
        state: dict[str, Any] = container.attrs.get("State", {})
        if not state.get("Running", False) or state.get("OOMKilled") or time.monotonic() >= deadline:
            return state
        time.sleep(0.05)


def oom_kills(container: Any) -> int:
    """OOM kills of any process in the container, not only its init (cgroup v2 memory.events, v1 oom_control)."""
    files = ["/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"]
    try:
        res = container.exec_run(["cat", *files])
    except ENGINE_ERRORS:
        return 0
    for line in res.output.decode(errors="replace").splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0
