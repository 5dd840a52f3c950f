"""The OCI runtime behind a container target, as the engine knows it: which runtimes it has registered, and the
facts the fingerprint records (name, binary, configured arguments, version). Works for dockerd and for podman's
Docker-compatible API alike.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import docker.errors

from benchbed.boundary import SANDBOXED, runtime_class
from benchbed.errors import ProvisionError
from benchbed.targets.base import TargetImpl


def engine_runtimes(client: Any) -> tuple[dict[str, Any], str | None]:
    """Registered runtimes (name ▸ {path, runtimeArgs}) and the default one; empty when the engine won't say."""
    try:
        info = client.info()
    except docker.errors.DockerException:
        return {}, None
    return dict(info.get("Runtimes") or {}), info.get("DefaultRuntime")


def check_known(target: TargetImpl, name: str | None, registered: dict[str, Any], config_hint: str) -> None:
    """An unknown runtime is one line that lists what the engine has, before anything is created."""
    if name and registered and name not in registered:
        raise target.error(
            ProvisionError,
            f"runtime {name!r} is not registered with the engine (registered: {', '.join(sorted(registered))})",
            hint=f"register it ({config_hint}; docs/runtimes.md) or pick one of those",
        )


def runtime_facts(client: Any, name: str | None, *, local_engine: bool) -> dict[str, Any]:
    """What the fingerprint says about the runtime: the name the engine used, its binary, its configured
    arguments (gVisor's platform and network mode live there) and its version."""
    registered, default = engine_runtimes(client)
    used = name or default
    entry = registered.get(used or "", {}) if used else {}
    path = entry.get("path") or used
    return {
        "name": used,
        "default": name is None,
        "path": path,
        "args": list(entry.get("runtimeArgs") or []),
        "version": _version(client, used, path, local_engine=local_engine),
        "sandboxed": runtime_class(used) == SANDBOXED,
    }


def _version(client: Any, name: str | None, path: str | None, *, local_engine: bool) -> str | None:
    """The runtime binary's own `--version` when the engine runs on this host, else what the engine reports."""
    if local_engine and path:
        binary = shutil.which(path)
        if binary:
            try:
                out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
            except (OSError, subprocess.SubprocessError):
                out = None
            first = (out.stdout.strip().splitlines() or [""])[0] if out and out.returncode == 0 else ""
            if first:
                return first
    try:
        components = client.version().get("Components") or []
    except docker.errors.DockerException:
        return None
    for comp in components:
        if name and name in str(comp.get("Name", "")).lower():
            return str(comp.get("Version", "")).strip().splitlines()[0] or None
    return None
