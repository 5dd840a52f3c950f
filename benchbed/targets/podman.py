"""`podman`: a fresh container per instance without a daemon, rootful or rootless — the same lifecycle, labels,
sweep, start-up phases and errors as `docker`.

The client is the Docker SDK the docker kind already uses, talking to podman's Docker-compatible API: by default a
private `podman system service` this harness starts for the run and stops at its end (or `podman_host`, an
existing socket). That reuses the docker kind's provisioning, exec streaming, shipping and diagnosis as they are,
rather than a second engine binding (podman-py) or CLI parsing, and podman's API is the one it keeps compatible for
docker-compose. This module is the kind; `podmanengine` (imported on use) holds the service and provisioner.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from benchbed.targets.base import distinct
from benchbed.targets.containerspec import ContainerFields, ContainerKind, RuntimeName

_LIMIT = re.compile(r"^(\d+|-1)(:(\d+|-1))?$")


class PodmanTarget(ContainerFields):
    """A fresh podman container per instance (daemonless: benchbed runs podman's API service for the run)."""

    podman_host: str | None = Field(
        None, description="A podman API socket (unix://...); a private `podman system service` per run if absent"
    )
    podman: str = Field("podman", description="The podman binary that serves the private API socket")
    ulimits: dict[str, str] | None = Field(
        None,
        description="soft[:hard] per resource (nofile, nproc, ...). Default: this host's own hard limits for nofile "
        "and nproc — podman's built-in defaults exceed them on some hosts ('error setting rlimit … not permitted')",
    )
    runtime_flags: dict[RuntimeName, list[str]] = Field(
        default_factory=dict,
        description="podman's `--runtime-flag`s per runtime, e.g. {runsc: [network=none]} (gVisor where it refuses "
        "networking): podman has no per-runtime arguments in containers.conf, so the private service passes them",
    )
    kind: Literal["podman"]

    @field_validator("runtime_flags")
    @classmethod
    def _flags(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        """`--network=none` and `network=none` alike (podman adds the dashes)."""
        out = {}
        for name, flags in value.items():
            clean = [f.lstrip("-") for f in flags]
            if not all(clean):
                raise ValueError(f"runtime_flags of {name!r}: an empty flag")
            out[name] = clean
        return out

    @model_validator(mode="after")
    def _flags_need_the_private_service(self) -> PodmanTarget:
        if self.podman_host and self.runtime_flags:
            raise ValueError(
                "runtime_flags are passed to the private podman service: drop podman_host, or start that service "
                "as `podman --runtime NAME --runtime-flag FLAG system service`"
            )
        named = self.runtime if isinstance(self.runtime, list) else [self.runtime] if self.runtime else []
        unused = sorted(set(self.runtime_flags) - set(named))
        if unused:
            raise ValueError(
                f"runtime_flags for {', '.join(unused)}, which `runtime` does not name (it names: "
                f"{', '.join(named) or 'none, so podman default'})"
            )
        return self

    @field_validator("ulimits")
    @classmethod
    def _limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, limit in (value or {}).items():
            if not _LIMIT.match(str(limit)):
                raise ValueError(f"ulimit {name}: {limit!r} is not soft[:hard] (integers, -1 for unlimited)")
        return value


class PodmanKind(ContainerKind):
    name = "podman"
    spec = PodmanTarget
    extra = "docker"  # the Docker SDK speaks podman's compatible API
    impl = "benchbed.targets.podmanengine:PodmanProvisioner"

    def sweep(self, specs: Sequence[Any], *, everything: bool) -> list[str]:
        try:
            from benchbed.targets.podmanengine import sweep
        except ImportError as err:
            raise self.missing(err, "cleanup") from err
        removed: list[str] = []
        for url, binary in distinct((spec.podman_host, spec.podman) for spec in specs):
            removed += sweep(url, binary, everything=everything)
        return removed

    def cleanup_spec(self, endpoint: str | None, *, targets_given: bool) -> Any | None:
        """This host's podman is swept (when installed) unless a targets file says which kinds were used."""
        if targets_given or shutil.which("podman") is None:
            return None
        return PodmanTarget(kind="podman", image="-")
