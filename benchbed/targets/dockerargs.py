"""The Docker side that needs no engine: a container's create arguments from its spec, and what a failed create,
start or first exec means (one line naming the target, and the fix)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import docker.errors
import docker.types

from benchbed.errors import ProvisionError
from benchbed.owner import owner_label
from benchbed.targets.base import CommandResult, TargetImpl

if TYPE_CHECKING:
    from benchbed.targets.containerspec import ContainerFields
    from benchbed.targets.docker import DockerTarget as DockerSpec

LABEL_RUN = "benchbed.run"
LABEL_TARGET = "benchbed.target"
LABEL_OWNER = "benchbed.controller"  # host:pid of the harness, so a sweep can tell a live run from a dead one
SLEEPER = "import signal, time\nsignal.signal(signal.SIGTERM, lambda *_: exit(0))\nwhile True: time.sleep(3600)"
_MISSING_EXE = ("executable file not found", "no such file or directory")


def _size(text: str | None) -> int | str | None:
    return text.lower() if text else None


def create_args(spec: ContainerFields, name: str, run_id: str) -> dict[str, Any]:
    """The container as the spec asks for it: labelled for the sweep, idle until the agent is exec'd (the keys
    docker and podman targets share; `gpu_requests` adds docker's GPUs)."""
    args: dict[str, Any] = {
        "entrypoint": [spec.python, "-c", SLEEPER],
        "command": [],
        "labels": {LABEL_RUN: run_id, LABEL_TARGET: name, LABEL_OWNER: owner_label()},
        "network_mode": spec.network,
        "privileged": spec.privileged,
        "environment": spec.env,
        "detach": True,
    }
    if spec.cpus:
        args["nano_cpus"] = int(spec.cpus * 1e9)
    if spec.memory:
        args["mem_limit"] = _size(spec.memory)
    if spec.shm_size:
        args["shm_size"] = _size(spec.shm_size)
    if spec.oci_runtime:
        args["runtime"] = spec.oci_runtime
    if spec.user:
        args["user"] = spec.user
    if spec.volumes:
        args["volumes"] = list(spec.volumes)
    if spec.publish is not None:  # only ever on the host's loopback (an ephemeral port)
        args["ports"] = {f"{spec.publish}/tcp": ("127.0.0.1", None)}
    return args


def gpu_requests(spec: DockerSpec) -> list[docker.types.DeviceRequest]:
    """`gpus: all | N | [ids]` as Docker device requests (the NVIDIA runtime hook serves them)."""
    gpus = spec.gpus
    if gpus is None:
        return []
    if gpus == "all":
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, int):
        return [docker.types.DeviceRequest(count=gpus, capabilities=[["gpu"]])]
    return [docker.types.DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])]


_RUNSC_NETWORK = (
    'add "--network=none" to its runtimeArgs (/etc/docker/daemon.json, then SIGHUP dockerd; docs/runtimes.md)'
)


def start_error(target: TargetImpl, spec: ContainerFields, err: docker.errors.APIError) -> ProvisionError:
    """What the engine's refusal to create or start means, and what to do about it (podman's API names only the
    runtime's exit status; the runtime's own words are in its service's log: `engine_log_tail`)."""
    text = str(err.explanation or err)
    log_tail = getattr(target, "engine_log_tail", None)
    if "exit status" in text and callable(log_tail):
        said = log_tail()
        text = f"{text}: {said}" if said else text
    if "could not select device driver" in text:
        return target.error(
            ProvisionError,
            f"GPUs requested but this Docker engine has no NVIDIA runtime ({text})",
            hint="install nvidia-container-toolkit and restart dockerd, or drop `gpus:`",
        )
    if "cannot run with network enabled in root network namespace" in text:
        return target.error(
            ProvisionError,
            f"runtime {spec.oci_runtime!r} (gVisor) refuses to start with networking in the engine's namespace",
            hint=getattr(target, "runsc_network_hint", _RUNSC_NETWORK),
        )
    if "error setting rlimit" in text:
        return target.error(
            ProvisionError,
            f"the runtime may not set the container's ulimits ({text[-160:]})",
            hint="give `ulimits:` at or below the engine's own hard limits, e.g. {nofile: '1024:1024', "
            "nproc: '1024:1024'}",
        )
    if "unknown or invalid runtime" in text or "unknown runtime" in text:
        return target.error(
            ProvisionError,
            f"runtime {spec.oci_runtime!r} is unknown to the engine",
            hint="see `docker info` for the runtimes it has",
        )
    if any(m in text for m in _MISSING_EXE):
        return target.error(
            ProvisionError,
            f"{spec.python!r} not found in image {spec.image!r}",
            hint="use an image with python3, or set `python:` to its interpreter",
        )
    return target.error(ProvisionError, f"container failed to start: {text}")


def not_ready(target: TargetImpl, spec: ContainerFields, ready: CommandResult) -> ProvisionError:
    """Tell a missing interpreter apart from a container that died while starting."""
    text = ready.stderr.strip()[-200:] or "no output"
    if ready.rc in (126, 127) or any(m in text for m in _MISSING_EXE):
        return target.error(
            ProvisionError,
            f"{spec.python!r} does not run in image {spec.image!r} (rc {ready.rc}: {text})",
            hint="use an image with python3, or set `python:` to its interpreter",
        )
    if ready.reason:
        return target.error(ProvisionError, f"during start-up: {ready.reason}")
    return target.error(ProvisionError, f"cannot create {spec.workdir} (rc {ready.rc}: {text})")
