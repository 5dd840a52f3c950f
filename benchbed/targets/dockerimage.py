"""The image a container starts from (present, or pulled by the spec's `pull:` rule) and the engine facts the
fingerprint records about it. Apart from the provisioner, which owns the container's lifetime, not its inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import docker.errors

from benchbed.errors import ProvisionError
from benchbed.targets.dockerexit import ENGINE_ERRORS
from benchbed.targets.dockerruntime import runtime_facts

if TYPE_CHECKING:  # the provisioner imports this module; only its type comes back
    from benchbed.targets.dockerengine import DockerProvisioner


def find_image(target: DockerProvisioner) -> Any:
    """The spec's image: looked up in the engine, pulled when the spec's `pull:` allows or asks for it."""
    spec, name = target.spec, target.spec.image
    if spec.pull == "always":
        return pull(target, name)
    try:
        return target.client.images.get(name)
    except docker.errors.ImageNotFound as err:
        if spec.pull == "never":
            raise target.error(
                ProvisionError,
                f"image {name!r} is not present and pull is 'never'",
                hint=target.load_hint,
            ) from err
        return pull(target, name)


def pull(target: DockerProvisioner, name: str) -> Any:
    repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
    try:
        return target.client.images.pull(repo, tag=tag or "latest")
    except docker.errors.APIError as err:
        raise target.error(ProvisionError, f"cannot pull image {name!r}: {err.explanation or err}") from err


def engine_facts(target: DockerProvisioner, image: Any, container: Any) -> dict[str, Any]:
    """Controller-side facts for the fingerprint, under the engine's key: image, engine, runtime, limits applied."""
    host = container.attrs.get("HostConfig", {})
    try:
        version = target.client.version()
    except ENGINE_ERRORS:
        version = {}
    return {
        target.engine: {
            "image": target.spec.image,
            "image_id": image.id,
            "image_digests": image.attrs.get("RepoDigests") or [],
            "runtime": runtime_facts(target.client, target.spec.oci_runtime, local_engine=target.local_engine),
            "engine_version": version.get("Version"),
            "engine_api": version.get("ApiVersion"),
            "engine_os": f"{version.get('Os')}/{version.get('Arch')}",
            "limits": {
                "nano_cpus": host.get("NanoCpus") or None,
                "memory_bytes": host.get("Memory") or None,
                "shm_size_bytes": host.get("ShmSize"),
                "network_mode": host.get("NetworkMode"),
                "privileged": host.get("Privileged"),
                "device_requests": host.get("DeviceRequests"),
            },
        }
    }
