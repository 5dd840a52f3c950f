"""The GPU workloads' arithmetic, labels and guards through a scripted fake torch (tests/unit/fakegpu.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchbed.workloads import Context, Skipped, load_builtins
from benchbed.workloads.base import Sample
from tests.unit.fakegpu import FakeTorch, install

load_builtins()

H100_SXM = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def ctx() -> Context:
    return Context(repetitions=3, warmup=1)


def _run(name: str, ctx: Context, **params: Any) -> list[Sample]:
    info = load_builtins()[name]
    gen: Iterator[Sample] = info.fn(info.params(**params), ctx)
    return list(gen)


def test_gemm_rate_batch_and_guard(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    fake = FakeTorch(H100_SXM, matmul_ms=0.2)
    install(monkeypatch, fake)
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
    install(monkeypatch, FakeTorch(H100_SXM, matmul_ms=0.1))  # 1374 TFLOP/s: impossible on an H100
    measured = [s for s in _run("gpu.gemm", ctx, n=4096) if s.phase == "measure"]
    assert measured
    assert all(not s.valid for s in measured)
    assert all(s.value == pytest.approx(2 * 4096**3 / 0.1e-3 / 1e12) for s in measured)
    assert all("exceeds the datasheet peak 989.4 TFLOP/s" in (s.reason or "") for s in measured)


@pytest.mark.parametrize(("dtype", "tf32"), [("fp32", False), ("tf32", True), ("bf16", None)])
def test_gemm_tf32_switch(monkeypatch: pytest.MonkeyPatch, ctx: Context, dtype: str, tf32: bool | None) -> None:
    fake = FakeTorch(H100_SXM, matmul_ms=5.0)
    install(monkeypatch, fake)
    seen: set[object] = set()

    def matmul(a: Any, b: Any, out: Any) -> None:
        seen.add(fake.backends.cuda.matmul.allow_tf32)
        fake.clock_ms += 5.0

    fake.matmul = matmul  # type: ignore[method-assign]
    fake.backends.cuda.matmul.allow_tf32 = "before"
    _run("gpu.gemm", ctx, n=512, dtype=dtype)
    assert seen == {"before" if tf32 is None else tf32}
    assert fake.backends.cuda.matmul.allow_tf32 == "before"  # restored for whatever runs next in this process


def test_d2d_offers_both_conventions_each_named_in_its_unit(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    install(monkeypatch, FakeTorch(H100_SXM, copy_gbs=1500.0))  # 1500 GB/s of copy = 3000 GB/s counted twice
    measured = [s for s in _run("gpu.d2d_bandwidth", ctx, size_mb=64) if s.phase == "measure"]
    rw = [s for s in measured if s.metric == "bandwidth"]
    once = [s for s in measured if s.metric == "copy_bandwidth"]
    assert len(rw) == len(once) == 3
    assert all(s.value == pytest.approx(3000.0) and s.valid and s.unit == "GB/s (read+write)" for s in rw)
    assert all(s.value == pytest.approx(1500.0) and s.valid and s.unit == "GB/s (bytes once)" for s in once)
    assert (rw[0].labels["counted"], once[0].labels["counted"]) == ("read+write", "bytes once (nvbandwidth)")
    install(monkeypatch, FakeTorch(H100_SXM, copy_gbs=1800.0))  # 3600 counted > 3350: both figures invalid
    measured = [s for s in _run("gpu.d2d_bandwidth", ctx, size_mb=64) if s.phase == "measure"]
    assert all(not s.valid and "3350 GB/s" in (s.reason or "") for s in measured)


@pytest.mark.parametrize("name", ["gpu.h2d_bandwidth", "gpu.d2h_bandwidth"])
@pytest.mark.parametrize("pinned", [True, False])
def test_host_copies(monkeypatch: pytest.MonkeyPatch, ctx: Context, name: str, pinned: bool) -> None:
    fake = FakeTorch("NVIDIA H100 PCIe", copy_gbs=50.0)
    install(monkeypatch, fake)
    measured = [s for s in _run(name, ctx, size_mb=16, pinned=pinned) if s.phase == "measure"]
    assert fake.pinned == [pinned]
    assert all(s.value == pytest.approx(50.0) and s.valid for s in measured)
    assert measured[0].labels["memory"] == ("pinned" if pinned else "pageable")
    install(monkeypatch, FakeTorch("NVIDIA H100 PCIe", copy_gbs=80.0))
    measured = [s for s in _run(name, ctx, size_mb=16, pinned=pinned) if s.phase == "measure"]
    assert all(not s.valid and "64 GB/s" in (s.reason or "") for s in measured)


def test_launch_torch_is_host_submission_named_after_its_launcher(
    monkeypatch: pytest.MonkeyPatch, ctx: Context
) -> None:
    fake = FakeTorch(H100_SXM)
    install(monkeypatch, fake)
    samples = _run("gpu.launch_latency", ctx, launches=50)
    assert fake.calls["add"] == 1 + 50 * 4  # cold launch alone, then warm-up + 3 measured batches
    assert {s.metric for s in samples} == {"host_submit_torch_add"}
    assert {s.labels["launcher"] for s in samples} == {"torch"}
    assert all(s.unit == "µs" and s.better == "lower" and s.value > 0 for s in samples)
    assert [s.labels["launches"] for s in samples] == [1, 50, 50, 50, 50]


def test_launch_cupy_never_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    fake = FakeTorch(H100_SXM)
    install(monkeypatch, fake)  # cupy is not importable
    with pytest.raises(Skipped, match="launcher=cupy: cupy is not importable"):
        _run("gpu.launch_latency", ctx, launches=50, launcher="cupy")
    assert fake.calls["add"] == 0
    with pytest.raises(ValueError, match="not one of torch, cupy"):
        _run("gpu.launch_latency", ctx, launcher="auto")


def test_missing_device_index_is_a_skip(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    install(monkeypatch, FakeTorch(H100_SXM))
    with pytest.raises(Skipped, match="CUDA device 1 requested"):
        _run("gpu.gemm", ctx, device=1)


def test_bad_dtype_is_rejected() -> None:
    from benchbed.workloads.gpu import Gemm

    with pytest.raises(ValueError, match="not one of"):
        Gemm(dtype="fp8")


def test_gemm_on_a_mig_slice_is_guarded_by_its_share(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    """200 TFLOP/s passes the full H100's guard but is impossible on a 16-SM 1g slice (peak 119.9)."""
    install(monkeypatch, FakeTorch("NVIDIA H100 80GB HBM3 MIG 1g.10gb", matmul_ms=2 * 4096**3 / 200e12 * 1e3, sms=16))
    measured = [s for s in _run("gpu.gemm", ctx, n=4096) if s.phase == "measure"]
    assert measured
    assert all(not s.valid and "MIG 1g.10gb" in (s.reason or "") for s in measured)
    assert measured[0].labels["sms"] == 16


def test_gemm_at_fp32_speed_is_suspicious_not_invalid(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    install(monkeypatch, FakeTorch(H100_SXM, matmul_ms=2 * 4096**3 / 50e12 * 1e3))  # 50 TFLOP/s bf16
    samples = _run("gpu.gemm", ctx, n=4096)
    measured = [s for s in samples if s.phase == "measure"]
    assert all(s.valid for s in measured)
    assert all(s.labels["suspicious"].startswith("suspicious: 50 TFLOP/s bf16") for s in measured)
    assert all("suspicious" not in s.labels for s in samples if s.phase != "measure")
    install(monkeypatch, FakeTorch(H100_SXM, matmul_ms=2 * 4096**3 / 700e12 * 1e3))
    assert all("suspicious" not in s.labels for s in _run("gpu.gemm", ctx, n=4096))


def test_every_timed_batch_is_queued_behind_a_hold_kernel(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    fake = FakeTorch(H100_SXM, matmul_ms=0.2)
    install(monkeypatch, fake)
    samples = _run("gpu.gemm", ctx, n=4096)
    timed = [s for s in samples if s.phase != "cold"]
    holds = [i for i, line in enumerate(fake.log) if line.startswith("hold")]
    assert len(holds) == len(timed)  # one per warm-up/measured batch, none in calibration
    assert all(fake.log[i + 1] == "record" for i in holds)  # the start event is recorded right after the hold
    for s in timed:
        assert s.labels["hold_ms"] >= 0.5
        assert "host_gap_possible" not in s.labels
        assert s.value == pytest.approx(2 * 4096**3 / 0.2e-3 / 1e12)  # the hold adds no timed work


def test_a_host_slower_than_its_hold_is_labelled(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    fake = FakeTorch(H100_SXM, matmul_ms=0.2)
    install(monkeypatch, fake)
    info = load_builtins()["gpu.gemm"]
    gen = info.fn(info.params(n=4096), ctx)
    first = [next(gen)]  # cold: calibration and hold length are settled here
    fake.host_ms_per_call = 20.0  # from now on the host needs 20 ms per launch: far longer than the hold
    rest = [*first, *gen]
    measured = [s for s in rest if s.phase == "measure"]
    assert all("the host took" in s.labels["host_gap_possible"] for s in measured)


def test_no_hold_kernel_is_said(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    fake = FakeTorch(H100_SXM)
    del fake.cuda._sleep
    install(monkeypatch, fake)
    measured = [s for s in _run("gpu.gemm", ctx, n=4096) if s.phase == "measure"]
    assert all(s.labels["hold_ms"] == 0 and "_sleep is missing" in s.labels["hold_missing"] for s in measured)


def test_sustained_mode_adds_its_own_metric(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    install(monkeypatch, FakeTorch(H100_SXM, matmul_ms=0.2))
    samples = _run("gpu.gemm", ctx, n=4096, sustained_s=1.0)
    burst = [s for s in samples if s.metric == "throughput"]
    sustained = [s for s in samples if s.metric == "throughput_sustained"]
    assert len(burst) == 5
    assert 9 <= len(sustained) <= 11  # ~100 ms batches for 1 s of device time
    assert [s.repetition for s in sustained] == list(range(len(sustained)))
    assert all(s.phase == "measure" and s.labels["mode"] == "sustained" for s in sustained)
    assert [s.labels["t_s"] for s in sustained] == sorted(s.labels["t_s"] for s in sustained)
    assert all(s.value == pytest.approx(burst[-1].value) for s in sustained)
    with pytest.raises(ValueError, match="sustained_s"):
        _run("gpu.gemm", ctx, sustained_s=-1)
