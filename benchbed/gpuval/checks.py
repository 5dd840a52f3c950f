"""The checks of `scripts/gpu-validate`, in the order they run (see docs/gpu-validation.md for what each shows)."""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchbed.gpuval import refs
from benchbed.gpuval.base import Check, Env, Result, agree, median, run_workload
from benchbed.workloads import Context, Skipped, peaks

GEMM_SIZES = (1024, 4096, 8192)
TOLERANCE = 0.05


def telemetry_check(env: Env) -> Result:
    if env.sampler is None:
        raise Skipped(f"NVML telemetry {env.telemetry_how}")
    readings = list(env.sampler.readings)
    return Result("", "", "ok" if readings else "error", f"{env.telemetry_how}; {len(readings)} readings so far (idle)")


def gemm_check(env: Env) -> Result:
    torch = env.torch
    rows, worst = [], 0.0
    for n in GEMM_SIZES:
        ours = median(run_workload("gpu.gemm", Context(repetitions=10, warmup=3), dtype="bf16", n=n), "throughput")
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
        calls = max(2, min(200, int(2e12 / (2 * n**3))))  # a graph of ~2 TFLOP: ≥ a few ms at any size
        ms, how = refs.gemm_reference_ms(torch, _matmul(torch, a, b, c), calls)
        ref = 2 * n**3 / (ms / 1e3) / 1e12
        worst = max(worst, abs(ours / ref - 1))
        rows.append({"n": n, "benchbed TFLOP/s": ours, "reference TFLOP/s": ref, "ratio": ours / ref, "reference": how})
    status = "ok" if worst <= TOLERANCE else "mismatch"
    return Result("", "", status, f"bf16 GEMM at n={GEMM_SIZES}: worst disagreement {worst:.1%}", rows)


def _matmul(torch: Any, a: Any, b: Any, c: Any) -> Callable[[], object]:
    return lambda: torch.matmul(a, b, out=c)


def sustained_check(env: Env) -> Result:
    samples = run_workload("gpu.gemm", Context(repetitions=5, warmup=2), dtype="bf16", n=8192, sustained_s=20.0)
    burst = median(samples, "throughput")
    sus = [s for s in samples if s.metric == "throughput_sustained"]
    late = [s.value for s in sus if s.labels.get("t_s", 0) >= 15.0] or [s.value for s in sus]
    throttled = sorted({r for s in sus for r in str(s.labels.get("throttled", "")).split(",") if r})
    n_thr = sum(1 for s in sus if s.labels.get("throttled"))
    rows = [
        {"figure": "burst (5 samples of ≥1 ms)", "TFLOP/s": burst},
        {"figure": f"sustained, all {len(sus)} batches over 20 s", "TFLOP/s": statistics.median(s.value for s in sus)},
        {"figure": "sustained, last 5 s", "TFLOP/s": statistics.median(late)},
    ]
    powers = [float(s.labels["power_w_max"]) for s in sus if s.labels.get("power_w_max") is not None]
    limit = next((s.labels.get("power_limit_w") for s in sus if s.labels.get("power_limit_w")), None)
    summary = (
        f"sustained/burst = {statistics.median(late) / burst:.3f}; {n_thr}/{len(sus)} batches throttled "
        f"({', '.join(throttled) or 'none'}); max power {max(powers) if powers else '?'} W of {limit or '?'} W"
    )
    return Result("", "", "info", summary, rows)


def tf32_check(env: Env) -> Result:
    fp32 = median(run_workload("gpu.gemm", dtype="fp32", n=4096), "throughput")
    tf32 = median(run_workload("gpu.gemm", dtype="tf32", n=4096), "throughput")
    before = env.torch.backends.cuda.matmul.allow_tf32
    ok = tf32 > 2 * fp32
    rows = [{"dtype": "fp32", "TFLOP/s": fp32}, {"dtype": "tf32", "TFLOP/s": tf32}]
    summary = f"tf32/fp32 = {tf32 / fp32:.2f} (the switch works if ≫ 1); allow_tf32 after the runs: {before}"
    return Result("", "", "ok" if ok else "mismatch", summary, rows)


def d2d_check(env: Env) -> Result:
    samples = run_workload("gpu.d2d_bandwidth", Context(repetitions=10, warmup=2), size_mb=1024)
    once, rw = median(samples, "copy_bandwidth"), median(samples, "bandwidth")
    ref, verified = refs.verified_copy_gbs(env.torch, 1 << 30)
    rows = [
        {"figure": "benchbed copy_bandwidth (bytes once)", "GB/s": once},
        {"figure": "benchbed bandwidth (read+write)", "GB/s": rw},
        {"figure": "nvbandwidth-style verified copy (bytes once)", "GB/s": ref},
    ]
    status = "ok" if verified and agree(once, ref, TOLERANCE) else "mismatch"
    return Result("", "", status, f"copy {once:.0f} vs reference {ref:.0f} GB/s; copy verified: {verified}", rows)


def host_copy_check(env: Env) -> Result:
    rows: list[dict[str, Any]] = []
    for kind in ("h2d", "d2h"):
        for pinned in (True, False):
            for numa in ("local", "remote"):
                samples = run_workload(f"gpu.{kind}_bandwidth", size_mb=256, pinned=pinned, numa=numa)
                last = samples[-1].labels
                rows.append(
                    {
                        "copy": kind,
                        "memory": "pinned" if pinned else "pageable",
                        "numa": numa,
                        "GB/s": median(samples, "bandwidth"),
                        "gpu node": last.get("gpu_numa_node"),
                        "host node": last.get("host_numa_node"),
                        "note": last.get("placement_note", ""),
                    }
                )
    return Result("", "", "info", "H2D/D2H, pinned and pageable, from the GPU's node and from another", rows)


def launch_check(env: Env) -> Result:
    rows: list[dict[str, Any]] = []
    for launcher in ("torch", "cupy"):
        try:
            samples = run_workload("gpu.launch_latency", launches=1000, launcher=launcher)
        except Skipped as skip:
            rows.append({"variant": f"gpu.launch_latency launcher={launcher}", "us_per_launch": f"skipped: {skip}"})
            continue
        metric = samples[-1].metric
        rows.append({"variant": f"gpu.launch_latency {metric}", "us_per_launch": median(samples, metric)})
    rows += refs.launch_variants(env.torch)
    return Result("", "", "info", "host submission vs device-side launch rates (never compare across rows)", rows)


def context_check(env: Env) -> Result:
    samples = run_workload("gpu.context_init", Context(repetitions=3, warmup=0))
    persistence = _nvml(env, "nvmlDeviceGetPersistenceMode")
    mode = {0: "disabled", 1: "enabled"}.get(persistence, "unknown") if persistence is not None else "unknown"
    rows = [{"metric": m, "ms": median(samples, m)} for m in ("spawn_to_first_op", "import", "cuda_init")]
    return Result("", "", "info", f"persistence mode {mode} (off: first use pays 1–3 s of driver init)", rows)


def model_load_check(env: Env) -> Result:
    with tempfile.TemporaryDirectory(prefix="benchbed-gpuval-") as tmp:
        ctx = Context(repetitions=2, warmup=0, scratch_dir=Path(tmp))
        samples = run_workload("model.load", ctx, size_mb=1024, device="cuda")
    metrics = sorted({s.metric for s in samples if s.phase == "measure"})
    rows = [
        {"metric": m, "value": median(samples, m), "unit": next(s.unit for s in samples if s.metric == m)}
        for m in metrics
    ]
    return Result("", "", "info", "model.load of a 1 GiB checkpoint to cuda (cold and warm page cache)", rows)


def peaks_check(env: Env) -> Result:
    torch = env.torch
    props = torch.cuda.get_device_properties(env.device)
    name, sms = str(props.name), int(props.multi_processor_count)
    table = peaks.lookup(name, sms)
    if table is None:
        raise Skipped(f"{name} is not in the peaks table")
    max_mhz = _nvml(env, "nvmlDeviceGetMaxClockInfo", 1)
    if max_mhz is None:
        raise Skipped("NVML's max SM clock is unavailable (pynvml missing?)")
    rows, worst = [], 0.0
    for dtype, peak in table.matmul_tflops.items():
        per = table.flop_per_clock_sm.get(dtype)
        if not per:
            continue
        hw = sms * per * max_mhz * 1e6 / 1e12
        worst = max(worst, peak / hw)
        rows.append({"dtype": dtype, "table TFLOP/s": peak, "SMs × FLOP/clk × max clock": hw, "table / hw": peak / hw})
    ok = worst <= 1.001 and (table.mig is not None or sms == table.sms)
    summary = f"{name}: {sms} SMs (table {table.sms}), max SM clock {max_mhz} MHz (table {table.max_sm_mhz})"
    return Result("", "", "ok" if ok else "mismatch", summary, rows)


def _nvml(env: Env, fn: str, *args: Any) -> Any:
    if env.nvml is None or env.handle is None:
        return None
    try:
        return getattr(env.nvml, fn)(env.handle, *args)
    except Exception:
        return None


CHECKS: list[tuple[str, str, Check]] = [
    ("telemetry", "Background NVML sampler", telemetry_check),
    ("peaks", "Peaks vs SMs × FLOP/clock × max clock", peaks_check),
    ("gemm", "GEMM vs CUDA-graph / do_bench timing at three sizes", gemm_check),
    ("tf32", "The tf32/fp32 switch", tf32_check),
    ("sustained", "20 s sustained GEMM vs the burst figure", sustained_check),
    ("d2d", "D2D vs an nvbandwidth-style verified copy", d2d_check),
    ("host_copies", "H2D/D2H pinned and pageable, local vs remote NUMA node", host_copy_check),
    ("launch", "Launch-rate variants", launch_check),
    ("context_init", "Context init with the persistence state", context_check),
    ("model_load", "model.load to cuda at 1 GiB", model_load_check),
]
