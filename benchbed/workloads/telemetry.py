"""NVML telemetry while GPU samples run: a sampler thread in the agent, summarised per timed batch. Stdlib-only;
NVML comes from the optional `nvidia-ml-py` package (module `pynvml`), imported lazily like torch.

A burst GEMM figure at an unknown clock is not a result one can defend: the sampler reads SM and memory clocks,
the clock-event (throttle) reasons, power draw against the enforced limit, temperature and the PCIe link every
`interval_s`; `span(t0, t1)` summarises the readings that overlap one batch (the last one before it, those
during it, and one taken at its end). A batch that overlapped any reason other than "GPU idle" is labelled
`throttled` with the reasons' names, as nvbench discards samples below 75 % of the default clock.

Health is compared with the state at the start of the workload after every batch: ECC error counts, remapped
rows, Xid events (critical errors, from an NVML event set) and other processes on the GPU. A change is labelled
on the sample where it was first seen (`health`), and other processes are named (`other_processes`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# nvmlClocksEventReasons / nvmlClocksThrottleReasons bits (the names changed in driver 535, the bits did not)
REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
BENIGN = 0x1  # idle: the reading before a batch may catch the device idle, which slows nothing measured
XID_EVENT = 0x8  # nvmlEventTypeXidCriticalError


def reason_names(bits: int) -> list[str]:
    names = [name for bit, name in REASONS.items() if bits & bit]
    rest = bits & ~sum(REASONS)
    return names + ([f"0x{rest:x}"] if rest else [])


@dataclass(frozen=True)
class Reading:
    t_ns: int
    sm_mhz: int | None
    mem_mhz: int | None
    power_w: float | None
    power_limit_w: float | None
    temp_c: int | None
    reasons: int
    pcie_gen: int | None
    pcie_width: int | None


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # one probe a driver or a MIG slice does not support must not hide the others
        return None


def nvml_bus_id(bus_id: str) -> str:
    """CUDA's "0000:3b:00.0" in NVML's form "00000000:3B:00.0"."""
    domain, _, rest = bus_id.partition(":")
    return f"{int(domain, 16):08X}:{rest.upper()}"


class Device:
    """One NVML device handle and the reads the sampler and the health check make."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml, self.h = nvml, handle
        reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        self._reasons = reasons or nvml.nvmlDeviceGetCurrentClocksThrottleReasons

    def read(self) -> Reading:
        n, h = self.nvml, self.h
        power = _call(n.nvmlDeviceGetPowerUsage, h)
        limit = _call(n.nvmlDeviceGetEnforcedPowerLimit, h)
        return Reading(
            time.perf_counter_ns(),
            _call(n.nvmlDeviceGetClockInfo, h, getattr(n, "NVML_CLOCK_SM", 1)),
            _call(n.nvmlDeviceGetClockInfo, h, getattr(n, "NVML_CLOCK_MEM", 2)),
            power / 1e3 if power is not None else None,
            limit / 1e3 if limit is not None else None,
            _call(n.nvmlDeviceGetTemperature, h, getattr(n, "NVML_TEMPERATURE_GPU", 0)),
            int(_call(self._reasons, h) or 0),
            _call(n.nvmlDeviceGetCurrPcieLinkGeneration, h),
            _call(n.nvmlDeviceGetCurrPcieLinkWidth, h),
        )

    def health(self) -> dict[str, Any]:
        """Counters that must not move during a measurement (volatile ECC counts, remapped rows)."""
        n, h = self.nvml, self.h
        out: dict[str, Any] = {}
        for name, kind in (("ecc_corrected", 0), ("ecc_uncorrected", 1)):
            out[name] = _call(n.nvmlDeviceGetTotalEccErrors, h, kind, 0)  # 0: NVML_VOLATILE_ECC
        rows = _call(n.nvmlDeviceGetRemappedRows, h)
        out["remapped_rows"] = (rows[0] + rows[1]) if rows else None
        out["remap_pending"] = bool(rows[2]) if rows else None
        return out

    def other_processes(self) -> list[int]:
        procs = _call(self.nvml.nvmlDeviceGetComputeRunningProcesses, self.h) or []
        return sorted({int(p.pid) for p in procs} - {os.getpid()})


class Sampler:
    """Polls one device every interval_s in a daemon thread; span() summarises a batch's window."""

    def __init__(self, device: Device, interval_s: float = 0.02, xids: Callable[[], list[int]] | None = None) -> None:
        self.device, self.interval_s = device, interval_s
        self.readings: deque[Reading] = deque(maxlen=200_000)
        self._xids = xids or (lambda: [])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="benchbed-nvml", daemon=True)
        self.baseline = device.health()
        self.seen_xids: list[int] = []

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.readings.append(self.device.read())
            self._stop.wait(self.interval_s)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def span(self, t0_ns: int, t1_ns: int) -> dict[str, Any]:
        """Labels for the batch that ran between t0_ns and t1_ns (perf_counter_ns)."""
        snapshot = list(self.readings)
        before = [r for r in snapshot if r.t_ns < t0_ns][-1:]
        window = [*before, *(r for r in snapshot if t0_ns <= r.t_ns <= t1_ns), self.device.read()]
        return {**summarise(window), **self._health()}

    def _health(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        now = self.device.health()
        moved = [f"{k} {self.baseline[k]}→{v}" for k, v in now.items() if v != self.baseline.get(k)]
        self.seen_xids.extend(self._xids())
        if self.seen_xids:
            moved.append("xid " + ",".join(str(x) for x in self.seen_xids))
        if moved:
            out["health"] = "; ".join(moved)
        others = self.device.other_processes()
        if others:
            out["other_processes"] = ",".join(str(p) for p in others)
        return out


def summarise(window: list[Reading]) -> dict[str, Any]:
    def vals(attr: str) -> list[Any]:
        return [getattr(r, attr) for r in window if getattr(r, attr) is not None]

    sm, mem, power, limit, temp = (
        vals("sm_mhz"),
        vals("mem_mhz"),
        vals("power_w"),
        vals("power_limit_w"),
        vals("temp_c"),
    )
    gen, width = vals("pcie_gen"), vals("pcie_width")
    out: dict[str, Any] = {"telemetry_n": len(window)}
    if sm:
        out.update(sm_mhz_min=min(sm), sm_mhz_max=max(sm))
    if mem:
        out["mem_mhz_min"] = min(mem)
    if power:
        out["power_w_max"] = round(max(power), 1)
    if limit:
        out["power_limit_w"] = round(min(limit), 1)
    if temp:
        out["temp_c_max"] = max(temp)
    if gen and width:
        out["pcie_busy"] = f"gen{max(gen)} x{max(width)}"  # while busy: an idle link trains down
    bits = 0
    for r in window:
        bits |= r.reasons
    if bits & ~BENIGN:
        out["throttled"] = ",".join(reason_names(bits & ~BENIGN))
    return out


def _handle(nvml: Any, bus_id: str | None, index: int) -> Any:
    """By PCI bus id (CUDA's and NVML's indices differ under CUDA_VISIBLE_DEVICES); by index only when the
    bus id is unknown and no CUDA_VISIBLE_DEVICES renumbers devices."""
    if bus_id:
        return nvml.nvmlDeviceGetHandleByPciBusId(nvml_bus_id(bus_id))
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        raise RuntimeError("no PCI bus id for the device and CUDA_VISIBLE_DEVICES is set: NVML index unknown")
    return nvml.nvmlDeviceGetHandleByIndex(index)


def _xid_reader(nvml: Any, handle: Any) -> tuple[Callable[[], list[int]], Callable[[], None]]:
    try:
        events = nvml.nvmlEventSetCreate()
        nvml.nvmlDeviceRegisterEvents(handle, XID_EVENT, events)
    except Exception:
        return (lambda: []), (lambda: None)

    def drain() -> list[int]:
        got: list[int] = []
        while True:
            try:
                got.append(int(nvml.nvmlEventSetWait_v2(events, 0).eventData))
            except Exception:  # NVMLError_Timeout: nothing pending
                return got

    return drain, lambda: _call(nvml.nvmlEventSetFree, events)


@contextlib.contextmanager
def watch(bus_id: str | None, index: int, interval_s: float = 0.02) -> Iterator[tuple[Sampler | None, str]]:
    """(sampler, how) around a workload's timed batches; (None, why not) without NVML. Never raises for NVML."""
    try:
        import pynvml
    except ImportError:
        yield None, "unavailable: pynvml (nvidia-ml-py) is not installed in this target"
        return
    try:
        pynvml.nvmlInit()
    except Exception as err:
        yield None, f"unavailable: nvmlInit failed ({err})"
        return
    sampler: Sampler | None = None
    free: Callable[[], None] = lambda: None  # noqa: E731
    try:
        try:
            handle = _handle(pynvml, bus_id, index)
            drain, free = _xid_reader(pynvml, handle)
            sampler = Sampler(Device(pynvml, handle), interval_s, drain).start()
        except Exception as err:
            yield None, f"unavailable: {err}"
            return
        yield sampler, f"nvml every {interval_s * 1e3:g} ms"
    finally:
        if sampler is not None:
            sampler.stop()
        free()
        _call(pynvml.nvmlShutdown)
