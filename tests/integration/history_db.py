"""Results-database test plumbing: synthetic run directories (a driver upgrade is simulated in the fingerprint,
the numbers planted), a fresh PostgreSQL database per test on the server of scripts/setup-postgres, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from tests.conftest import REPO, need

PG_URL = os.environ.get("BENCHBED_TEST_PG_URL", "postgresql://benchbed:benchbed@127.0.0.1:55432/benchbed_test")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_run(
    root: Path, run_id: str, *, day: int, level: float, driver: str = "550.54", target: str = "gpu-host",
    instances: int = 6, reps: int = 5, seed: int = 0, noise: float = 0.004, workloads: tuple[str, ...] = ("gpu.gemm",),
    kernel: str = "6.1.0-18-amd64",
) -> Path:  # fmt: skip
    """A finished run directory as `benchbed run` writes it: `instances` × `reps` samples per workload."""
    rng = np.random.default_rng(seed)
    d = root / run_id
    (d / "env").mkdir(parents=True)
    started = T0 + timedelta(days=day)
    meta = {
        "schema_version": 1, "run_id": run_id, "status": "complete", "started": started.isoformat(),
        "finished": (started + timedelta(minutes=5)).isoformat(),
        "suite": {"name": "nightly", "text": "name: nightly\n"},
        "targets": {target: {"kind": "local"}}, "baseline": target, "seed": seed, "benchbed_version": "0.1.0",
        "controller_host": "ci-1",
    }  # fmt: skip
    (d / "run.json").write_text(json.dumps(meta))
    env = {"kind": "local", "hostname": "node-1", "kernel": kernel, "cpu": {"model": "Xeon"},
           "gpus": [{"index": 0, "name": "H100", "driver": driver, "cuda_driver": "12.4"}]}  # fmt: skip
    (d / "env" / f"{target}.json").write_text(json.dumps(env))
    samples, cases = [], []
    case = 0
    for w in workloads:
        for i in range(instances):
            inst_level = level * (1 + noise * rng.standard_normal())
            for r in range(reps):
                value = inst_level * (1 + noise / 2 * rng.standard_normal())
                sample = {"metric": "tflops", "value": value, "unit": "TFLOP/s", "better": "higher", "phase": "measure",
                          "repetition": r, "valid": True, "reason": None, "labels": {}}  # fmt: skip
                samples.append({"target": target, "workload": w, "params": {"n": 4096}, "instance": i, "case": case,
                                **sample})  # fmt: skip
            cases.append({"case": case, "target": target, "workload": w, "params": {"n": 4096}, "instance": i,
                          "status": "ok", "reason": None, "phases": {"total": 1.0}, "wall_s": 1.0})  # fmt: skip
            case += 1
    (d / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (d / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    return d


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "250", **(env or {})}, check=False,
    )  # fmt: skip


def postgres_database() -> Iterator[str]:
    """A database of its own on the test server (dropped afterwards), as a URL with the password in it."""
    try:
        import psycopg
    except ImportError:
        need("postgres", "psycopg is not installed (pip install 'benchbed[history]')")
        raise
    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.Error as err:
        need("postgres", f"cannot reach {PG_URL.split('@')[-1]} ({err}); run scripts/setup-postgres")
        raise
    name = f"bbtest_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f"CREATE DATABASE {name}")
        try:
            yield admin.rsplit("/", 1)[0] + "/" + name
        finally:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def files_of(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
