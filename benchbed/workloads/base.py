"""Workload registry (the sample type is `benchbed.protocol.Sample`). Stdlib-only: this module runs inside every target.

A workload is a plain generator function plus a dataclass of parameters. It measures itself *inside* the
target so transport latency never leaks into its numbers, and says `Skipped(reason)` when it cannot run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchbed.protocol import Phase
from benchbed.protocol import Sample as Sample  # re-exported: what a workload yields


class Skipped(Exception):
    """Raised by a workload that cannot run in this target; the reason reaches the report verbatim."""


@dataclass(frozen=True)
class NoParams:
    """For workloads without parameters."""


@dataclass
class Context:
    """What the agent hands a workload: how many repetitions, where scratch files may go, the case's time limit
    (for workloads that start child processes and must stop them before the controller kills the agent), and for
    a server workload the port the target exposes and a way to tell the controller it listens."""

    repetitions: int = 5
    warmup: int = 1
    scratch_dir: Path = field(default_factory=lambda: Path("/tmp"))
    timeout_s: float | None = None
    # serve.latency: where the server may listen ({"bind", "port"}: port None = the controller cannot reach it)
    serve: dict[str, Any] | None = None
    announce: Callable[..., None] | None = None  # emits a `serve` protocol line to the controller

    def schedule(self) -> Iterator[tuple[Phase, int]]:
        """cold (first call, kept apart), then warm-up, then measured repetitions."""
        yield "cold", 0
        for i in range(self.warmup):
            yield "warmup", i
        for i in range(self.repetitions):
            yield "measure", i


WorkloadFn = Callable[[Any, Context], Iterator[Sample]]


@dataclass(frozen=True)
class WorkloadInfo:
    name: str
    fn: WorkloadFn
    params: type[Any]
    needs: tuple[str, ...]
    tags: frozenset[str]
    doc: str


REGISTRY: dict[str, WorkloadInfo] = {}


def workload(
    name: str, *, params: type[Any] = NoParams, needs: tuple[str, ...] = (), tags: set[str] | None = None
) -> Callable[[WorkloadFn], WorkloadFn]:
    """Register a workload under `name`; duplicates are a programming error, not a silent override."""

    def deco(fn: WorkloadFn) -> WorkloadFn:
        if name in REGISTRY:
            raise ValueError(f"workload {name!r} registered twice ({REGISTRY[name].fn.__module__})")
        if not dataclasses.is_dataclass(params):
            raise TypeError(f"workload {name!r}: params must be a dataclass")
        doc = (fn.__doc__ or "").strip().splitlines()
        REGISTRY[name] = WorkloadInfo(name, fn, params, needs, frozenset(tags or ()), doc[0] if doc else "")
        return fn

    return deco


def param_names(info: WorkloadInfo) -> list[str]:
    return [f.name for f in dataclasses.fields(info.params)]


def now_ns() -> int:
    return time.perf_counter_ns()


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes, by the monotonic high-resolution clock."""
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e9


def require_module(name: str, why: str) -> Any:
    """Import an optional library lazily; a missing one becomes a clean skip, never a crash."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise Skipped(f"{name} is not installed in this target ({why})") from err
