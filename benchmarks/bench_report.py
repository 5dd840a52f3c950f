"""Report generation speed on a 100 000-sample run: `benchbed report RUN -o FILE` end to end, as a user runs it.

The run directory is synthetic but shaped like a real one (what `benchbed run` writes): 3 targets (local, a
container, a VM) × 6 workload/params cases with 12 metrics × 10 instances × (1 cold + 5 warm-up + 272 measured)
repetitions = 100 080 samples, per-instance startup phases in cases.jsonl (one failed instance, one skipped case),
fingerprints in env/ (with a long libvirt domain XML), and the recorded plan. Each timing is a fresh
`python -m benchbed.cli report` process: imports, load, statistics, charts, render and the atomic write.
Goal: ≤ 5 s for the HTML report.

    python benchmarks/bench_report.py [--rounds 5] [--keep DIR] [--format html|md|json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = {"local": 1.0, "box": 0.99, "vm": 0.95}  # throughput level relative to bare metal
KIND = {"local": "local", "box": "docker", "vm": "libvirt"}
CASES: list[tuple[str, dict[str, Any], list[tuple[str, str, str, float]]]] = [
    ("cpu.gemm", {"n": 256}, [("throughput", "GFLOP/s", "higher", 30.0)]),
    ("cpu.gemm", {"n": 512}, [("throughput", "GFLOP/s", "higher", 45.0)]),
    ("cpu.stream", {"n": 4_000_000}, [(m, "GB/s", "higher", v) for m, v in
                                       (("copy", 9.0), ("scale", 8.5), ("add", 10.0), ("triad", 10.2))]),
    ("io.rand_read", {"block_kb": 4}, [("iops", "IO/s", "higher", 9000.0), ("lat_p50_us", "us", "lower", 95.0),
                                       ("lat_p99_us", "us", "lower", 240.0)]),
    ("startup.process", {}, [("spawn_to_ready", "ms", "lower", 35.0), ("spawn_to_exit", "ms", "lower", 48.0)]),
    ("util.noop", {"duration_ms": 10}, [("elapsed", "ms", "lower", 10.02)]),
]  # fmt: skip
INSTANCES, WARMUP, REPETITIONS = 10, 5, 274
PHASES = {
    "local": {"workdir": 0.001, "put_agent": 0.0003, "agent_ready": 0.12},
    "box": {"image": 0.003, "create": 0.036, "start": 0.39, "exec_ready": 0.12, "put_agent": 0.01, "agent_ready": 0.13},
    "vm": {"overlay": 0.05, "define": 0.02, "start": 0.4, "boot": 28.0, "ssh_ready": 1.5, "put_agent": 0.05,
           "agent_ready": 0.3},
}  # fmt: skip


def fingerprint(target: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "kind": KIND[target],
        "hostname": f"{target}-host",
        "kernel": "6.8.0-45-generic" if target != "vm" else "6.1.0-25-amd64",
        "cpu": {"model": "AMD EPYC 9454 48-Core Processor", "machine": "x86_64",
                "logical_cpus": 96 if target != "vm" else 16},
        "memory": {"MemTotal": "792356812 kB" if target != "vm" else "65843212 kB", "MemAvailable": "700000000 kB"},
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1234", "driver": "550.90.07", "cuda_driver": "12.4"}],
        "os": {"ID": "ubuntu" if target == "local" else "debian", "VERSION_ID": "22.04" if target == "local" else "12"},
        "python": {"version": "3.11.7", "implementation": "CPython", "executable": "/usr/bin/python3"},
        "libraries": {"numpy": "2.1.0", "scipy": "1.14.1", "torch": "2.4.0+cu124"},
        "virtualization": {"systemd_detect_virt": {"local": "none", "box": "docker", "vm": "kvm"}[target]},
    }  # fmt: skip
    if target == "box":
        env["container"] = {"image": "benchbed/gpu:cuda12.4", "image_digest": "sha256:" + "ab" * 32, "runtime": "runc"}
    if target == "vm":
        env["libvirt"] = {
            "virt_type": "kvm",
            "domain_xml": "<domain type='kvm'>\n" + "  <devices/>\n" * 200 + "</domain>",
        }
    return env


def make_run(run_dir: Path, seed: int = 1) -> int:
    """Write a synthetic run directory; returns the number of samples."""
    rng = np.random.default_rng(seed)
    (run_dir / "env").mkdir(parents=True)
    plan: list[dict[str, Any]] = []
    samples: list[str] = []
    cases: list[str] = []
    index = 0
    for instance in range(INSTANCES):
        for workload, params, metrics in CASES:
            for target in rng.permutation(list(TARGETS)):
                target = str(target)
                case = {"case": index, "target": target, "workload": workload, "params": params, "instance": instance}
                plan.append({**case, "index": index, "repetitions": REPETITIONS, "warmup": WARMUP, "timeout_s": 600.0})
                del plan[-1]["case"]
                phases = {k: v * float(rng.lognormal(0, 0.1)) for k, v in PHASES[target].items()}
                if workload == "startup.process" and target == "vm" and instance == 3:
                    tail = "Traceback (most recent call last):\n  ...\nEOFError"
                    reason = "agent exited 1: ssh session dropped"
                    cases.append(json.dumps({**case, "status": "failed", "reason": reason, "phases": phases,
                                             "stderr_tail": tail}))  # fmt: skip
                    index += 1
                    continue
                n = 0
                inst_level = float(rng.lognormal(0, 0.01))
                for metric, unit, better, level in metrics:
                    centre = level * (TARGETS[target] if better == "higher" else 1 / TARGETS[target]) * inst_level
                    values = centre * rng.lognormal(0, 0.02, 1 + WARMUP + REPETITIONS)
                    values[rng.random(len(values)) < 0.01] *= 1.3  # the odd interrupted repetition
                    for i, v in enumerate(values):
                        if i == 0:
                            phase, rep = "cold", 0
                        else:
                            phase, rep = ("warmup", i - 1) if i <= WARMUP else ("measure", i - 1 - WARMUP)
                        samples.append(
                            json.dumps(
                                {
                                    **case,
                                    "metric": metric,
                                    "value": float(v),
                                    "unit": unit,
                                    "better": better,
                                    "phase": phase,
                                    "repetition": rep,
                                    "valid": True,
                                    "reason": None,
                                    "labels": {},
                                }
                            )
                        )
                        n += 1
                phases.update(workload=n * 0.01, teardown=0.01)
                phases["total"] = sum(phases.values())
                cases.append(json.dumps({**case, "status": "ok", "reason": None, "phases": phases, "samples": n,
                                         "rc": 0}))  # fmt: skip
                index += 1
    for target in TARGETS:
        reason = f"no CUDA device visible in target '{target}'"
        cases.append(
            json.dumps(
                {
                    "case": index,
                    "target": target,
                    "workload": "gpu.h2d_bandwidth",
                    "params": {},
                    "instance": 0,
                    "status": "skipped",
                    "reason": reason,
                    "phases": {"total": 0.2},
                }
            )
        )
        index += 1
    meta = {
        "schema_version": 1, "run_id": run_dir.name, "status": "complete", "benchbed_version": "0.1.0",
        "started": "2026-01-02T03:04:05+00:00", "finished": "2026-01-02T05:06:07+00:00",
        "suite": {"name": "bench-report", "text": "name: bench-report\nbaseline: local\n"}, "baseline": "local",
        "seed": seed, "targets": {t: {"kind": KIND[t]} for t in TARGETS}, "plan": plan,
        "agent": {"sha256": "cd" * 32, "size": 123456, "modules": []},
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    (run_dir / "samples.jsonl").write_text("\n".join(samples) + "\n", encoding="utf-8")
    (run_dir / "cases.jsonl").write_text("\n".join(cases) + "\n", encoding="utf-8")
    for target in TARGETS:
        (run_dir / "env" / f"{target}.json").write_text(json.dumps(fingerprint(target)), encoding="utf-8")
    return len(samples)


def time_report(run_dir: Path, dest: Path, fmt: str) -> float:
    cmd = [sys.executable, "-m", "benchbed.cli", "report", str(run_dir), "-o", str(dest), "--format", fmt]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--format", default="html", choices=["html", "md", "json"])
    ap.add_argument("--keep", type=Path, help="write the run directory and report here and keep them")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or Path(tmp)
        run_dir = root / "20260102-030405-bench-report-0001"
        n = make_run(run_dir) if not run_dir.exists() else sum(1 for _ in (run_dir / "samples.jsonl").open())
        size = (run_dir / "samples.jsonl").stat().st_size / 1e6
        print(f"run: {run_dir} ({n} samples, samples.jsonl {size:.1f} MB)")
        dest = root / f"report.{a.format}"
        times = [time_report(run_dir, dest, a.format) for _ in range(a.rounds)]
        load = os.getloadavg()[0]
        print(f"benchbed report --format {a.format}: " + ", ".join(f"{t:.2f}" for t in times) + " s")
        size_out = dest.stat().st_size / 1e6
        print(f"median {statistics.median(times):.2f} s over {a.rounds} runs; output {size_out:.1f} MB;"
              f" load average {load:.2f} on {os.cpu_count()} CPUs (goal ≤ 5 s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
