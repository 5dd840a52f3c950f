"""`ssh`: a bare-metal host reached over SSH (paramiko) — the remote twin of `local`.

This module is the kind: its spec model, its lane (the host:port it occupies) and its registry entry. The paramiko
code — host keys, the session, connecting and the remote workdir — lives in `sshlink` and `sshhost`, imported
only when an ssh target is provisioned (a libvirt VM reuses them, reached through a forwarded port), and the
sweep of workdirs a killed harness left in `sshsweep`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from benchbed import boundary
from benchbed.targets.base import Kind
from benchbed.targets.spec import TargetBase


class SshFields(TargetBase):
    """Everything an SSH target says except which host: shared by targets and group templates."""

    port: int = Field(22, ge=1, le=65535)
    user: str | None = Field(None, description="Login user; the local user name when absent")
    key: str | None = Field(None, description="Private key file; the SSH agent and ~/.ssh/id_* are used when absent")
    known_hosts: str = Field("~/.ssh/known_hosts", description="Host keys are always verified against this file")
    accept_new_host_key: bool = Field(
        False, description="Trust an unknown host key once and append it to known_hosts (never by default)"
    )
    workdir: str | None = Field(
        None, description="Remote parent of the private per-instance workdir (mode 700); $TMPDIR or /tmp if absent"
    )
    proxy_jump: str | None = Field(
        None, pattern=r"^([^@\s]+@)?[^@\s:]+(:\d+)?$", description="[user@]host[:port] to tunnel through"
    )
    sudo: bool = Field(False, description="Run the agent with `sudo -n` (workloads that drop page caches)")
    stack: str | None = Field(
        None,
        description="An image in the controller's Docker engine whose userland the agent runs on: unpacked once on "
        "the host and chrooted into (needs root there: a root login or `sudo: true`). See docs/stacks.md",
    )
    stack_cache: str = Field("/var/lib/benchbed/stacks", description="Where the host keeps unpacked stacks")
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP connect, SSH banner, auth, opening a channel")
    command_timeout_s: float = Field(
        120.0, gt=0, description="Limit for benchbed's own remote commands (probe, cleanup); cases use timeout_s"
    )


class SshTarget(SshFields):
    """A bare-metal host reached over SSH (paramiko)."""

    kind: Literal["ssh"]
    host: str = Field(min_length=1)


class SshTemplate(SshFields):
    """An SSH target whose host the group fills in (a `host:` written here is a placeholder, replaced)."""

    kind: Literal["ssh"] = "ssh"
    host: str | None = None


class SshKind(Kind):
    name = "ssh"
    boundary_class = boundary.BARE_METAL
    spec = SshTarget
    extra = "ssh"
    impl = "benchbed.targets.sshhost:SshProvisioner"
    group_template = SshTemplate

    def group_member(self, template: Any, member: str) -> Any:
        return SshTarget(**{**template.model_dump(), "host": member})

    def lane(self, spec: Any) -> str:
        return f"{spec.host}:{spec.port}"

    def sweep(self, specs: Sequence[Any], *, everything: bool) -> list[str]:
        """The workdirs dead runs left on these hosts (a VM's are destroyed with it: only kind ssh is swept)."""
        try:
            from benchbed.targets.sshsweep import sweep
        except ImportError as err:
            raise self.missing(err, "cleanup") from err
        return sweep([spec for spec in specs if spec.kind == "ssh"], everything=everything)

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        import paramiko

        return (paramiko.SSHException, EOFError, ConnectionError, TimeoutError)
