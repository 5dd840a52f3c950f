"""CPU workloads (numpy, imported lazily) so benchbed is useful and testable without a GPU."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from benchbed.workloads.base import Context, Sample, require_module, workload


@dataclass(frozen=True)
class CpuGemm:
    n: int = 512
    dtype: str = "float64"


@workload("cpu.gemm", params=CpuGemm, needs=("numpy",), tags={"cpu", "compute"})
def cpu_gemm(p: CpuGemm, ctx: Context) -> Iterator[Sample]:
    """n×n matrix multiply with numpy's BLAS; 2n³ flops per call, reported in GFLOP/s."""
    np = require_module("numpy", "cpu.gemm multiplies numpy arrays")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((p.n, p.n)).astype(p.dtype)
    b = rng.standard_normal((p.n, p.n)).astype(p.dtype)
    out = np.empty_like(a)
    flops = 2.0 * p.n**3
    for phase, rep in ctx.schedule():
        t0 = time.perf_counter_ns()
        np.matmul(a, b, out=out)
        dt = (time.perf_counter_ns() - t0) / 1e9
        yield Sample("throughput", flops / dt / 1e9, "GFLOP/s", "higher", phase, rep)


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
            t0 = time.perf_counter_ns()
            fn()
            dt = (time.perf_counter_ns() - t0) / 1e9
            yield Sample(name, arrays * word * p.n / dt / 1e9, "GB/s", "higher", phase, rep)
