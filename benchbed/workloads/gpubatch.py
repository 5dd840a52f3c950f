"""Timing discipline for the batched GPU workloads (gemm, copies). Stdlib-only.

- cold: the first call ever, by wall clock, kept apart.
- The batch size is calibrated once so a batch lasts ≥ batch_ms_min, then fixed for every sample.
- Every timed batch is queued behind a hold kernel (nvbench and nvbandwidth do the same with a blocking kernel):
  the start event fires only when the device finishes the hold, by which time the host has queued the batch,
  so a slow host (Python dispatch, a starved vCPU) does not pass for a slow GPU. The hold lasts twice the host's
  submission time of one batch (at least 0.5 ms, at most 50 ms); a sample whose submission took longer than
  its hold is labelled `host_gap_possible`.
- `sustained_s` > 0 adds `<metric>_sustained` samples from back-to-back batches of about 100 ms for that long:
  the rate at the power cap and steady temperature, next to the burst figure of the short samples.
- With a telemetry watch (telemetry.py), each batch's window carries clocks, power, temperature and the
  throttle reasons seen while it ran; a sample that overlapped a throttle reason is labelled `throttled`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from benchbed.workloads.base import Context, Sample
from benchbed.workloads.gpudevice import HOLD_MAX_MS, Batch, Gpu

SUSTAINED_BATCH_MS = 100.0
HOLD_MIN_MS = 0.5


def _never(value: float) -> str | None:
    return None


@dataclass(frozen=True)
class Rate:
    """How a batch becomes a sample: value = work × iters / seconds / scale, judged by guard and suspect."""

    metric: str
    unit: str
    work: float
    scale: float
    guard: Callable[[float], tuple[bool, str | None]]
    suspect: Callable[[float], str | None] = _never


class Watch(Protocol):
    """What the telemetry sampler offers a batch (telemetry.Sampler); None where NVML is unavailable."""

    def span(self, t0_ns: int, t1_ns: int) -> dict[str, Any]: ...


def hold_for(enqueue_ms: float) -> float:
    return min(HOLD_MAX_MS, max(HOLD_MIN_MS, 2.0 * enqueue_ms))


def _timed(
    gpu: Gpu, fn: Callable[[], object], iters: int, hold_ms: float, watch: Watch | None
) -> tuple[Batch, dict[str, Any]]:
    t0 = time.perf_counter_ns()
    b = gpu.batch(fn, iters, hold_ms)
    extra: dict[str, Any] = {"iters": iters, "timer": "cuda-event", "enqueue_ms": round(b.enqueue_ms, 3)}
    if b.held:
        extra["hold_ms"] = round(hold_ms, 3)
        if b.enqueue_ms > hold_ms:
            extra["host_gap_possible"] = (
                f"the host took {b.enqueue_ms:.3g} ms to queue a batch held for {hold_ms:.3g} ms"
            )
    else:
        extra["hold_ms"] = 0.0
        extra["hold_missing"] = gpu.hold_why
    if watch is not None:
        extra.update(watch.span(t0, time.perf_counter_ns()))
    return b, extra


def _sample(rate: Rate, value: float, phase: Any, rep: int, labels: dict[str, Any], metric: str = "") -> Sample:
    valid, reason = rate.guard(value)
    if phase == "measure":
        why = rate.suspect(value)
        if why:
            labels = {**labels, "suspicious": why}
    return Sample(metric or rate.metric, value, rate.unit, "higher", phase, rep, valid, reason, labels)


def batched(
    gpu: Gpu,
    ctx: Context,
    fn: Callable[[], object],
    rate: Rate,
    *,
    batch_ms_min: float,
    labels: dict[str, Any],
    sustained_s: float = 0.0,
    watch: Watch | None = None,
) -> Iterator[Sample]:
    """The cold sample, then one held, event-timed batch per warm-up/measured sample, then the sustained run."""
    iters, hold_ms = 1, HOLD_MIN_MS
    for phase, rep in ctx.schedule():
        if phase == "cold":
            seconds = gpu.wall_s(fn)
            iters = gpu.calibrate(fn, batch_ms_min)
            hold_ms = hold_for(gpu.batch(fn, iters).enqueue_ms)
            value = rate.work / seconds / rate.scale
            yield _sample(rate, value, phase, rep, {**labels, "iters": 1, "timer": "wall"})
            continue
        b, extra = _timed(gpu, fn, iters, hold_ms, watch)
        yield _sample(rate, rate.work * iters / (b.ms / 1e3) / rate.scale, phase, rep, {**labels, **extra})
    if sustained_s > 0:
        yield from _sustained(gpu, fn, rate, iters, hold_ms, sustained_s, labels, watch)


def _sustained(
    gpu: Gpu,
    fn: Callable[[], object],
    rate: Rate,
    iters: int,
    hold_ms: float,
    sustained_s: float,
    labels: dict[str, Any],
    watch: Watch | None,
) -> Iterator[Sample]:
    """Back-to-back batches of about SUSTAINED_BATCH_MS until `sustained_s` of device time: each one a sample of
    `<metric>_sustained`, labelled with its start time, so the report shows the rate after clocks settled."""
    probe = gpu.batch(fn, iters, hold_ms)
    per_call_ms = max(probe.ms / iters, 1e-6)
    big = max(iters, math.ceil(SUSTAINED_BATCH_MS / per_call_ms))
    hold_big = hold_for(probe.enqueue_ms * big / iters)
    device_s, rep = 0.0, 0
    wall_end = time.monotonic() + 2 * sustained_s + 10  # a stalled device must not hold the case forever
    while device_s < sustained_s and time.monotonic() < wall_end:
        b, extra = _timed(gpu, fn, big, hold_big, watch)
        extra = {**labels, **extra, "mode": "sustained", "t_s": round(device_s, 3)}
        device_s += b.ms / 1e3
        value = rate.work * big / (b.ms / 1e3) / rate.scale
        yield _sample(rate, value, "measure", rep, extra, metric=f"{rate.metric}_sustained")
        rep += 1
