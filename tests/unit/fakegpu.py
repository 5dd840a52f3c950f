"""A scripted fake torch for the GPU workloads' unit tests (no GPU here).

The fake keeps a simulated device clock that CUDA events read, so TFLOP/s and GB/s come out exactly and the
guards can be driven over and under the peak without a GPU. It never stands in for a real measurement.
"""

from __future__ import annotations

import contextlib
import sys
import time
import types
from typing import Any

import pytest

from benchbed.workloads import gpu, gpudevice


class FakeTorch:
    """Just enough of torch.cuda for gpu.py: kernels advance a device clock by a scripted cost."""

    def __init__(
        self,
        name: str,
        *,
        matmul_ms: float = 0.2,
        copy_gbs: float = 1000.0,
        add_ms: float = 0.002,
        sms: int = 132,
        bus: tuple[int, int, int] = (0, 0x3B, 0),
    ) -> None:
        self.name = name
        self.clock_ms = 0.0
        self.matmul_ms, self.copy_gbs, self.add_ms = matmul_ms, copy_gbs, add_ms
        self.calls: dict[str, int] = {"matmul": 0, "copy": 0, "add": 0}
        self.pinned: list[bool] = []
        self.__version__ = "9.9.9+fake"
        self.version = types.SimpleNamespace(cuda="99.0")
        self.float32, self.float16, self.bfloat16, self.uint8 = "float32", "float16", "bfloat16", "uint8"
        self.backends = types.SimpleNamespace(cuda=types.SimpleNamespace(matmul=types.SimpleNamespace(allow_tf32=None)))
        fake = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing
                self.t = -1.0

            def record(self) -> None:
                self.t = fake.clock_ms
                fake.log.append("record")

            def synchronize(self) -> None:
                pass

            def elapsed_time(self, other: Event) -> float:
                return other.t - self.t

        self.cuda = types.SimpleNamespace(
            is_available=lambda: True,
            device_count=lambda: 1,
            get_device_name=lambda i: fake.name,
            get_device_properties=lambda i: types.SimpleNamespace(
                multi_processor_count=sms, pci_domain_id=bus[0], pci_bus_id=bus[1], pci_device_id=bus[2]
            ),
            set_device=lambda i: None,
            synchronize=lambda dev=None: None,
            Event=Event,
            _sleep=self._sleep,
        )
        self.log: list[str] = []  # hold / start / stop, in order
        self.host_ms_per_call = 0.0  # host time a launch takes (to drive the host-gap label)

    def device(self, kind: str, index: int) -> str:
        return f"{kind}:{index}"

    def Generator(self, device: str = "cpu") -> Any:
        return types.SimpleNamespace(manual_seed=lambda seed: object())

    def _tensor(self, nbytes: int) -> Any:
        fake = self

        class Tensor:
            def __init__(self) -> None:
                self.nbytes = nbytes

            def fill_(self, value: float) -> None:
                pass

            def copy_(self, src: Any, non_blocking: bool = False) -> None:
                fake.calls["copy"] += 1
                fake.clock_ms += src.nbytes / (fake.copy_gbs * 1e9) * 1e3

            def add_(self, value: float) -> None:
                fake.calls["add"] += 1
                fake.clock_ms += fake.add_ms

        return Tensor()

    def empty(self, *size: int, dtype: str = "float32", device: str = "cpu", pin_memory: bool = False) -> Any:
        if device == "cpu":
            self.pinned.append(pin_memory)
        return self._tensor(size[0])

    def randn(self, *size: int, **kwargs: Any) -> Any:
        return self._tensor(size[0])

    def zeros(self, *size: int, **kwargs: Any) -> Any:
        return self._tensor(size[0])

    def matmul(self, a: Any, b: Any, out: Any) -> None:
        self.calls["matmul"] += 1
        self.clock_ms += self.matmul_ms
        if self.host_ms_per_call:
            time.sleep(self.host_ms_per_call / 1e3)

    def _sleep(self, cycles: int) -> None:
        """torch.cuda._sleep: the device spins; it runs before the start event, so it adds no timed work."""
        self.log.append(f"hold {cycles}")
        self.clock_ms += cycles / 2e6


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeTorch, nvml: FakeNvml | None = None) -> None:
    """The fake torch, no cupy, and the fake NVML (or none: an installed pynvml must not read this host's GPU)."""
    monkeypatch.setitem(sys.modules, "torch", fake)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setitem(sys.modules, "cupy", None)  # an installed cupy must not mix real launches into the fake
    monkeypatch.setattr(gpudevice, "no_device_nodes", lambda: None)  # this host may have no /dev/nvidia*
    monkeypatch.setattr(gpu, "no_device_nodes", lambda: None)


class NVMLError(Exception):
    pass


class FakeNvml(types.ModuleType):
    """Just enough of pynvml for telemetry.py and the fingerprint: every reading comes from attributes a test
    sets (`reasons`, `sm_mhz`, `ecc`, `xids` ...), so a throttle or an Xid can be made to happen mid-run."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self, bus: str = "00000000:3B:00.0", name: str = "NVIDIA H100 80GB HBM3") -> None:
        super().__init__("pynvml")
        self.bus, self.name = bus, name
        self.inits = self.shutdowns = 0
        self.sm_mhz, self.mem_mhz, self.power_mw, self.limit_mw, self.temp_c = 1980, 2619, 500_000, 700_000, 60
        self.reasons = 0
        self.pcie = (5, 16)
        self.ecc = [0, 0]
        self.rows = (0, 0, 0, 0)
        self.xids: list[int] = []
        self.procs: list[int] = []
        self.persistence, self.compute_mode = 1, 0
        self.bar1_total = 128 << 30
        self.memory_total = 80 << 30

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetHandleByPciBusId(self, bus: str) -> str:
        if bus != self.bus:
            raise NVMLError(f"no device at {bus}")
        return "h0"

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return "h0"

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetClockInfo(self, h: str, which: int) -> int:
        return self.sm_mhz if which == 1 else self.mem_mhz

    def nvmlDeviceGetMaxClockInfo(self, h: str, which: int) -> int:
        return 1980 if which == 1 else 2619

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        return self.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: str) -> int:
        return self.limit_mw

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        return self.temp_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
        return self.reasons

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: str) -> int:
        return self.pcie[0]

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: str) -> int:
        return self.pcie[1]

    def nvmlDeviceGetTotalEccErrors(self, h: str, kind: int, counter: int) -> int:
        return self.ecc[kind]

    def nvmlDeviceGetRemappedRows(self, h: str) -> tuple[int, int, int, int]:
        return self.rows

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list[Any]:
        return [types.SimpleNamespace(pid=p, usedGpuMemory=1 << 20) for p in self.procs]

    def nvmlEventSetCreate(self) -> str:
        return "events"

    def nvmlDeviceRegisterEvents(self, h: str, kinds: int, events: str) -> None:
        pass

    def nvmlEventSetWait_v2(self, events: str, timeout_ms: int) -> Any:
        if not self.xids:
            raise NVMLError("Timeout")
        return types.SimpleNamespace(eventData=self.xids.pop(0))

    def nvmlEventSetFree(self, events: str) -> None:
        pass

    def nvmlDeviceGetPersistenceMode(self, h: str) -> int:
        return self.persistence

    def nvmlDeviceGetComputeMode(self, h: str) -> int:
        return self.compute_mode

    def nvmlDeviceGetBAR1MemoryInfo(self, h: str) -> Any:
        return types.SimpleNamespace(bar1Total=self.bar1_total, bar1Used=1 << 20, bar1Free=self.bar1_total - (1 << 20))

    def nvmlDeviceGetMemoryInfo(self, h: str) -> Any:
        return types.SimpleNamespace(total=self.memory_total, used=0, free=self.memory_total)

    def nvmlSystemGetDriverVersion(self) -> str:
        return "570.86.15"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return 12080

    def nvmlDeviceGetName(self, h: str) -> str:
        return self.name

    def nvmlDeviceGetUUID(self, h: str) -> str:
        return "GPU-00000000-fake"

    def nvmlDeviceGetPciInfo(self, h: str) -> Any:
        return types.SimpleNamespace(busId=self.bus.encode())

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: str) -> int:
        return 5

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: str) -> int:
        return 16

    def nvmlDeviceGetEccMode(self, h: str) -> tuple[int, int]:
        return (1, 1)

    def nvmlDeviceGetMigMode(self, h: str) -> tuple[int, int]:
        raise NVMLError("Not Supported")

    def nvmlDeviceGetPowerManagementLimit(self, h: str) -> int:
        return self.limit_mw


class FakeTorchGraphs(FakeTorch):
    """FakeTorch plus what scripts/gpu-validate's references use: streams, CUDA graphs (a replay costs what the
    captured calls cost), randint/empty_like/equal/zero_, and an fp32 GEMM 8x slower unless TF32 is allowed."""

    def __init__(self, name: str, **kw: Any) -> None:
        super().__init__(name, **kw)
        fake = self
        props = self.cuda.get_device_properties(0)
        props.name = name
        self.cuda.get_device_properties = lambda i: props

        class Graph:
            cost_ms = 0.0

            def replay(self) -> None:
                fake.clock_ms += self.cost_ms

        class Capture:
            def __init__(self, graph: Graph) -> None:
                self.graph = graph

            def __enter__(self) -> None:
                self.t0 = fake.clock_ms

            def __exit__(self, *exc: object) -> None:
                self.graph.cost_ms = fake.clock_ms - self.t0
                fake.clock_ms = self.t0  # capture records work, it does not run it

        stream = types.SimpleNamespace(wait_stream=lambda other: None)
        self.cuda.Stream = lambda: stream
        self.cuda.current_stream = lambda: stream
        self.cuda.stream = lambda s: contextlib.nullcontext()
        self.cuda.CUDAGraph = Graph
        self.cuda.graph = Capture

    def matmul(self, a: Any, b: Any, out: Any) -> None:
        super().matmul(a, b, out)
        if self.backends.cuda.matmul.allow_tf32 is False:
            self.clock_ms += 7 * self.matmul_ms

    def _tensor(self, nbytes: int) -> Any:
        t = super()._tensor(nbytes)
        t.zero_ = lambda: None
        return t

    def randint(self, lo: int, hi: int, size: tuple[int, ...], **kw: Any) -> Any:
        return self._tensor(size[0])

    def empty_like(self, t: Any) -> Any:
        return self._tensor(t.nbytes)

    def equal(self, a: Any, b: Any) -> bool:
        return bool(a.nbytes == b.nbytes)
