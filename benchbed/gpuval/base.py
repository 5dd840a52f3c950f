"""The validation run's frame: a check's result, the shared environment, running checks under a time budget."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from benchbed.workloads import Context, Skipped, load_builtins
from benchbed.workloads.base import Sample
from benchbed.workloads.telemetry import Sampler, summarise


@dataclass
class Result:
    name: str
    title: str
    status: str  # ok | mismatch | info | skipped | error
    summary: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    telemetry: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Env:
    """What every check shares: the device, torch (when usable), the background sampler, the deadline."""

    device: int
    deadline: float
    problem: str | None = None  # why no GPU check can run (dry mode, no device, no torch)
    torch: Any = None
    sampler: Sampler | None = None
    telemetry_how: str = ""
    nvml: Any = None  # pynvml with a handle, for facts (persistence, max clocks)
    handle: Any = None

    def left_s(self) -> float:
        return self.deadline - time.monotonic()


def run_workload(name: str, ctx: Context | None = None, **params: Any) -> list[Sample]:
    info = load_builtins()[name]
    return list(info.fn(info.params(**params), ctx or Context(repetitions=5, warmup=1)))


def median(samples: Iterable[Sample], metric: str) -> float:
    values = [s.value for s in samples if s.metric == metric and s.phase == "measure"]
    if not values:
        raise RuntimeError(f"no measured samples of {metric}")
    return float(statistics.median(values))


def agree(ours: float, ref: float, tolerance: float) -> bool:
    return ref > 0 and abs(ours / ref - 1.0) <= tolerance


Check = Callable[[Env], Result]


def run_checks(env: Env, checks: list[tuple[str, str, Check]], min_left_s: float = 5.0) -> list[Result]:
    """Every check in order; one that cannot run is skipped with its reason, one that raises is an error (the
    run goes on: one broken check must not hide the others)."""
    results: list[Result] = []
    for name, title, fn in checks:
        t0_ns, t0 = time.perf_counter_ns(), time.monotonic()
        if env.problem:
            res = Result(name, title, "skipped", env.problem)
        elif env.left_s() < min_left_s:
            res = Result(name, title, "skipped", "the run's time budget is spent")
        else:
            try:
                res = fn(env)
            except Skipped as skip:
                res = Result(name, title, "skipped", str(skip))
            except Exception as err:  # reported in the document; the remaining checks still run
                res = Result(name, title, "error", f"{type(err).__name__}: {str(err)[:500]}")
        res.name, res.title, res.seconds = name, title, time.monotonic() - t0
        if env.sampler is not None and res.status != "skipped":
            readings = [r for r in list(env.sampler.readings) if r.t_ns >= t0_ns]
            res.telemetry = summarise(readings) if readings else {}
        results.append(res)
    return results
