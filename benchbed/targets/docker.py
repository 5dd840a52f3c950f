"""`docker`: a fresh container per instance, through the Docker SDK — the container boundary under test.

This module is the kind: its spec model, the sweep of dead runs' containers and its registry entry. The SDK code
lives in `dockerengine`, imported only when a docker target is provisioned or swept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from benchbed.targets.base import distinct
from benchbed.targets.containerspec import ContainerFields, ContainerKind


class DockerTarget(ContainerFields):
    """A fresh container per instance, through the Docker SDK: the container boundary under test."""

    gpus: Literal["all"] | Annotated[int, Field(ge=1)] | list[str] | None = Field(
        None, description="Docker device requests: `all`, a count, or device ids/UUIDs"
    )
    docker_host: str | None = Field(None, description="Engine URL; the local socket (or $DOCKER_HOST) if absent")
    kind: Literal["docker"]


class DockerKind(ContainerKind):
    name = "docker"
    spec = DockerTarget
    extra = "docker"
    impl = "benchbed.targets.dockerengine:DockerProvisioner"

    def sweep(self, specs: Sequence[Any], *, everything: bool) -> list[str]:
        try:
            from benchbed.targets.dockersweep import sweep
        except ImportError as err:
            raise self.missing(err, "cleanup") from err
        removed: list[str] = []
        for url in distinct(spec.docker_host for spec in specs):
            removed += sweep(url, everything=everything)
        return removed

    def cleanup_spec(self, endpoint: str | None, *, targets_given: bool) -> Any | None:
        """The local engine (or --docker-host) is swept unless a targets file names the engines."""
        if targets_given and not endpoint:
            return None
        return DockerTarget(kind="docker", image="-", docker_host=endpoint)
