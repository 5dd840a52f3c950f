"""GPU, model-load and start-up workloads, run for real on this host.

`local` tests run everywhere. `gpu` tests need a CUDA device: they skip without one, or fail when
BENCHBED_REQUIRE names gpu, and then hold each workload against a plain torch reference timed in the same process.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchbed.agent.build import build_agent
from benchbed.workloads import Context, Skipped, load_builtins
from benchbed.workloads.base import Sample
from benchbed.workloads.model import drop_page_cache, resident_fraction
from tests.conftest import REPO, need

GPU_WORKLOADS = [
    "gpu.gemm",
    "gpu.d2d_bandwidth",
    "gpu.h2d_bandwidth",
    "gpu.d2h_bandwidth",
    "gpu.launch_latency",
    "gpu.context_init",
]


def _cuda_usable() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _run(name: str, ctx: Context, **params: Any) -> list[Sample]:
    info = load_builtins()[name]
    return list(info.fn(info.params(**params), ctx))


def _measured(samples: list[Sample], metric: str) -> list[float]:
    return [s.value for s in samples if s.metric == metric and s.phase == "measure"]


def _check_shape(samples: list[Sample], metrics: dict[str, tuple[str, str]], reps: int, warmup: int) -> None:
    """Every metric appears once per scheduled call, with its unit and direction, finite and positive."""
    assert {s.metric for s in samples} == set(metrics)
    for metric, (unit, better) in metrics.items():
        mine = [s for s in samples if s.metric == metric]
        assert [s.phase for s in mine] == ["cold"] + ["warmup"] * warmup + ["measure"] * reps
        for s in mine:
            assert (s.unit, s.better) == (unit, better)
            assert math.isfinite(s.value)
            assert s.value > 0


# ------------------------------------------------------------------------------------------- no CUDA here


@pytest.mark.local
@pytest.mark.parametrize("name", GPU_WORKLOADS)
def test_gpu_workloads_skip_without_cuda(name: str, tmp_path: Path) -> None:
    if _cuda_usable():
        pytest.skip("this host has CUDA; the gpu-marked tests cover it")
    info = load_builtins()[name]
    gen = info.fn(info.params(), Context(repetitions=1, warmup=0, scratch_dir=tmp_path))
    with pytest.raises(Skipped, match="CUDA") as skip:
        next(gen)  # Skipped on the first step: not one sample came before it
    assert "no CUDA" in str(skip.value)


@pytest.mark.local
def test_torch_reason_when_device_nodes_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cheap device-node check, torch itself must say why (here: a CPU-only build or no device)."""
    if _cuda_usable():
        pytest.skip("this host has CUDA")
    pytest.importorskip("torch")
    from benchbed.workloads import gpudevice

    monkeypatch.setattr(gpudevice, "no_device_nodes", lambda: None)
    with pytest.raises(Skipped, match=r"torch\.cuda\.is_available\(\) is False; torch .*(CPU-only build|no usable)"):
        gpudevice.open_gpu(0)


@pytest.mark.local
def test_gpu_skip_through_the_agent(tmp_path: Path) -> None:
    """The modules work from inside the zipapp, and a skip reaches the controller as a `skipped` line."""
    if _cuda_usable():
        pytest.skip("this host has CUDA")
    agent = build_agent(tmp_path / "agent")
    spec = {"workload": "gpu.gemm", "params": {"n": 64}, "repetitions": 1, "scratch_dir": str(tmp_path / "s")}
    proc = subprocess.run(
        [sys.executable, str(agent.path), "run", json.dumps(spec)], capture_output=True, text=True, timeout=120
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, proc.stderr
    skipped = [rec for rec in lines if rec["t"] == "skipped"]
    assert len(skipped) == 1
    assert "no CUDA device visible" in skipped[0]["reason"]
    assert not [rec for rec in lines if rec["t"] == "sample"]


@pytest.mark.local
def test_modules_are_stdlib_only_at_import() -> None:
    """They are packed into the agent and imported by the target's bare python3."""
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("numpy", "torch", "cupy", "pynvml", "pandas", "scipy"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
from benchbed.workloads import load_builtins
for name in ("gpu", "model", "startup", "peaks"):
    importlib.import_module("benchbed.workloads." + name)
print(sorted(n for n in load_builtins() if n.split(".")[0] in ("gpu", "model", "startup")))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "gpu.gemm" in proc.stdout
    assert "model.load" in proc.stdout
    assert "startup.import" in proc.stdout


# -------------------------------------------------------------------------------------------- model.load


@pytest.mark.local
def test_model_load_cpu(tmp_path: Path) -> None:
    ctx = Context(repetitions=2, warmup=1, scratch_dir=tmp_path)
    samples = _run("model.load", ctx, size_mb=4, device="cpu")
    _check_shape(
        samples,
        {
            "cpu_cold": ("ms", "lower"),
            "cpu_warm": ("ms", "lower"),
            "cpu_cold_throughput": ("MB/s", "higher"),
            "cpu_warm_throughput": ("MB/s", "higher"),
        },
        reps=2,
        warmup=1,
    )
    nbytes = samples[0].labels["bytes"]
    assert 4 * 2**20 <= nbytes < 5 * 2**20
    by_key = {(s.metric, s.phase, s.repetition): s for s in samples}
    for (metric, phase, rep), s in by_key.items():
        if metric.endswith("_throughput"):
            ms = by_key[(metric.removesuffix("_throughput"), phase, rep)].value
            assert s.value == pytest.approx(nbytes / (ms / 1e3) / 1e6)  # one timing, two views
    for s in samples:
        if "cold" in s.metric:
            assert s.labels["page_cache"] in ("dropped-fadvise", "not-dropped")
            assert s.valid == (s.labels["page_cache"] == "dropped-fadvise")
            assert s.valid or "page cache" in (s.reason or "") or "fadvise" in (s.reason or "")
        else:
            assert s.labels["page_cache"] == "warm"
            assert s.valid
    assert list(tmp_path.iterdir()) == []  # the checkpoint is gone


@pytest.mark.local
def test_model_load_removes_checkpoint_when_stopped_early(tmp_path: Path) -> None:
    info = load_builtins()["model.load"]
    gen = info.fn(info.params(size_mb=1, device="cpu"), Context(repetitions=5, scratch_dir=tmp_path))
    next(gen)
    assert len(list(tmp_path.iterdir())) == 1
    gen.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.local
def test_page_cache_drop_is_verified(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"\x5a" * (4 * 2**20))
    path.read_bytes()
    before = resident_fraction(path)
    if before is None:
        pytest.skip("mincore(2) is not reachable through ctypes here")
    assert before > 0.5  # just written and read: cached
    label, problem, after = drop_page_cache(path)
    assert after is not None
    assert (label == "dropped-fadvise") == (after <= 0.05) == (problem is None)


def test_model_load_params_are_checked() -> None:
    from benchbed.workloads.model import ModelLoad

    with pytest.raises(ValueError, match="device"):
        ModelLoad(device="tpu")


@pytest.mark.local
def test_model_load_cuda_only_skips_without_cuda(tmp_path: Path) -> None:
    if _cuda_usable():
        pytest.skip("this host has CUDA")
    with pytest.raises(Skipped, match="no CUDA device visible"):
        _run("model.load", Context(repetitions=1, scratch_dir=tmp_path), size_mb=1, device="cuda")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- startup


@pytest.mark.local
@pytest.mark.parametrize("isolated", [False, True])
def test_startup_process(isolated: bool) -> None:
    samples = _run("startup.process", Context(repetitions=2, warmup=1), isolated=isolated)
    _check_shape(samples, {"spawn_to_ready": ("ms", "lower"), "spawn_to_exit": ("ms", "lower")}, reps=2, warmup=1)
    pairs = zip(samples[::2], samples[1::2], strict=True)
    assert all(ready.value <= exit_.value for ready, exit_ in pairs)
    assert samples[0].labels == {"python": sys.executable, "isolated": isolated}


@pytest.mark.local
@pytest.mark.parametrize("module", ["json", "numpy"])
def test_startup_import(module: str) -> None:
    samples = _run("startup.import", Context(repetitions=2, warmup=0), module=module)
    _check_shape(samples, {"import_time": ("ms", "lower"), "spawn_to_exit": ("ms", "lower")}, reps=2, warmup=0)
    pairs = zip(samples[::2], samples[1::2], strict=True)
    assert all(imp.value < total.value for imp, total in pairs)  # the import happens inside the process


@pytest.mark.local
@pytest.mark.parametrize("module", ["benchbed_no_such_module", "json.no_such_submodule"])
def test_startup_import_missing_module_skips(module: str) -> None:
    with pytest.raises(Skipped, match="is not installed in this target"):
        _run("startup.import", Context(repetitions=1), module=module)


@pytest.mark.local
def test_startup_import_broken_module_is_an_error(tmp_path: Path) -> None:
    """A module that exists but fails to import is a real failure, not a skip."""
    (tmp_path / "benchbed_broken_mod.py").write_text("import benchbed_dependency_that_is_missing\n")
    with pytest.raises(RuntimeError, match="benchbed_broken_mod"):
        _run("startup.import", Context(repetitions=1), module="benchbed_broken_mod", python=_pythonpath(tmp_path))


def _pythonpath(extra: Path) -> str:
    """An interpreter wrapper that puts `extra` on sys.path (PYTHONPATH), for the broken-module test."""
    wrapper = extra / "python-with-path"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{extra}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.mark.local
def test_startup_missing_interpreter_skips(tmp_path: Path) -> None:
    with pytest.raises(Skipped, match="does not exist"):
        _run("startup.process", Context(repetitions=1), python=str(tmp_path / "python9"))


# ------------------------------------------------------------------------------------------ real GPU only


def _torch_cuda() -> Any:
    try:
        import torch
    except ImportError:
        need("gpu", "torch is not installed")
    if not torch.cuda.is_available():
        from benchbed.workloads.gpudevice import torch_cuda_problem

        need("gpu", torch_cuda_problem(torch) or "torch.cuda.is_available() is False")
    return torch


def _events_ms(torch: Any, fn: Any, iters: int) -> float:
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    stop.record()
    stop.synchronize()
    return float(start.elapsed_time(stop))


def _all_valid(samples: list[Sample]) -> None:
    bad = [(s.metric, s.value, s.reason) for s in samples if s.phase == "measure" and not s.valid]
    assert not bad


@pytest.mark.gpu
def test_gemm_bf16_matches_plain_torch() -> None:
    torch = _torch_cuda()
    n = 4096
    samples = _run("gpu.gemm", Context(repetitions=10, warmup=3), dtype="bf16", n=n)
    _all_valid(samples)
    ours = statistics.median(_measured(samples, "throughput"))
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    step = lambda: torch.matmul(a, b, out=c)  # noqa: E731
    _events_ms(torch, step, 20)
    ref = statistics.median(2 * n**3 * 20 / (_events_ms(torch, step, 20) / 1e3) / 1e12 for _ in range(10))
    assert ours == pytest.approx(ref, rel=0.03), f"benchbed {ours:.1f} vs reference {ref:.1f} TFLOP/s"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp32", "tf32", "fp16", "bf16"])
def test_gemm_every_dtype_runs(dtype: str) -> None:
    _torch_cuda()
    samples = _run("gpu.gemm", Context(repetitions=3, warmup=1), dtype=dtype, n=2048)
    _check_shape(samples, {"throughput": ("TFLOP/s", "higher")}, reps=3, warmup=1)
    _all_valid(samples)


@pytest.mark.gpu
def test_d2d_matches_plain_torch_copy() -> None:
    torch = _torch_cuda()
    samples = _run("gpu.d2d_bandwidth", Context(repetitions=10, warmup=2), size_mb=1024)
    _all_valid(samples)
    ours = statistics.median(_measured(samples, "bandwidth"))
    nbytes = 1 << 30
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    step = lambda: dst.copy_(src)  # noqa: E731
    _events_ms(torch, step, 3)
    ref = statistics.median(2 * nbytes * 5 / (_events_ms(torch, step, 5) / 1e3) / 1e9 for _ in range(10))
    assert ours == pytest.approx(ref, rel=0.10), f"benchbed {ours:.0f} vs reference {ref:.0f} GB/s"


@pytest.mark.gpu
def test_pinned_h2d_reaches_the_best_reference_transfer() -> None:
    torch = _torch_cuda()
    samples = _run("gpu.h2d_bandwidth", Context(repetitions=5, warmup=2), size_mb=256, pinned=True)
    _all_valid(samples)
    ours = statistics.median(_measured(samples, "bandwidth"))
    nbytes = 256 << 20
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    host.fill_(1)
    dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    step = lambda: dev.copy_(host, non_blocking=True)  # noqa: E731
    _events_ms(torch, step, 2)
    best = max(nbytes / (_events_ms(torch, step, 1) / 1e3) / 1e9 for _ in range(8))
    assert ours >= 0.9 * best, f"benchbed {ours:.1f} vs best reference {best:.1f} GB/s"


@pytest.mark.gpu
@pytest.mark.parametrize("pinned", [True, False])
def test_d2h_runs(pinned: bool) -> None:
    _torch_cuda()
    samples = _run("gpu.d2h_bandwidth", Context(repetitions=3, warmup=1), size_mb=64, pinned=pinned)
    _check_shape(samples, {"bandwidth": ("GB/s", "higher")}, reps=3, warmup=1)
    _all_valid(samples)
    assert samples[0].labels["memory"] == ("pinned" if pinned else "pageable")


@pytest.mark.gpu
def test_launch_latency_is_plausible() -> None:
    _torch_cuda()
    samples = _run("gpu.launch_latency", Context(repetitions=10, warmup=2), launches=1000)
    _check_shape(samples, {"host_submit_torch_add": ("µs", "lower")}, reps=10, warmup=2)
    median = statistics.median(_measured(samples, "host_submit_torch_add"))
    assert 2.0 <= median <= 10.0, f"{median:.2f} µs per launch ({samples[-1].labels['kernel']})"


@pytest.mark.gpu
def test_context_init_in_a_fresh_process() -> None:
    _torch_cuda()
    samples = _run("gpu.context_init", Context(repetitions=2, warmup=0))
    metrics = {"spawn_to_first_op": ("ms", "lower"), "import": ("ms", "lower"), "cuda_init": ("ms", "lower")}
    _check_shape(samples, metrics, reps=2, warmup=0)
    for i in range(0, len(samples), 3):
        total, imp, init = (s.value for s in samples[i : i + 3])
        assert imp + init < total  # the child's two phases fit inside what the parent saw


@pytest.mark.gpu
def test_model_load_cuda(tmp_path: Path) -> None:
    _torch_cuda()
    samples = _run("model.load", Context(repetitions=2, warmup=0, scratch_dir=tmp_path), size_mb=16, device="auto")
    assert {s.metric for s in samples} >= {"cpu_cold", "cpu_warm", "cuda_cold", "cuda_warm"}
    assert all(math.isfinite(s.value) and s.value > 0 for s in samples)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gpu
def test_gemm_batches_are_held_and_watched() -> None:
    """On a real GPU: every timed batch ran behind torch's spin kernel, and with nvidia-ml-py each carries the
    NVML readings of its window (clocks, power against the limit, PCIe link while busy)."""
    _torch_cuda()
    samples = _run("gpu.gemm", Context(repetitions=3, warmup=1), dtype="bf16", n=4096)
    timed = [s for s in samples if s.phase != "cold"]
    assert all(s.labels["hold_ms"] > 0 for s in timed), [s.labels.get("hold_missing") for s in timed]
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert all("pynvml" in s.labels["telemetry"] for s in timed)
        return
    assert all(s.labels["telemetry"].startswith("nvml") for s in timed), timed[0].labels["telemetry"]
    assert all(s.labels["sm_mhz_max"] > 0 and s.labels["power_limit_w"] > 0 for s in timed)
    assert all(s.labels["pcie_busy"].startswith("gen") for s in timed)


@pytest.mark.gpu
def test_d2d_conventions_and_host_copy_placement() -> None:
    _torch_cuda()
    samples = _run("gpu.d2d_bandwidth", Context(repetitions=3, warmup=1), size_mb=512)
    rw, once = _measured(samples, "bandwidth"), _measured(samples, "copy_bandwidth")
    assert rw == pytest.approx([2 * x for x in once])
    h2d = _run("gpu.h2d_bandwidth", Context(repetitions=2, warmup=1), size_mb=64, numa="local")
    labels = h2d[-1].labels
    assert labels["numa"] == "local"
    assert labels["host_numa_node"] == labels["gpu_numa_node"] or labels.get("placement_note")
