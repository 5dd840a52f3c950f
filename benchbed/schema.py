"""Suite and targets files as frozen pydantic models: the schema only (`benchbed.config` loads and checks files).

The targets file's union of kinds is built from the kind registry (`benchbed.targets.registry`): a new kind's
model appears here, and in `benchbed schema`, without an edit to this module.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from benchbed.targets.local import LocalTarget
from benchbed.targets.registry import group_templates, kind, kinds, spec_models
from benchbed.targets.spec import NAME_PATTERN, Strict, TargetBase
from benchbed.targets.ssh import SshTemplate

__all__ = ["NAME_PATTERN", "AnyTarget", "Suite", "TargetsFile", "json_schemas", "kinds"]


# ── targets ────────────────────────────────────────────────────────────────────────────────────────────────
AnyTarget = TargetBase  # what code may rely on; the file's union below is built from the kind registry
if TYPE_CHECKING:
    TargetSpec = TargetBase
else:
    TargetSpec = Annotated[Union[tuple(spec_models())], Field(discriminator="kind")]  # noqa: UP007


def _template_kind(value: Any) -> str:
    """A group template without `kind:` is an SSH one (as before slurm groups)."""
    found = value.get("kind", "ssh") if isinstance(value, dict) else getattr(value, "kind", "ssh")
    return str(found)


if TYPE_CHECKING:
    GroupTemplate = TargetBase
else:  # every kind that can fill a template with a group member (ssh: the host; slurm: the node)
    GroupTemplate = Annotated[
        Union[tuple(Annotated[t, Tag(k)] for k, t in group_templates().items())],  # noqa: UP007
        Discriminator(_template_kind),
    ]


class TargetGroup(Strict):
    """Many machines that share one definition: `hosts: [gpu01, gpu02]` expands to one target per member, named
    after it (so member names must be valid target names). An ssh template gets each as its `host`; a slurm
    template as its `nodelist` (one target per node: per-node results, one lane per node with `--parallel`)."""

    hosts: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(min_length=1)
    template: GroupTemplate = Field(default_factory=lambda: SshTemplate.model_validate({}))


class TargetsFile(Strict):
    targets: dict[Annotated[str, Field(pattern=NAME_PATTERN)], TargetSpec]
    groups: dict[Annotated[str, Field(pattern=NAME_PATTERN)], TargetGroup] = Field(default_factory=dict)

    def expanded(self) -> dict[str, AnyTarget]:
        """One entry per target: a kind's axis (a container's runtime list) and groups' hosts spelled out."""
        out: dict[str, AnyTarget] = {}
        for name, spec in self.targets.items():
            for suffix, variant in spec.variants().items():
                out[name + suffix] = variant
        for group in self.groups.values():
            for host in group.hosts:
                if host in out:
                    raise ValueError(f"group host {host!r} clashes with a target of the same name")
                out[host] = kind(group.template.kind).group_member(group.template, host)
        return out


# ── suites ─────────────────────────────────────────────────────────────────────────────────────────────────
Scalar = int | float | str | bool


Instances = Annotated[int, Field(ge=1, le=1000)] | Literal["auto"]
# With N + N instances an exact two-sided MWU cannot go below 2/C(2N, N): 0.10 at 3 + 3, 0.029 at 4 + 4 (one metric
# only), 0.0079 at 5 + 5 (Holm over up to 6 metrics). 5 is the least that lets a multi-metric case reach a verdict.
MIN_INSTANCES = 5


class Repeats(Strict):
    instances: Instances = Field(
        "auto",
        union_mode="left_to_right",
        description="Fresh processes/containers/VMs per target and case; `auto`: chosen per case from a pilot's noise",
    )
    pilot_instances: int = Field(4, ge=2, le=100, description="`auto`: baseline instances in the pilot (they count)")
    min_instances: int = Field(MIN_INSTANCES, ge=2, le=1000, description="`auto`: fewest instances per target")
    max_instances: int = Field(20, ge=2, le=1000, description="`auto`: most instances per target (then MDE is shown)")
    repetitions: int = Field(5, ge=1, le=100000, description="Measured samples per instance")
    warmup: int = Field(1, ge=0, le=10000, description="Unreported-in-stats warm-up samples per instance")
    timeout_s: float = Field(600.0, gt=0, description="Wall-clock limit for one instance")
    settle_s: float = Field(
        0.0,
        ge=0,
        le=600,
        description="Before its workload, each agent waits up to this long for the machine to be quiet (others "
        "using at most 0.1 CPU over 0.25 s): a predecessor's teardown is not measured. 0: no wait",
    )
    hold_s: float = Field(
        0.0,
        ge=0,
        le=60,
        description="The agent holds its sample lines up to this long and writes them together, so carrying a line "
        "(dockerd, sshd, the VM's network) is not timed inside the next repetition (docs/methodology.md). "
        "0: each sample goes at once, and an agent killed outright loses none",
    )

    @model_validator(mode="after")
    def _bounds(self) -> Repeats:
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances {self.min_instances} > max_instances {self.max_instances}")
        return self


class WorkloadEntry(Strict):
    name: str
    params: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    instances: Instances | None = Field(None, union_mode="left_to_right")
    target_instances: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description="The suite's target_instances for this workload alone: e.g. {vm: 3} on startup.*, which boots "
        "every VM instance even where the others restore one saved boot",
    )
    repetitions: int | None = Field(None, ge=1, le=100000)
    warmup: int | None = Field(None, ge=0, le=10000)
    timeout_s: float | None = Field(None, gt=0)

    def grid(self) -> list[dict[str, Scalar]]:
        """Lists expand to a cartesian grid, in file order."""
        keys = list(self.params)
        values = [v if isinstance(v, list) else [v] for v in self.params.values()]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


class Suite(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    baseline: str = "local"
    targets: list[str] | None = Field(None, description="Target names to run on; all in the targets file if absent")
    seed: int | None = Field(None, description="Seed for the interleaving order; random and recorded if absent")
    defaults: Repeats = Field(default_factory=lambda: Repeats())
    modules: list[str] = Field(default_factory=list, description="Custom workload modules, relative to this file")
    blocks: list[list[str]] = Field(
        default_factory=list,
        description="Targets that cannot run alongside the others (a VM taking the GPU by passthrough): each list "
        "is a block; every round runs one block's cases, then the next's, in seeded order. Unlisted targets form "
        "one more block.",
    )
    target_instances: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description="At most this many instances per case on these targets (a VM boots per instance): "
        "e.g. {vm: 2} while the rest get the suite's count",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Smallest relative change that matters, by glob on workload or workload:metric "
        "(e.g. {gpu.gemm: 0.01, 'io.*': 0.03}); the key `default` is the threshold of every metric no glob and no "
        "built-in class names (e.g. {default: 0.02} for pytest-benchmark microbenchmarks); used by `benchbed compare` "
        "and the report, which show each row's threshold and its source",
    )
    workloads: list[WorkloadEntry] = Field(min_length=1)

    @field_validator("thresholds")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        for pattern, fraction in value.items():
            if not 0 < fraction < 1:
                raise ValueError(f"threshold {pattern!r}: {fraction} is not a fraction in (0, 1)")
        return value


DEFAULT_TARGETS = TargetsFile(targets={"local": LocalTarget.model_validate({})})


def json_schemas() -> dict[str, Any]:
    return {"suite": Suite.model_json_schema(), "targets": TargetsFile.model_json_schema()}
