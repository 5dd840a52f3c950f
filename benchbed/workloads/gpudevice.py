"""A CUDA device for the GPU workloads, through torch or else cupy (both imported lazily: stdlib-only at import):
which library can see the device, and why not when neither can (no driver, no device nodes, wrong index)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbed.workloads.base import Skipped

MAX_BATCH = 1 << 20  # calls per timed batch; more means the events or the call are broken
HOLD_MAX_MS = 50.0  # longest hold kernel queued before a batch
SPIN_HZ = 2.0e9  # cycles per second assumed for the hold kernel: above any current SM clock, so it never holds short
SPIN_KERNEL = r"""
extern "C" __global__ void benchbed_spin(long long cycles) {
    long long start = clock64();
    while (clock64() - start < cycles) { }
}
"""


@dataclass(frozen=True)
class Batch:
    """One event-timed batch: device ms, how long the host took to submit it, and whether a hold kernel ran
    first (so the start event fired only after the whole batch was queued)."""

    ms: float
    enqueue_ms: float
    held: bool


def torch_cuda_problem(torch: Any, index: int = 0) -> str | None:
    """Why torch cannot use CUDA device `index` here, specifically enough to act on; None when it can."""
    if torch.cuda.is_available():
        count = int(torch.cuda.device_count())
        if index < count:
            return None
        return f"CUDA device {index} requested but this target shows {count} (CUDA_VISIBLE_DEVICES, passthrough?)"
    if getattr(torch.version, "cuda", None) is None:
        why = f"torch {torch.__version__} is a CPU-only build"
    else:
        why = f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but finds no usable device"
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            why += f"; CUDA_VISIBLE_DEVICES={visible!r}"
        elif not Path("/dev/nvidiactl").exists():
            why += "; there is no /dev/nvidiactl (device nodes not passed into this target?)"
    return f"no CUDA device visible in this target (torch.cuda.is_available() is False; {why})"


# Where a CUDA driver is reachable, one of these exists (Linux driver, WSL2, Jetson/L4T). Checking them first
# spares the multi-second torch import in every target without a GPU.
DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/nvmap")


def no_device_nodes() -> str | None:
    """A skip reason when this Linux target plainly has no GPU device node; None when it may have one."""
    if not sys.platform.startswith("linux") or any(Path(node).exists() for node in DEVICE_NODES):
        return None
    return (
        f"no CUDA device visible in this target (none of {', '.join(DEVICE_NODES)} exists: "
        "no NVIDIA driver here, or its device nodes were not passed into this container/VM)"
    )


def optional(name: str) -> tuple[Any, str | None]:
    """(module, None) or (None, why not); a library that is present but broken is reported, not raised."""
    import importlib

    try:
        return importlib.import_module(name), None
    except ImportError as err:
        return None, f"{name} is not importable ({err})"


class Gpu:
    """The few device operations these workloads need, over torch or cupy."""

    backend = ""

    def __init__(self, lib: Any, index: int, name: str, sms: int | None = None, pci_bus_id: str | None = None) -> None:
        self.lib = lib
        self.index = index
        self.name = name
        self.sms = sms  # SMs CUDA reports: a MIG slice has fewer than its GPU
        self.pci_bus_id = pci_bus_id  # "0000:3b:00.0": the sysfs name, for NUMA placement and NVML

    def sync(self) -> None:
        raise NotImplementedError

    def event(self) -> Any:
        raise NotImplementedError

    def elapsed_ms(self, start: Any, stop: Any) -> float:
        raise NotImplementedError

    def device_bytes(self, nbytes: int) -> Any:
        raise NotImplementedError

    def host_bytes(self, nbytes: int, pinned: bool) -> Any:
        raise NotImplementedError

    def copy(self, dst: Any, src: Any, kind: str) -> None:
        """Stream-ordered copy; kind is h2d, d2h or d2d."""
        raise NotImplementedError

    def wall_s(self, fn: Callable[[], object]) -> float:
        """One call by wall clock, device idle before and drained after: what a first call really costs."""
        self.sync()
        t0 = time.perf_counter_ns()
        fn()
        self.sync()
        return (time.perf_counter_ns() - t0) / 1e9

    def hold(self, ms: float) -> bool:
        """Queue a kernel that spins on the device for about `ms`; False (and `hold_why` set) when there is none.

        Recorded after it, the start event fires only once the host has queued the batch behind it, so the
        host's dispatch gap (a slow Python loop, a starved vCPU) is not counted as device time."""
        return False

    hold_why: str | None = "this backend has no hold kernel"

    def batch(self, fn: Callable[[], object], iters: int, hold_ms: float = 0.0) -> Batch:
        """Device time of `iters` back-to-back calls, by a CUDA event pair on the current stream, optionally
        queued behind a hold kernel; the host's submission time is measured alongside."""
        held = hold_ms > 0 and self.hold(hold_ms)
        start, stop = self.event(), self.event()
        start.record()
        t0 = time.perf_counter_ns()
        for _ in range(iters):
            fn()
        stop.record()
        enqueue_ms = (time.perf_counter_ns() - t0) / 1e6
        stop.synchronize()
        return Batch(self.elapsed_ms(start, stop), enqueue_ms, held)

    def batch_ms(self, fn: Callable[[], object], iters: int) -> float:
        return self.batch(fn, iters).ms

    def calibrate(self, fn: Callable[[], object], batch_ms_min: float) -> int:
        """Smallest-ish iteration count whose batch lasts at least batch_ms_min (10% margin)."""
        iters = 1
        while True:
            ms = self.batch_ms(fn, iters)
            if ms >= batch_ms_min:
                return iters
            if iters >= MAX_BATCH:
                raise RuntimeError(f"{iters} calls took {ms} ms by CUDA events: the timer or the call is broken")
            grow = math.ceil(iters * batch_ms_min * 1.1 / ms) if ms > 0 else iters * 2
            iters = min(max(grow, iters * 2), iters * 1000, MAX_BATCH)


class TorchGpu(Gpu):
    backend = "torch"

    def __init__(self, torch: Any, index: int) -> None:
        torch.cuda.set_device(index)  # events record on the current device's stream
        sms, bus = None, None
        props_of = getattr(torch.cuda, "get_device_properties", None)
        if props_of is not None:
            props = props_of(index)
            sms = getattr(props, "multi_processor_count", None)
            if hasattr(props, "pci_bus_id"):
                bus = f"{getattr(props, 'pci_domain_id', 0):04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
        super().__init__(torch, index, str(torch.cuda.get_device_name(index)), sms, bus)
        self.device = torch.device("cuda", index)

    def sync(self) -> None:
        self.lib.cuda.synchronize(self.device)

    def hold(self, ms: float) -> bool:
        spin = getattr(self.lib.cuda, "_sleep", None)  # torch's own device spin (private, long-standing)
        if spin is None:
            self.hold_why = "torch.cuda._sleep is missing in this torch"
            return False
        spin(int(ms * 1e-3 * SPIN_HZ))
        return True

    def event(self) -> Any:
        return self.lib.cuda.Event(enable_timing=True)

    def elapsed_ms(self, start: Any, stop: Any) -> float:
        return float(start.elapsed_time(stop))

    def device_bytes(self, nbytes: int) -> Any:
        return self.lib.empty(nbytes, dtype=self.lib.uint8, device=self.device)

    def host_bytes(self, nbytes: int, pinned: bool) -> Any:
        buf = self.lib.empty(nbytes, dtype=self.lib.uint8, pin_memory=pinned)
        buf.fill_(1)  # touch every page now, so page faults are not timed as copy time
        return buf

    def copy(self, dst: Any, src: Any, kind: str) -> None:
        # non_blocking keeps pinned copies asynchronous (cudaMemcpyAsync); pageable ones stage through the driver
        dst.copy_(src, non_blocking=True)


class CupyGpu(Gpu):
    backend = "cupy"

    def __init__(self, cupy: Any, index: int) -> None:
        cupy.cuda.Device(index).use()
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"]
        bus = str(cupy.cuda.runtime.deviceGetPCIBusId(index)).lower()
        text = name.decode() if isinstance(name, bytes) else str(name)
        super().__init__(cupy, index, text, props.get("multiProcessorCount"), bus)
        import numpy

        self.np = numpy

    def sync(self) -> None:
        self.lib.cuda.Device(self.index).synchronize()

    _spin: Any = None

    def hold(self, ms: float) -> bool:
        if self._spin is None and self.hold_why is Gpu.hold_why:
            try:
                self._spin = self.lib.RawKernel(SPIN_KERNEL, "benchbed_spin")
                _ = self._spin.kernel  # compile now, not inside a timed batch
            except Exception as err:  # NVRTC missing: no hold, and the samples say so
                self.hold_why = f"cupy.RawKernel spin failed: {str(err)[:200]}"
        if self._spin is None:
            return False
        self._spin((1,), (1,), (self.np.int64(int(ms * 1e-3 * SPIN_HZ)),))
        return True

    def event(self) -> Any:
        return self.lib.cuda.Event()

    def elapsed_ms(self, start: Any, stop: Any) -> float:
        return float(self.lib.cuda.get_elapsed_time(start, stop))

    def device_bytes(self, nbytes: int) -> Any:
        return self.lib.empty(nbytes, dtype=self.lib.uint8)

    def host_bytes(self, nbytes: int, pinned: bool) -> Any:
        if pinned:
            mem = self.lib.cuda.alloc_pinned_memory(nbytes)
            buf = self.np.frombuffer(mem, self.np.uint8, nbytes)  # buf.base keeps the pinned block alive
        else:
            buf = self.np.empty(nbytes, self.np.uint8)
        buf.fill(1)
        return buf

    def copy(self, dst: Any, src: Any, kind: str) -> None:
        rt = self.lib.cuda.runtime
        to = dst.ctypes.data if kind == "d2h" else dst.data.ptr
        frm = src.ctypes.data if kind == "h2d" else src.data.ptr
        code = {"h2d": rt.memcpyHostToDevice, "d2h": rt.memcpyDeviceToHost, "d2d": rt.memcpyDeviceToDevice}[kind]
        rt.memcpyAsync(to, frm, src.nbytes, code, self.lib.cuda.get_current_stream().ptr)


def open_gpu(index: int) -> Gpu:
    """torch if it sees CUDA device `index`, else cupy if it does, else Skipped naming what was missing."""
    fast = no_device_nodes()
    if fast:
        raise Skipped(fast)
    torch, torch_err = optional("torch")
    problem = torch_err
    if torch is not None:
        problem = torch_cuda_problem(torch, index)
        if problem is None:
            return TorchGpu(torch, index)
    cupy, cupy_err = optional("cupy")
    if cupy is not None:
        try:
            count = int(cupy.cuda.runtime.getDeviceCount())
        except Exception as err:  # cupy raises CUDARuntimeError when the driver is absent
            count, cupy_err = 0, f"cupy: {err}"
        if index < count:
            return CupyGpu(cupy, index)
        cupy_err = cupy_err or f"cupy sees {count} CUDA device(s), device {index} requested"
    if torch is None and cupy is None:
        raise Skipped(f"no CUDA access in this target: neither torch nor cupy is installed ({torch_err}; {cupy_err})")
    raise Skipped("; ".join(x for x in (problem, cupy_err) if x))
