"""Independent reference timings, written the way NVIDIA's and triton's tools take them, to hold benchbed's
figures against: CUDA-graph replay (no host dispatch in the timed region), triton's do_bench where installed, an
nvbandwidth-style copy (bytes counted once, the copy verified), and launch-rate variants."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from benchbed.workloads.gpudevice import SPIN_HZ


def events_ms(torch: Any, fn: Callable[[], object]) -> float:
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    stop.record()
    stop.synchronize()
    return float(start.elapsed_time(stop))


def graph_of(torch: Any, fn: Callable[[], object], calls: int) -> Any:
    """A CUDA graph of `calls` back-to-back calls (warmed up on a side stream first, as capture requires)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    torch.cuda.synchronize()
    return graph


def graph_ms_per_call(torch: Any, fn: Callable[[], object], calls: int, reps: int = 10) -> float:
    """Median device ms per call over `reps` replays of a graph of `calls` calls."""
    graph = graph_of(torch, fn, calls)
    graph.replay()
    torch.cuda.synchronize()
    return statistics.median(events_ms(torch, graph.replay) / calls for _ in range(reps))


def gemm_reference_ms(torch: Any, fn: Callable[[], object], calls: int) -> tuple[float, str]:
    """ms per GEMM by triton's do_bench (median) where triton is installed, else by CUDA-graph replay."""
    try:
        from triton.testing import do_bench  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return graph_ms_per_call(torch, fn, calls), f"CUDA graph of {calls} calls, median of 10 replays"
    try:
        return float(do_bench(fn, return_mode="median")), "triton.testing.do_bench (median)"
    except TypeError:  # an older triton without return_mode
        return float(do_bench(fn)), "triton.testing.do_bench"


def verified_copy_gbs(torch: Any, nbytes: int, reps: int = 10, calls: int = 5) -> tuple[float, bool]:
    """nvbandwidth-style device-to-device copy: cudaMemcpyAsync of random bytes, bytes counted once, median of
    `reps` event-timed batches of `calls` copies; then the destination is compared with the source."""
    gen = torch.Generator(device="cuda").manual_seed(1)
    src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device="cuda", generator=gen)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()

    def batch() -> None:
        for _ in range(calls):
            dst.copy_(src, non_blocking=True)

    ms = statistics.median(events_ms(torch, batch) for _ in range(reps))
    dst.zero_()
    dst.copy_(src)
    ok = bool(torch.equal(dst, src))
    return nbytes * calls / (ms / 1e3) / 1e9, ok


def launch_variants(torch: Any, launches: int = 1000) -> list[dict[str, Any]]:
    """Per-launch µs of one tiny kernel (1-element add) three ways: host submission by wall clock, device-side
    rate queued behind a spin (no host in the timed region), and inside a CUDA graph."""
    import time

    x = torch.zeros(1, device="cuda")

    def launches_fn() -> None:
        for _ in range(launches):
            x.add_(1)

    launches_fn()
    torch.cuda.synchronize()
    walls = []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter_ns()
        launches_fn()
        torch.cuda.synchronize()
        walls.append((time.perf_counter_ns() - t0) / 1e3 / launches)
    rows = [{"variant": "host submission (wall clock, sync before/after)", "us_per_launch": statistics.median(walls)}]
    queued = []
    for _ in range(5):
        torch.cuda._sleep(int(0.05 * SPIN_HZ))  # 50 ms: far longer than queueing 1000 launches
        queued.append(events_ms(torch, launches_fn) * 1e3 / launches)
    rows.append(
        {"variant": "device rate, queued behind a spin kernel (events)", "us_per_launch": statistics.median(queued)}
    )
    graph_us = graph_ms_per_call(torch, lambda: x.add_(1), launches, reps=5) * 1e3
    rows.append({"variant": f"CUDA graph of {launches} launches (events)", "us_per_launch": graph_us})
    return rows
