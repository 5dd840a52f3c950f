"""CPU workloads (numpy, imported lazily) so benchbed is useful and testable without a GPU."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from benchbed.workloads.base import Context, Sample, Skipped, require_module, workload

# The thread-count variables of the BLAS libraries numpy is built against; each is read once, when the library loads.
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def preemptions() -> int:
    """Involuntary context switches of this thread so far: a timed call during which it rose was descheduled for
    someone else, and its wall time holds that wait. Recorded per sample (label `preempted`), never used to drop
    one: how often a boundary's own processes preempt the workload is part of what it costs."""
    who = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
    return resource.getrusage(who).ru_nivcsw


@dataclass(frozen=True)
class CpuGemm:
    n: int = 512
    dtype: str = "float64"
    threads: int = 0  # BLAS threads; 0 = the library's default (all cores it sees)


def blas_threads(threads: int) -> contextlib.AbstractContextManager[Any]:
    """Pin numpy's BLAS to `threads` threads for the block.

    One thread per GEMM leaves the other cores to the harness and the engine, which on a small machine decides
    whether instances are comparable at all (a multi-threaded BLAS stalls whenever any thread loses its core).
    Before numpy loads, the libraries' own variables do it; once loaded only threadpoolctl can, and without it the
    workload skips rather than report a number measured at a thread count nobody asked for.
    """
    if threads <= 0:
        return contextlib.nullcontext()
    if "numpy" not in sys.modules:
        for var in BLAS_THREAD_VARS:
            os.environ[var] = str(threads)
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-not-found,unused-ignore]
    except ImportError as err:
        raise Skipped(
            f"cpu.gemm threads={threads}: numpy was loaded before the workload and threadpoolctl is not installed "
            "to change its BLAS threads (run it in a fresh agent, or install threadpoolctl)"
        ) from err
    return threadpool_limits(limits=threads, user_api="blas")  # type: ignore[no-any-return]


@workload("cpu.gemm", params=CpuGemm, needs=("numpy",), tags={"cpu", "compute"})
def cpu_gemm(p: CpuGemm, ctx: Context) -> Iterator[Sample]:
    """n×n matrix multiply with numpy's BLAS; 2n³ flops per call, reported in GFLOP/s."""
    if p.threads < 0:
        raise Skipped(f"cpu.gemm threads={p.threads}: give a positive thread count, or 0 for the library default")
    with blas_threads(p.threads):
        yield from _gemm(p, ctx)


def _gemm(p: CpuGemm, ctx: Context) -> Iterator[Sample]:
    np = require_module("numpy", "cpu.gemm multiplies numpy arrays")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((p.n, p.n)).astype(p.dtype)
    b = rng.standard_normal((p.n, p.n)).astype(p.dtype)
    out = np.empty_like(a)
    flops = 2.0 * p.n**3
    for phase, rep in ctx.schedule():
        nv = preemptions()
        t0 = time.perf_counter_ns()
        np.matmul(a, b, out=out)
        dt = (time.perf_counter_ns() - t0) / 1e9
        seen = {"preempted": preemptions() - nv}
        yield Sample("throughput", flops / dt / 1e9, "GFLOP/s", "higher", phase, rep, labels=seen)


@dataclass(frozen=True)
class Stream:
    n: int = 10_000_000
    scalar: float = 3.0


@workload("cpu.stream", params=Stream, needs=("numpy",), tags={"cpu", "memory"})
def cpu_stream(p: Stream, ctx: Context) -> Iterator[Sample]:
    """STREAM copy/scale/add/triad on float64 arrays, counting bytes as STREAM does (2,2,3,3 × 8 × n)."""
    np = require_module("numpy", "cpu.stream uses numpy arrays")
    a = np.full(p.n, 1.0)
    b = np.full(p.n, 2.0)
    c = np.zeros(p.n)
    s = p.scalar
    word = 8

    def triad() -> None:
        np.multiply(c, s, out=a)
        np.add(a, b, out=a)

    kernels: dict[str, tuple[Callable[[], object], int]] = {
        "copy": (lambda: np.copyto(c, a), 2),
        "scale": (lambda: np.multiply(c, s, out=b), 2),
        "add": (lambda: np.add(a, b, out=c), 3),
        "triad": (triad, 3),
    }
    for phase, rep in ctx.schedule():
        for name, (fn, arrays) in kernels.items():
            nv = preemptions()
            t0 = time.perf_counter_ns()
            fn()
            dt = (time.perf_counter_ns() - t0) / 1e9
            seen = {"preempted": preemptions() - nv}
            yield Sample(name, arrays * word * p.n / dt / 1e9, "GB/s", "higher", phase, rep, labels=seen)
