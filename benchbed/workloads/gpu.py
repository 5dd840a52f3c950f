"""GPU workloads: GEMM, copy bandwidths, kernel-launch latency and CUDA context start-up.

torch is preferred and cupy is the fallback, both imported lazily so this module stays stdlib-only. Device time
is taken with CUDA events around batches of at least `batch_ms_min`, each queued behind a hold kernel so the
host's dispatch gap is not counted, with NVML telemetry around every batch (gpubatch.py, telemetry.py); the batch
size is calibrated once, then fixed for every measured sample. The first call ever is timed by wall clock
(synchronize before and after) and kept apart as the `cold` sample: it holds cuBLAS handle creation, kernel
selection and lazy module loading, which a VM can make slower. Host copies place their host buffers on the
GPU's NUMA node (numa.py). Without a CUDA device every workload raises Skipped before its first sample: no number
is ever invented. Rates above the GPU's datasheet peak are reported with valid=False, tensor-core rates at fp32
speed are labelled suspicious (see peaks.py).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from benchbed.workloads import peaks
from benchbed.workloads.base import Context, Sample, Skipped, workload
from benchbed.workloads.gpubatch import Rate, batched
from benchbed.workloads.gpudevice import Gpu, TorchGpu, no_device_nodes, open_gpu, optional
from benchbed.workloads.numa import PLACEMENTS, place
from benchbed.workloads.startup import child_report, spawn_until_line
from benchbed.workloads.telemetry import watch

MiB = 1 << 20


# --------------------------------------------------------------------------------------------------- gemm

GEMM_DTYPES = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class Gemm:
    dtype: str = "bf16"
    n: int = 4096
    device: int = 0
    batch_ms_min: float = 1.0
    sustained_s: float = 0.0  # > 0: also `throughput_sustained`, back-to-back for this long (20 s: at the power cap)

    def __post_init__(self) -> None:
        if self.dtype not in GEMM_DTYPES:
            raise ValueError(f"gpu.gemm: dtype {self.dtype!r} is not one of {', '.join(GEMM_DTYPES)}")
        if self.n < 1 or self.batch_ms_min <= 0 or self.sustained_s < 0:
            raise ValueError("gpu.gemm: n must be ≥ 1, batch_ms_min > 0 and sustained_s ≥ 0")


def _torch_gemm(gpu: TorchGpu, p: Gemm) -> tuple[Callable[[], object], dict[str, Any]]:
    torch = gpu.lib
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[p.dtype]
    gen = torch.Generator(device=gpu.device).manual_seed(0)  # random data: zeros would draw less power
    a = torch.randn(p.n, p.n, device=gpu.device, dtype=dtype, generator=gen)
    b = torch.randn(p.n, p.n, device=gpu.device, dtype=dtype, generator=gen)
    c = torch.empty(p.n, p.n, device=gpu.device, dtype=dtype)
    return lambda: torch.matmul(a, b, out=c), {"torch": str(torch.__version__)}


def _tf32(gpu: Gpu, p: Gemm) -> Callable[[], None]:
    """Set torch's TF32 switch for fp32/tf32 (the legacy flag exists in every torch we may meet); returns undo.

    Left alone for fp16/bf16. Reading the flag raises where a program mixed it with the newer fp32_precision API;
    then there is nothing known to restore."""
    if gpu.backend != "torch" or p.dtype not in ("fp32", "tf32"):
        return lambda: None
    matmul = gpu.lib.backends.cuda.matmul
    try:
        before = matmul.allow_tf32
    except RuntimeError:
        before = None
    matmul.allow_tf32 = p.dtype == "tf32"

    def undo() -> None:
        if before is not None:
            matmul.allow_tf32 = before

    return undo


def _cupy_gemm(gpu: Gpu, p: Gemm) -> tuple[Callable[[], object], dict[str, Any]]:
    cp = gpu.lib
    if p.dtype in ("bf16", "tf32"):
        raise Skipped(f"gpu.gemm dtype {p.dtype} needs torch here: cupy has no bfloat16 and fixes TF32 at import")
    if p.dtype == "fp32" and os.environ.get("CUPY_TF32") == "1":
        raise Skipped("gpu.gemm fp32 with cupy: CUPY_TF32=1 is set, so cupy would multiply in TF32")
    rng = cp.random.default_rng(0)
    a = rng.standard_normal((p.n, p.n), dtype=cp.float32).astype(p.dtype.replace("fp", "float"))
    b = rng.standard_normal((p.n, p.n), dtype=cp.float32).astype(a.dtype)
    c = cp.empty_like(a)
    return lambda: cp.matmul(a, b, out=c), {"cupy": str(cp.__version__)}


@workload("gpu.gemm", params=Gemm, needs=("cuda",), tags={"gpu", "compute"})
def gemm(p: Gemm, ctx: Context) -> Iterator[Sample]:
    """Dense n×n matmul via cuBLAS in fp32/tf32/fp16/bf16; TFLOP/s = 2n³·iters / device time."""
    gpu = open_gpu(p.device)
    fn, extra = _torch_gemm(gpu, p) if isinstance(gpu, TorchGpu) else _cupy_gemm(gpu, p)
    labels = {"backend": gpu.backend, "gpu": gpu.name, "dtype": p.dtype, "n": p.n, "sms": gpu.sms, **extra}
    undo = _tf32(gpu, p)
    rate = Rate(
        "throughput",
        "TFLOP/s",
        2.0 * p.n**3,
        1e12,
        guard=lambda v: peaks.guard_matmul(v, p.dtype, gpu.name, gpu.sms),
        suspect=lambda v: peaks.suspicious_matmul(v, p.dtype, p.n, gpu.name, gpu.sms),
    )
    try:
        with watch(gpu.pci_bus_id, gpu.index) as (w, how):
            labels["telemetry"] = how
            yield from batched(
                gpu, ctx, fn, rate, batch_ms_min=p.batch_ms_min, labels=labels, sustained_s=p.sustained_s, watch=w
            )
    finally:
        undo()


# --------------------------------------------------------------------------------------------- bandwidth


@dataclass(frozen=True)
class D2D:
    size_mb: int = 1024  # MiB per buffer; keep it far above L2 (50 MB on H100) or you measure cache
    device: int = 0
    batch_ms_min: float = 1.0


RW_UNIT = "GB/s (read+write)"
ONCE_UNIT = "GB/s (bytes once)"


@workload("gpu.d2d_bandwidth", params=D2D, needs=("cuda",), tags={"gpu", "memory"})
def d2d_bandwidth(p: D2D, ctx: Context) -> Iterator[Sample]:
    """Device-to-device copy in GB/s (1e9), under both conventions, each named in its unit.

    `bandwidth` counts read + write (2 × bytes per copy, as STREAM copy does): comparable with the memory's
    datasheet bandwidth. `copy_bandwidth` counts the bytes once, as nvbandwidth and bandwidthTest do: compare it
    with their figures, never with the other metric."""
    gpu = open_gpu(p.device)
    nbytes = int(p.size_mb * MiB)
    src, dst = gpu.device_bytes(nbytes), gpu.device_bytes(nbytes)
    rate = Rate("bandwidth", RW_UNIT, 2.0 * nbytes, 1e9, guard=lambda v: peaks.guard_memory(v, gpu.name))
    labels = {"backend": gpu.backend, "gpu": gpu.name, "bytes": nbytes}
    copy = lambda: gpu.copy(dst, src, "d2d")  # noqa: E731
    with watch(gpu.pci_bus_id, gpu.index) as (w, how):
        labels["telemetry"] = how
        for s in batched(gpu, ctx, copy, rate, batch_ms_min=p.batch_ms_min, labels=labels, watch=w):
            yield dataclasses.replace(s, labels={**s.labels, "counted": "read+write"})
            once = {**s.labels, "counted": "bytes once (nvbandwidth)"}
            yield dataclasses.replace(s, metric="copy_bandwidth", value=s.value / 2, unit=ONCE_UNIT, labels=once)


@dataclass(frozen=True)
class HostCopy:
    size_mb: int = 256  # MiB
    pinned: bool = True  # page-locked host memory (DMA straight from it) vs pageable (staged by the driver)
    device: int = 0
    batch_ms_min: float = 1.0
    numa: str = "local"  # host buffers on the GPU's NUMA node (local), on another node (remote), or left (any)

    def __post_init__(self) -> None:
        if self.numa not in PLACEMENTS:
            raise ValueError(f"gpu host copy: numa {self.numa!r} is not one of {', '.join(PLACEMENTS)}")


def _host_copy(p: HostCopy, ctx: Context, kind: str) -> Iterator[Sample]:
    """Runs on the chosen node's CPUs from before the host buffer is allocated (first touch places its pages)
    until the last sample; the placement is in every sample's labels."""
    gpu = open_gpu(p.device)
    nbytes = int(p.size_mb * MiB)
    placement, restore = place(gpu.pci_bus_id, p.numa)
    try:
        host, dev = gpu.host_bytes(nbytes, p.pinned), gpu.device_bytes(nbytes)
        dst, src = (dev, host) if kind == "h2d" else (host, dev)
        rate = Rate("bandwidth", "GB/s", float(nbytes), 1e9, guard=lambda v: peaks.guard_host_link(v, gpu.name))
        labels = {
            "backend": gpu.backend,
            "gpu": gpu.name,
            "bytes": nbytes,
            "memory": "pinned" if p.pinned else "pageable",
            **placement.labels(),
        }
        with watch(gpu.pci_bus_id, gpu.index) as (w, how):
            labels["telemetry"] = how
            copy = lambda: gpu.copy(dst, src, kind)  # noqa: E731
            yield from batched(gpu, ctx, copy, rate, batch_ms_min=p.batch_ms_min, labels=labels, watch=w)
    finally:
        restore()


@workload("gpu.h2d_bandwidth", params=HostCopy, needs=("cuda",), tags={"gpu", "pcie"})
def h2d_bandwidth(p: HostCopy, ctx: Context) -> Iterator[Sample]:
    """Host-to-device copy in GB/s (1e9, bytes moved once); pinned or pageable host memory."""
    yield from _host_copy(p, ctx, "h2d")


@workload("gpu.d2h_bandwidth", params=HostCopy, needs=("cuda",), tags={"gpu", "pcie"})
def d2h_bandwidth(p: HostCopy, ctx: Context) -> Iterator[Sample]:
    """Device-to-host copy in GB/s (1e9, bytes moved once); pinned or pageable host memory."""
    yield from _host_copy(p, ctx, "d2h")


# ------------------------------------------------------------------------------------------ launch latency

EMPTY_KERNEL = 'extern "C" __global__ void k() {}'


LAUNCHERS = {"torch": "host_submit_torch_add", "cupy": "host_submit_cupy_empty"}


@dataclass(frozen=True)
class Launch:
    launches: int = 1000
    device: int = 0
    launcher: str = "torch"  # torch: a 1-element add; cupy: an empty RawKernel. Never one standing in for the other

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"gpu.launch_latency: launcher {self.launcher!r} is not one of {', '.join(LAUNCHERS)}")
        if self.launches < 1:
            raise ValueError("gpu.launch_latency: launches must be ≥ 1")


def _launcher(gpu: Gpu, which: str) -> tuple[Callable[[], object], dict[str, Any]]:
    """The launch the metric is named after, or Skipped: a missing cupy is never replaced by torch's add (the
    two cost different amounts, so one metric name must mean one launcher).

    Loading the module happens here, not in the cold sample: whether NVRTC's disk cache is warm is not what a
    launch costs."""
    if which == "torch":
        if not isinstance(gpu, TorchGpu):
            raise Skipped("gpu.launch_latency launcher=torch: torch cannot use CUDA here (cupy can)")
        x = gpu.lib.zeros(1, device=gpu.device)
        return lambda: x.add_(1), {"kernel": "torch-1elem-add", "launcher": "torch"}
    cupy, err = (gpu.lib, None) if gpu.backend == "cupy" else optional("cupy")
    if cupy is None:
        raise Skipped(f"gpu.launch_latency launcher=cupy: {err}")
    try:
        if gpu.backend != "cupy":
            cupy.cuda.Device(gpu.index).use()
        kernel = cupy.RawKernel(EMPTY_KERNEL, "k")
        _ = kernel.kernel  # compile and load now
    except Exception as exc:  # NVRTC missing, driver/toolkit mismatch
        raise Skipped(f"gpu.launch_latency launcher=cupy: cupy.RawKernel failed: {str(exc)[:300]}") from exc
    return lambda: kernel((1,), (1,), ()), {"kernel": "empty", "launcher": "cupy.RawKernel"}


@workload("gpu.launch_latency", params=Launch, needs=("cuda",), tags={"gpu", "latency"})
def launch_latency(p: Launch, ctx: Context) -> Iterator[Sample]:
    """Host submission throughput: mean µs per kernel launch over a batch, by wall clock with synchronize before
    and after (the workload keeps its historical name; its metric says what it is).

    Launches are asynchronous, so this is the host-side submission rate (driver + ioctl/doorbell path), which is
    exactly what a VM's or container's extra layers can slow; the cold sample is the first launch alone. The
    metric names the launcher (host_submit_torch_add, host_submit_cupy_empty): never compare across them."""
    gpu = open_gpu(p.device)
    fn, extra = _launcher(gpu, p.launcher)
    labels = {"backend": gpu.backend, "gpu": gpu.name, **extra}
    metric = LAUNCHERS[p.launcher]
    for phase, rep in ctx.schedule():
        n = 1 if phase == "cold" else p.launches
        gpu.sync()
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        gpu.sync()
        us = (time.perf_counter_ns() - t0) / 1e3 / n
        yield Sample(metric, us, "µs", "lower", phase, rep, labels={**labels, "launches": n})


# ------------------------------------------------------------------------------------------- context init

# Runs in a fresh interpreter: import, then the first CUDA op, each timed inside the child; one JSON line out.
# Self-contained on purpose (the child cannot import benchbed), so the skip reasons are repeated here.
_CONTEXT_CHILD = r"""
import json, sys, time
dev = int(sys.argv[1])

def with_torch():
    t0 = time.perf_counter()
    try:
        import torch
    except ImportError as err:
        return {"problem": "torch is not importable (%s)" % err}
    t1 = time.perf_counter()
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            why = "torch %s is a CPU-only build" % torch.__version__
        else:
            why = "torch %s is built for CUDA %s but finds no usable device" % (torch.__version__, torch.version.cuda)
        return {"problem": "no CUDA device visible in this target (torch.cuda.is_available() is False; %s)" % why}
    if dev >= torch.cuda.device_count():
        return {"problem": "CUDA device %d requested, torch sees %d" % (dev, torch.cuda.device_count())}
    torch.cuda.init()
    x = torch.ones(1, device=torch.device("cuda", dev))
    torch.cuda.synchronize(dev)
    return {"backend": "torch", "import_s": t1 - t0, "init_s": time.perf_counter() - t1, "ok": bool(x.item() == 1)}

def with_cupy():
    t0 = time.perf_counter()
    try:
        import cupy
    except ImportError as err:
        return {"problem": "cupy is not importable (%s)" % err}
    t1 = time.perf_counter()
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:
        return {"problem": "no CUDA device visible in this target (cupy: %s)" % err}
    if dev >= count:
        return {"problem": "CUDA device %d requested, cupy sees %d" % (dev, count)}
    cupy.cuda.Device(dev).use()
    x = cupy.ones(1)
    cupy.cuda.Device(dev).synchronize()
    return {"backend": "cupy", "import_s": t1 - t0, "init_s": time.perf_counter() - t1, "ok": bool(x[0] == 1)}

out = with_torch()
if "problem" in out:
    other = with_cupy()
    out = other if "problem" not in other else {"skip": out["problem"] + "; " + other["problem"]}
print(json.dumps(out), flush=True)
"""


@dataclass(frozen=True)
class ContextInit:
    device: int = 0


@workload("gpu.context_init", params=ContextInit, needs=("cuda",), tags={"gpu", "startup"})
def context_init(p: ContextInit, ctx: Context) -> Iterator[Sample]:
    """Fresh process → first CUDA op completed, in ms, with the child's own import / CUDA-init split.

    `spawn_to_first_op` runs from Popen to the child's report; `import` (torch or cupy) and `cuda_init` (driver
    init, context creation, first kernel, synchronize) are timed inside the child."""
    fast = no_device_nodes()
    if fast:
        raise Skipped(fast)
    argv = [sys.executable, "-c", _CONTEXT_CHILD, str(p.device)]
    for phase, rep in ctx.schedule():
        run = spawn_until_line(argv)
        report = child_report("CUDA context-init child", run)
        if "skip" in report:
            raise Skipped(str(report["skip"]))
        labels = {"backend": report["backend"], "device": p.device}
        yield Sample("spawn_to_first_op", run.ready_s * 1e3, "ms", "lower", phase, rep, labels=labels)
        yield Sample("import", float(report["import_s"]) * 1e3, "ms", "lower", phase, rep, labels=labels)
        yield Sample("cuda_init", float(report["init_s"]) * 1e3, "ms", "lower", phase, rep, labels=labels)
