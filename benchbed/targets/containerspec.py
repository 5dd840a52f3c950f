"""What every container kind shares (`docker`, `podman`): the spec keys (image, limits, binds, and the OCI runtime,
which may be an axis: `runtime: [runc, runsc]` makes one target per runtime, `box@runc`, `box@runsc`) and the kind's
boundary class and transport errors.

pydantic and the stdlib only, like every kind module (the SDK's errors are imported on use).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from benchbed import boundary
from benchbed.targets.base import Kind
from benchbed.targets.spec import NAME_PATTERN, VARIANT_SEP, TargetBase

RuntimeName = Annotated[str, Field(pattern=NAME_PATTERN)]


class ContainerFields(TargetBase):
    """A fresh container per instance; the keys docker and podman targets have in common."""

    image: str = Field(min_length=1)
    pull: Literal["never", "missing", "always"] = "missing"
    runtime: RuntimeName | list[RuntimeName] | None = Field(
        None,
        description="OCI runtime (runc, runsc, kata, nvidia, ...): the boundary compared. A list is an axis: one "
        "target per runtime, named `<target>@<runtime>`",
    )
    cpus: float | None = Field(None, gt=0, description="CPU limit (NanoCpus)")
    memory: str | None = Field(None, pattern=r"^\d+[bkmgBKMG]?$", description="Memory limit, e.g. 4g")
    shm_size: str | None = Field(None, pattern=r"^\d+[bkmgBKMG]?$")
    network: str = Field("none", description="`none` (default), `host`, or a named network")
    volumes: list[str] = Field(default_factory=list, description="host:container[:ro|rw] binds (models, scratch)")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment of the container; results record the keys, not the values"
    )
    env_safe: list[str] = Field(
        default_factory=list, description="Keys of `env` whose values are no secret: recorded in results as given"
    )
    user: str | None = None
    privileged: bool = Field(False, description="Never by default")
    workdir: str = Field(
        "/var/tmp/benchbed",
        description="Directory inside the container for the agent and (by default) the I/O scratch: on the "
        "container's own filesystem in every runtime (gVisor mounts a tmpfs over an empty /tmp)",
    )
    publish: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Container port published on 127.0.0.1 (an ephemeral host port) for serve.latency's across-"
        "the-boundary path; needs `network: bridge` (podman: its default network). `network: host` needs none",
    )
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

    @model_validator(mode="after")
    def _publish_needs_a_network(self) -> ContainerFields:
        if self.publish is not None and self.network in ("none", "host"):
            raise ValueError(f"publish: {self.publish} needs network: bridge (or a named network), not {self.network}")
        return self

    @field_validator("runtime")
    @classmethod
    def _axis(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("a runtime list names each runtime once, and at least one")
        return value

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

    def variants(self) -> dict[str, TargetBase]:
        """`runtime: [a, b]` ▸ {"@a": this spec on a, "@b": ... on b}; a single runtime (or none) is itself."""
        if not isinstance(self.runtime, list):
            return {"": self}
        return {f"{VARIANT_SEP}{r}": self.model_copy(update={"runtime": r}) for r in self.runtime}

    @property
    def oci_runtime(self) -> str | None:
        """The one runtime of an expanded spec (None: the engine's default)."""
        if isinstance(self.runtime, list):
            raise ValueError(f"runtime list {self.runtime} was not expanded into one target per runtime")
        return self.runtime


class ContainerKind(Kind):
    """What the Docker-API kinds (`docker`, and `podman` through its compatible service) share as kinds: where a
    runtime sits on the spectrum, and the SDK's transport errors, so a lost engine is a failed case in either."""

    def boundary(self, spec: Any) -> str:
        """runc and crun are container runtimes; gVisor and Kata sandbox the workload (docs/runtimes.md)."""
        return boundary.runtime_class(spec.oci_runtime)

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        from benchbed.targets.dockerengine import ENGINE_ERRORS

        return ENGINE_ERRORS
