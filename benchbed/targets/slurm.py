"""`slurm`: every instance is one Slurm job on a cluster's compute nodes, through the scheduler the cluster runs.

This module is the kind: its spec model, its lane, the sweep of dead runs' jobs and its registry entry. The job
itself (submit, wait for the allocation, steps, teardown) lives in `slurmjob`, the Slurm commands in `slurmcli`;
neither needs a Python dependency, only the Slurm client tools on PATH.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from benchbed import boundary
from benchbed.targets.base import Kind
from benchbed.targets.spec import TargetBase

TIME_PATTERN = r"^(\d+-)?\d+(:\d+){0,2}$|^(\d+-\d+)$|^UNLIMITED$|^INFINITE$"


class SlurmTarget(TargetBase):
    """One Slurm job per instance: the agent runs as a job step (`srun`) in an allocation made by `sbatch`."""

    partition: str | None = Field(None, description="`--partition`; the cluster's default partition if absent")
    account: str | None = Field(None, description="`--account`")
    qos: str | None = Field(None, description="`--qos`")
    nodelist: str | None = Field(
        None, description="`--nodelist`: pin every instance to these node(s) (a fleet is one target per node)"
    )
    constraint: str | None = Field(None, description="`--constraint`: node features the job needs")
    nodes: int = Field(1, ge=1, description="`--nodes` of the allocation; the agent runs as one task on the first")
    exclusive: bool = Field(True, description="`--exclusive`: a benchmark never shares its node (on by default)")
    gres: str | None = Field(None, description="`--gres`, e.g. gpu:1 (the step sees them in CUDA_VISIBLE_DEVICES)")
    time_limit: str | None = Field(
        None, pattern=TIME_PATTERN, description="`--time` of each job (Slurm's format: minutes, MM:SS, D-HH:MM:SS)"
    )
    sbatch_args: list[str] = Field(default_factory=list, description="More `sbatch` arguments, given as they are")
    srun_args: list[str] = Field(default_factory=list, description="More `srun` arguments for the agent's step")
    transfer: Literal["sbcast", "shared"] = Field(
        "sbcast",
        description="How the agent reaches the node: `sbcast` to node-local `workdir`, or `shared`: `workdir` is "
        "on a filesystem the controller and the nodes share, and the controller copies the agent there",
    )
    workdir: str = Field("/tmp", description="Parent of each instance's private workdir (node-local or shared)")
    container: str | None = Field(
        None, description="An OCI bundle directory on the nodes: the agent's steps run in it (`srun --container`)"
    )
    stack: str | None = Field(
        None,
        description="An image in the controller's Docker engine: unpacked once (the stack cache, which the nodes "
        "must see) and run as an OCI bundle through Slurm's container support (oci.conf). See docs/targets-slurm.md",
    )
    serve_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="serve.latency's port on the node's address (0: any free one; give one a "
        "firewall between the controller and the nodes lets through)",
    )
    queue_timeout_s: float = Field(3600.0, gt=0, description="How long an instance may wait in the queue")
    command_timeout_s: float = Field(60.0, gt=0, description="Limit for each Slurm command benchbed runs itself")
    kind: Literal["slurm"]

    @model_validator(mode="after")
    def _one_container(self) -> SlurmTarget:
        if self.stack and self.container:
            raise ValueError("give `stack` (an image made into a bundle) or `container` (a bundle), not both")
        return self


class SlurmKind(Kind):
    name = "slurm"
    spec = SlurmTarget
    impl = "benchbed.targets.slurmjob:SlurmProvisioner"
    group_template = SlurmTarget

    def boundary(self, spec: Any) -> str:
        """A job step on a node is bare metal; with `stack`/`container` it runs in an OCI container (runc)."""
        return boundary.CONTAINER if spec.stack or spec.container else boundary.BARE_METAL

    def group_member(self, template: Any, member: str) -> Any:
        """A group's member is a node: the template pinned to it (`nodelist`)."""
        return SlurmTarget(**{**template.model_dump(), "nodelist": member})

    def lane(self, spec: Any) -> str:
        """Pinned to nodes: those nodes. Otherwise the scheduler picks (and `exclusive` keeps jobs apart)."""
        if spec.nodelist:
            return f"slurm:{spec.nodelist}"
        same = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:8]  # the same definition: one lane
        return f"slurm:{spec.partition or 'default'}:any-node:{same}"

    def sweep(self, specs: Sequence[Any], *, everything: bool) -> list[str]:
        """Cancel the jobs of dead runs (their harness, named in the job's comment, is gone)."""
        from benchbed.targets import slurmcli

        if not slurmcli.available():
            return []
        return slurmcli.sweep(everything=everything, timeout=max(s.command_timeout_s for s in specs))

    def cleanup_spec(self, endpoint: str | None, *, targets_given: bool) -> Any | None:
        """Without a targets file, `benchbed cleanup` sweeps the cluster this machine's Slurm tools talk to (if up)."""
        from benchbed.targets import slurmcli

        if targets_given or not slurmcli.reachable():
            return None
        return SlurmTarget(kind="slurm")
