"""`docker`: a fresh container per instance, through the Docker SDK — the container boundary under test.

This module is the kind: its spec model, the sweep of dead runs' containers and its registry entry. The SDK code
lives in `dockerengine`, imported only when a docker target is provisioned or swept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from benchbed.targets.base import Kind, distinct
from benchbed.targets.spec import TargetBase


class DockerTarget(TargetBase):
    """A fresh container per instance, through the Docker SDK: the container boundary under test."""

    kind: Literal["docker"]
    image: str = Field(min_length=1)
    pull: Literal["never", "missing", "always"] = "missing"
    gpus: Literal["all"] | Annotated[int, Field(ge=1)] | list[str] | None = Field(
        None, description="Docker device requests: `all`, a count, or device ids/UUIDs"
    )
    runtime: str | None = Field(None, description="OCI runtime (runc, nvidia, runsc, ...): the boundary compared")
    cpus: float | None = Field(None, gt=0, description="CPU limit (NanoCpus)")
    memory: str | None = Field(None, pattern=r"^\d+[bkmgBKMG]?$", description="Memory limit, e.g. 4g")
    shm_size: str | None = Field(None, pattern=r"^\d+[bkmgBKMG]?$")
    network: str = Field("none", description="`none` (default), `host`, or a named Docker network")
    volumes: list[str] = Field(default_factory=list, description="host:container[:ro|rw] binds (models, scratch)")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment of the container; results record the keys, not the values"
    )
    env_safe: list[str] = Field(
        default_factory=list, description="Keys of `env` whose values are no secret: recorded in results as given"
    )
    user: str | None = None
    privileged: bool = Field(False, description="Never by default")
    docker_host: str | None = Field(None, description="Engine URL; the local socket (or $DOCKER_HOST) if absent")
    workdir: str = Field("/tmp/benchbed", description="Directory inside the container for the agent")
    start_timeout_s: float = Field(60.0, gt=0)

    stack: str | None = Field(
        None, description="The stack this target runs on: for a container, its image (give `stack` or `image`)"
    )

    @model_validator(mode="before")
    @classmethod
    def _stack_is_the_image(cls, data: Any) -> Any:
        """A container's userland is its image, so `stack: X` means `image: X`; two different names are a mistake."""
        if isinstance(data, dict) and data.get("stack"):
            image = data.get("image")
            if image and image != data["stack"]:
                raise ValueError(f"image {image!r} and stack {data['stack']!r} differ: a container runs its image")
            data = {**data, "image": data["stack"]}
        return data

    @field_validator("volumes")
    @classmethod
    def _binds(cls, value: list[str]) -> list[str]:
        for bind in value:
            parts = bind.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
                raise ValueError(f"volume {bind!r} must be host:/container[:ro|rw]")
            if len(parts) == 3 and parts[2] not in ("ro", "rw"):
                raise ValueError(f"volume {bind!r}: mode must be ro or rw")
        return value


class DockerKind(Kind):
    name = "docker"
    spec = DockerTarget
    extra = "docker"
    impl = "benchbed.targets.dockerengine:DockerProvisioner"

    def sweep(self, specs: Sequence[Any], *, everything: bool) -> list[str]:
        try:
            from benchbed.targets.dockerengine import sweep
        except ImportError as err:
            raise self.missing(err, "cleanup") from err
        removed: list[str] = []
        for url in distinct(spec.docker_host for spec in specs):
            removed += sweep(url, everything=everything)
        return removed

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        from benchbed.targets.dockerengine import ENGINE_ERRORS

        return ENGINE_ERRORS

    def cleanup_spec(self, endpoint: str | None, *, targets_given: bool) -> Any | None:
        """The local engine (or --docker-host) is swept unless a targets file names the engines."""
        if targets_given and not endpoint:
            return None
        return DockerTarget(kind="docker", image="-", docker_host=endpoint)
