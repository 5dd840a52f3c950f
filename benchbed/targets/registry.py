"""The one table of target kinds: kind name → "module:KindClass". Adding a kind is one line here.

Kind modules are imported on first use, and are themselves cheap (their optional dependency loads only when a
target of that kind is provisioned or swept), so `import benchbed` never imports paramiko, docker or libvirt.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from benchbed.errors import TargetError
from benchbed.targets.base import Kind, Target

KINDS: dict[str, str] = {
    "local": "benchbed.targets.local:LocalKind",
    "ssh": "benchbed.targets.ssh:SshKind",
    "docker": "benchbed.targets.docker:DockerKind",
    "podman": "benchbed.targets.podman:PodmanKind",
    "libvirt": "benchbed.targets.libvirt:LibvirtKind",
    "ns": "benchbed.targets.ns:NsKind",
    "slurm": "benchbed.targets.slurm:SlurmKind",
}


def kinds() -> list[str]:
    return sorted(KINDS)


@functools.cache
def kind(name: str) -> Kind:
    """The Kind object registered under `name`."""
    try:
        ref = KINDS[name]
    except KeyError as err:
        raise TargetError(f"unknown target kind {name!r} (known: {', '.join(kinds())})") from err
    module, _, cls = ref.partition(":")
    found: Kind = getattr(importlib.import_module(module), cls)()
    return found


def spec_models() -> list[type[Any]]:
    """Every kind's spec model, in table order: the config's target union and `benchbed schema` are built from it."""
    return [kind(name).spec for name in KINDS]


def group_templates() -> dict[str, type[Any]]:
    """Kind name → the template model of a `groups:` entry, for the kinds whose targets a group can fill in."""
    return {name: t for name in KINDS if (t := kind(name).group_template) is not None}


def make_target(name: str, spec: Any, run_id: str) -> Target:
    """The implementation for spec.kind (importing its dependencies only now)."""
    return kind(spec.kind).target(name, spec, run_id)


def lane_of(spec: Any) -> str:
    """The machine a target runs on (see `Kind.lane`)."""
    return kind(spec.kind).lane(spec)
