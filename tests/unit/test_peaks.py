"""Plausibility guards: the datasheet table, and the GPU workloads' arithmetic through a scripted fake torch.

The fake keeps a simulated device clock that CUDA events read, so TFLOP/s and GB/s come out exactly and the
guards can be driven over and under the peak without a GPU. It never stands in for a real measurement.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from benchbed.workloads import Context, Skipped, gpu, gpudevice, load_builtins, peaks
from benchbed.workloads.base import Sample

load_builtins()

H100_SXM = "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize(
    ("name", "label"),
    [
        (H100_SXM, "H100 SXM"),
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", "H200"),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB SXM"),
        ("NVIDIA GH200 480GB", None),  # NVLink-C2C host link: not an H200
        ("NVIDIA H100 NVL", None),  # more memory bandwidth than the SXM part: no guard rather than a wrong one
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_lookup_by_device_name(name: str, label: str | None) -> None:
    found = peaks.lookup(name)
    assert (found.label if found else None) == label


def test_datasheet_figures() -> None:
    sxm = peaks.lookup(H100_SXM)
    pcie = peaks.lookup("NVIDIA H100 PCIe")
    h200 = peaks.lookup("NVIDIA H200")
    a100 = peaks.lookup("NVIDIA A100-SXM4-80GB")
    assert sxm
    assert pcie
    assert h200
    assert a100
    assert sxm.matmul_tflops == {"bf16": 989.0, "fp16": 989.0, "tf32": 494.7, "fp32": 66.9}
    assert (sxm.memory_gbs, pcie.memory_gbs, h200.memory_gbs, a100.memory_gbs) == (3350, 2000, 4800, 2039)
    assert h200.matmul_tflops == sxm.matmul_tflops
    assert pcie.matmul_tflops["bf16"] == 756
    assert a100.matmul_tflops["tf32"] == 156
    assert (sxm.host_link_gbs, a100.host_link_gbs) == (64, 32)


def test_guard_marks_impossible_values() -> None:
    assert peaks.guard_matmul(700.0, "bf16", H100_SXM) == (True, None)
    valid, reason = peaks.guard_matmul(1200.0, "bf16", H100_SXM)
    assert not valid
    assert reason == f"1200 TFLOP/s exceeds the datasheet peak 989 TFLOP/s (H100 SXM dense bf16) for {H100_SXM}"
    assert not peaks.guard_matmul(70.0, "fp32", H100_SXM)[0]
    assert not peaks.guard_memory(3400.0, H100_SXM)[0]
    assert peaks.guard_memory(3400.0, "NVIDIA H200") == (True, None)
    valid, reason = peaks.guard_host_link(70.0, "NVIDIA A100 80GB PCIe")
    assert not valid
    assert reason
    assert "32 GB/s" in reason


def test_unknown_gpu_is_never_flagged() -> None:
    assert peaks.guard_matmul(1e9, "bf16", "Some Future GPU") == (True, None)
    assert peaks.guard_memory(1e9, "Some Future GPU") == (True, None)
    assert peaks.guard_host_link(1e9, "Some Future GPU") == (True, None)


# ------------------------------------------------------------------------------------ scripted fake torch


class FakeTorch:
    """Just enough of torch.cuda for gpu.py: kernels advance a device clock by a scripted cost."""

    def __init__(self, name: str, *, matmul_ms: float = 0.2, copy_gbs: float = 1000.0, add_ms: float = 0.002) -> None:
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

            def synchronize(self) -> None:
                pass

            def elapsed_time(self, other: Event) -> float:
                return other.t - self.t

        self.cuda = types.SimpleNamespace(
            is_available=lambda: True,
            device_count=lambda: 1,
            get_device_name=lambda i: fake.name,
            set_device=lambda i: None,
            synchronize=lambda dev=None: None,
            Event=Event,
        )

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


@pytest.fixture
def ctx() -> Context:
    return Context(repetitions=3, warmup=1)


def _install(monkeypatch: pytest.MonkeyPatch, fake: FakeTorch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake)
    monkeypatch.setitem(sys.modules, "cupy", None)  # an installed cupy must not mix real launches into the fake
    monkeypatch.setattr(gpudevice, "no_device_nodes", lambda: None)  # this host may have no /dev/nvidia*
    monkeypatch.setattr(gpu, "no_device_nodes", lambda: None)


def _run(name: str, ctx: Context, **params: Any) -> list[Sample]:
    info = load_builtins()[name]
    gen: Iterator[Sample] = info.fn(info.params(**params), ctx)
    return list(gen)


def test_gemm_rate_batch_and_guard(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    fake = FakeTorch(H100_SXM, matmul_ms=0.2)
    _install(monkeypatch, fake)
    samples = _run("gpu.gemm", ctx, n=4096)
    assert [s.phase for s in samples] == ["cold", "warmup", "measure", "measure", "measure"]
    measured = [s for s in samples if s.phase != "cold"]
    expected = 2 * 4096**3 / 0.2e-3 / 1e12  # 687 TFLOP/s
    for s in measured:
        assert s.value == pytest.approx(expected)
        assert (s.unit, s.better, s.valid, s.reason) == ("TFLOP/s", "higher", True, None)
        assert s.labels["iters"] * 0.2 >= 1.0  # the batch lasted ≥ batch_ms_min
        assert s.labels["timer"] == "cuda-event"
        assert s.labels["backend"] == "torch"
        assert s.labels["dtype"] == "bf16"
    assert samples[0].labels == {**samples[0].labels, "iters": 1, "timer": "wall"}


def test_gemm_above_peak_is_reported_invalid(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    _install(monkeypatch, FakeTorch(H100_SXM, matmul_ms=0.1))  # 1374 TFLOP/s: impossible on an H100
    measured = [s for s in _run("gpu.gemm", ctx, n=4096) if s.phase == "measure"]
    assert measured
    assert all(not s.valid for s in measured)
    assert all(s.value == pytest.approx(2 * 4096**3 / 0.1e-3 / 1e12) for s in measured)
    assert all("exceeds the datasheet peak 989 TFLOP/s" in (s.reason or "") for s in measured)


@pytest.mark.parametrize(("dtype", "tf32"), [("fp32", False), ("tf32", True), ("bf16", None)])
def test_gemm_tf32_switch(monkeypatch: pytest.MonkeyPatch, ctx: Context, dtype: str, tf32: bool | None) -> None:
    fake = FakeTorch(H100_SXM, matmul_ms=5.0)
    _install(monkeypatch, fake)
    seen: set[object] = set()

    def matmul(a: Any, b: Any, out: Any) -> None:
        seen.add(fake.backends.cuda.matmul.allow_tf32)
        fake.clock_ms += 5.0

    fake.matmul = matmul  # type: ignore[method-assign]
    fake.backends.cuda.matmul.allow_tf32 = "before"
    _run("gpu.gemm", ctx, n=512, dtype=dtype)
    assert seen == {"before" if tf32 is None else tf32}
    assert fake.backends.cuda.matmul.allow_tf32 == "before"  # restored for whatever runs next in this process


def test_d2d_counts_read_and_write(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    _install(monkeypatch, FakeTorch(H100_SXM, copy_gbs=1500.0))  # 1500 GB/s of copy = 3000 GB/s counted
    measured = [s for s in _run("gpu.d2d_bandwidth", ctx, size_mb=64) if s.phase == "measure"]
    assert all(s.value == pytest.approx(3000.0) and s.valid for s in measured)
    assert measured[0].labels["counted"] == "read+write"
    _install(monkeypatch, FakeTorch(H100_SXM, copy_gbs=1800.0))  # 3600 counted > 3350
    measured = [s for s in _run("gpu.d2d_bandwidth", ctx, size_mb=64) if s.phase == "measure"]
    assert all(not s.valid and "3350 GB/s" in (s.reason or "") for s in measured)


@pytest.mark.parametrize("name", ["gpu.h2d_bandwidth", "gpu.d2h_bandwidth"])
@pytest.mark.parametrize("pinned", [True, False])
def test_host_copies(monkeypatch: pytest.MonkeyPatch, ctx: Context, name: str, pinned: bool) -> None:
    fake = FakeTorch("NVIDIA H100 PCIe", copy_gbs=50.0)
    _install(monkeypatch, fake)
    measured = [s for s in _run(name, ctx, size_mb=16, pinned=pinned) if s.phase == "measure"]
    assert fake.pinned == [pinned]
    assert all(s.value == pytest.approx(50.0) and s.valid for s in measured)
    assert measured[0].labels["memory"] == ("pinned" if pinned else "pageable")
    _install(monkeypatch, FakeTorch("NVIDIA H100 PCIe", copy_gbs=80.0))
    measured = [s for s in _run(name, ctx, size_mb=16, pinned=pinned) if s.phase == "measure"]
    assert all(not s.valid and "64 GB/s" in (s.reason or "") for s in measured)


def test_launch_latency_falls_back_to_torch_add(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    fake = FakeTorch(H100_SXM)
    _install(monkeypatch, fake)
    samples = _run("gpu.launch_latency", ctx, launches=50)
    assert fake.calls["add"] == 1 + 50 * 4  # cold launch alone, then warm-up + 3 measured batches
    assert {s.labels["kernel"] for s in samples} == {"torch-1elem-add"}
    assert all(s.unit == "µs" and s.better == "lower" and s.value > 0 for s in samples)
    assert [s.labels["launches"] for s in samples] == [1, 50, 50, 50, 50]


def test_missing_device_index_is_a_skip(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    _install(monkeypatch, FakeTorch(H100_SXM))
    with pytest.raises(Skipped, match="CUDA device 1 requested"):
        _run("gpu.gemm", ctx, device=1)


def test_bad_dtype_is_rejected() -> None:
    from benchbed.workloads.gpu import Gemm

    with pytest.raises(ValueError, match="not one of"):
        Gemm(dtype="fp8")
