"""Calibration workloads: they measure the harness, not the machine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from benchbed.workloads.base import Context, Sample, workload


@dataclass(frozen=True)
class Noop:
    duration_ms: float = 10.0


@workload("util.noop", params=Noop, tags={"calibration"})
def noop(p: Noop, ctx: Context) -> Iterator[Sample]:
    """Busy-waits duration_ms per sample, so harness overhead per sample can be measured against it."""
    target_ns = int(p.duration_ms * 1e6)
    for phase, rep in ctx.schedule():
        t0 = time.perf_counter_ns()
        while time.perf_counter_ns() - t0 < target_ns:
            pass
        yield Sample("duration", (time.perf_counter_ns() - t0) / 1e6, "ms", "lower", phase, rep)
