"""What a target is, once: the protocols the runner relies on, the base classes that own the shared behaviour, and
`Kind`, the object a target kind registers (`benchbed.targets.registry`).

A Target obtains an isolation boundary (how resources are obtained); the Session it yields starts commands in it
(how the command starts). Optional behaviour (`describe`, `close`, `stop`, `abort`) is part of the protocols with a
do-nothing default in the base classes, so the runner calls it plainly instead of probing with getattr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from benchbed.errors import BenchbedError, CommandFailed, MissingExtra
from benchbed.targets.spec import TargetBase as TargetSpec

CONTROLLER = "controller"  # the lane of every target hosted on this machine (processes, containers, VMs)
E = TypeVar("E", bound=BenchbedError)


@dataclass(frozen=True)
class CommandResult:
    """Outcome of one command in a target. A non-zero rc is data; `.check()` makes it an error."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool = False
    reason: str | None = None  # why it ended, when the target knows better than the exit code (OOM, killed)

    def check(self) -> CommandResult:
        if self.rc != 0:
            tail = self.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
            raise CommandFailed(f"command {self.argv[0]!r} exited {self.rc}: {tail[0]}")
        return self


LineHandler = Callable[[str], None]


@dataclass(frozen=True)
class Endpoint:
    """Where the controller reaches a port in the target, and by which path (the report says): 127.0.0.1 on every
    kind but `slurm`, whose compute node is reached at its own address (the cluster's NodeAddr)."""

    host: str
    port: int
    via: str  # loopback | published-port | host-network | ssh-tunnel | forwarded-port | node-address


class Session(Protocol):
    """A live, provisioned target."""

    workdir: str
    stack_cache: str | None  # a file the agent may keep stack-digest hashes in, or None

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult: ...

    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        """Run argv, handing each stdout line to on_line as it arrives; stderr is kept as a tail."""
        ...

    def put(self, local: Path, remote: str) -> None: ...

    def abort(self) -> None:
        """Called from another thread when the run stops: end the running command now (may do nothing)."""
        ...

    def serve_net(self) -> dict[str, Any]:
        """Where a server in the target may listen: {"bind": address, "port": port or 0 for any, or None when the
        controller cannot reach a port in this target; optional "why": the reason, when None}. serve.latency's
        across-the-boundary path needs a port."""
        ...

    def endpoint(self, port: int) -> AbstractContextManager[Endpoint | None]:
        """While open: the controller's address of `port` in the target (a tunnel lives that long), or None where
        the controller cannot reach it."""
        ...


class Target(Protocol):
    name: str

    def provision(self) -> AbstractContextManager[Session]:
        """Bring the boundary up; always tears down, also on KeyboardInterrupt."""
        ...

    def startup_phases(self) -> dict[str, float]:
        """Seconds spent in each phase of the latest provision (e.g. create, start, boot, ssh_ready)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Controller-side facts merged into the target's fingerprint (image digest, domain XML)."""
        ...

    def next_case(self, workload: str) -> None:
        """The workload the next provision is for (a VM restored from a save boots for a cold-start workload)."""
        ...

    def instance_start(self) -> str | None:
        """How the latest instance started when a kind has more than one way (booted | restored), else None."""
        ...

    def close(self) -> None:
        """Release what the target holds for the whole run (an engine connection)."""
        ...

    def stop(self) -> None:
        """Called from another thread when the run stops: give up a provision still waiting (a queued job)."""
        ...


@dataclass
class PhaseClock:
    """Records consecutive phases of a provision, measured from the controller."""

    phases: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds


TAIL_BYTES = 16_384


class Tail:
    """Keeps the last TAIL_BYTES of a stream: enough to explain a crash, bounded for any output size."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.buf = ""

    def add(self, text: str) -> None:
        self.buf = (self.buf + text)[-self.limit :]

    def __str__(self) -> str:
        return self.buf


def collect_stdout(stream: Callable[..., CommandResult], argv: Sequence[str], timeout: float | None) -> CommandResult:
    """Session.run in terms of Session.stream: the same process handling, stdout kept (bounded) instead of streamed."""
    out = Tail(limit=1 << 20)

    def keep(line: str) -> None:
        out.add(line + "\n")

    return dataclasses.replace(stream(argv, keep, timeout=timeout), stdout=str(out))


class TargetImpl:
    """Base of every target implementation: name, spec, run id, the phase clock and the error prefix."""

    def __init__(self, name: str, spec: Any, run_id: str) -> None:
        self.name = name
        self.spec = spec
        self.run_id = run_id
        self._clock = PhaseClock()

    def error(self, cls: type[E], message: str, *, hint: str | None = None) -> E:
        """`cls("target 'name': message")`: every target error names its target the same way."""
        return cls(f"target {self.name!r}: {message}", hint=hint)

    def startup_phases(self) -> dict[str, float]:
        return dict(self._clock.phases)

    def describe(self) -> dict[str, Any]:
        return {}

    def next_case(self, workload: str) -> None:
        return None

    def instance_start(self) -> str | None:
        return None

    def close(self) -> None:
        return None

    def stop(self) -> None:
        return None


class SessionImpl:
    """Base of every session: `run` is `stream` with stdout kept; `abort` does nothing unless a kind can."""

    # where the agent may keep file hashes for its stack digest between instances (agent/stack.py); None: none
    stack_cache: str | None = None

    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        raise NotImplementedError

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        return collect_stdout(self.stream, argv, timeout)

    def abort(self) -> None:
        return None

    def serve_net(self) -> dict[str, Any]:
        return {"bind": "127.0.0.1", "port": None}  # a kind that can expose a port says so

    def endpoint(self, port: int) -> AbstractContextManager[Endpoint | None]:
        return contextlib.nullcontext(None)


class Kind:
    """What one target kind declares, in its module under benchbed/targets/ (see docs/architecture.md).

    The module is cheap to import (pydantic and the stdlib): an optional dependency (paramiko, docker, libvirt)
    is imported only by `target()` and `sweep()`, and a missing one is a MissingExtra naming `extra`.
    """

    name: ClassVar[str]
    spec: ClassVar[type[TargetSpec]]
    extra: ClassVar[str | None] = None  # `pip install 'benchbed[extra]'` brings the dependency
    impl: ClassVar[str]  # "module:Class" of the Target implementation, imported on first use

    system_needs: ClassVar[str | None] = None  # what building `extra` needs from the system, if pip alone cannot
    group_template: ClassVar[type[TargetSpec] | None] = None  # the `groups:` template model, if a group can fill it

    def group_member(self, template: Any, member: str) -> Any:
        """The spec of one group member (a host, a node) made from the group's template."""
        raise NotImplementedError(f"kind {self.name} has no groups")

    def implementation(self, name: str) -> type[Target]:
        """The Target class, importing its module (and the optional dependency) now. The runner calls this for
        every target before the first case, so a missing binding is one line up front, not failed instances."""
        module, _, cls = self.impl.partition(":")
        try:
            found: type[Target] = getattr(importlib.import_module(module), cls)
        except ImportError as err:
            raise self.missing(err, f"target {name!r}") from err
        return found

    def target(self, name: str, spec: Any, run_id: str) -> Target:
        return self.implementation(name)(name, spec, run_id)  # type: ignore[call-arg]

    boundary_class: ClassVar[str] = "other"  # benchbed.boundary: bare metal, container/sandboxed runtimes, VMs

    def boundary(self, spec: Any) -> str:
        """Where this target sits on the isolation spectrum (the report groups targets by it)."""
        return self.boundary_class

    def lane(self, spec: Any) -> str:
        """The machine the target occupies, for `--parallel`: two instances never share one."""
        return CONTROLLER

    def sweep(self, specs: Sequence[Any], *, everything: bool) -> list[str]:
        """Remove what dead runs left behind on the engines/hosts these specs use; returns what was removed."""
        return []

    def cleanup_spec(self, endpoint: str | None, *, targets_given: bool) -> Any | None:
        """`benchbed cleanup` without this kind in a targets file: a spec naming what to sweep, or None."""
        return None

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        """What this kind's client library raises when its engine, daemon or connection goes away. The lifecycle
        turns any of them that a target did not translate into a failed case, so one lost engine never ends the
        suite. Called only once a target of this kind exists (its dependency is imported by then)."""
        return ()

    def install_hint(self) -> str | None:
        """How to get the extra: system packages first where pip alone cannot build it."""
        if not self.extra:
            return None
        pip = f"pip install 'benchbed[{self.extra}]'"
        return f"{self.system_needs}, then {pip} or, in a checkout, make install" if self.system_needs else pip

    def missing(self, err: ImportError, what: str) -> MissingExtra:
        return MissingExtra(
            f"{what} (kind {self.name}) unavailable: Python module {err.name!r} is not installed",
            hint=self.install_hint(),
        )


def distinct(values: Iterable[Any]) -> list[Any]:
    """Values in first-seen order, once each (the engines, hosts or URIs a set of specs uses)."""
    return list(dict.fromkeys(values))
