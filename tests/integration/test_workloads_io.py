"""The I/O workloads, run for real on this host: sample shapes, honest io_mode labels, no scratch left behind."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchbed.agent.build import build_agent
from benchbed.workloads import Context, Sample, load_builtins
from benchbed.workloads import io as bio

pytestmark = pytest.mark.local

MODES = {"direct", "buffered-fadvise-dontneed", "buffered"}
SMALL: dict[str, dict[str, Any]] = {
    "io.seq_read": {"file_size_mb": 4, "block_kb": 256},
    "io.seq_write": {"file_size_mb": 4, "block_kb": 256},
    "io.rand_read": {"file_size_mb": 4, "block_kb": 4, "ops": 200},
    "io.fsync": {"block_kb": 4, "ops": 20},
}
METRICS: dict[str, dict[str, tuple[str, str]]] = {
    "io.seq_read": {"throughput": ("MB/s", "higher")},
    "io.seq_write": {"throughput": ("MB/s", "higher")},
    "io.rand_read": {"iops": ("IO/s", "higher"), "lat_p50_us": ("us", "lower"), "lat_p99_us": ("us", "lower")},
    "io.fsync": {"lat_p50_us": ("us", "lower"), "lat_p99_us": ("us", "lower"), "lat_mean_us": ("us", "lower")},
}


def run_workload(name: str, scratch: Path, reps: int = 2, warmup: int = 1, **override: Any) -> list[Sample]:
    info = load_builtins()[name]
    scratch.mkdir(parents=True, exist_ok=True)
    ctx = Context(repetitions=reps, warmup=warmup, scratch_dir=scratch)
    return list(info.fn(info.params(**{**SMALL[name], **override}), ctx))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_sample_shape(name: str, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    samples = run_workload(name, scratch)
    expected = METRICS[name]
    assert {s.metric for s in samples} == set(expected)
    for metric, (unit, better) in expected.items():
        mine = [s for s in samples if s.metric == metric]
        assert [(s.phase, s.repetition) for s in mine] == [("cold", 0), ("warmup", 0), ("measure", 0), ("measure", 1)]
        for s in mine:
            assert (s.unit, s.better) == (unit, better)
            assert math.isfinite(s.value)
            assert s.value > 0
            assert s.valid
            assert s.labels["io_mode"] in MODES
            assert "fs_type" in s.labels
    assert list(scratch.iterdir()) == []


def test_rand_read_percentiles_ordered(tmp_path: Path) -> None:
    samples = run_workload("io.rand_read", tmp_path, reps=3)
    by_rep: dict[tuple[str, int], dict[str, float]] = {}
    for s in samples:
        by_rep.setdefault((s.phase, s.repetition), {})[s.metric] = s.value
    assert len(by_rep) == 5
    for values in by_rep.values():
        assert values["lat_p50_us"] <= values["lat_p99_us"]


def test_fsync_labels_say_buffered_fsync_every_op(tmp_path: Path) -> None:
    samples = run_workload("io.fsync", tmp_path, reps=1, warmup=0)
    values = {s.metric: s.value for s in samples if s.phase == "measure"}
    assert values["lat_mean_us"] > 0
    assert values["lat_p50_us"] <= values["lat_p99_us"]
    assert all(
        s.labels == {"io_mode": "buffered", "fs_type": s.labels["fs_type"], "fsync": "every-op"} for s in samples
    )


@pytest.mark.parametrize("name", ["io.seq_read", "io.seq_write", "io.rand_read"])
def test_buffered_mode_drops_and_verifies_cache(name: str, tmp_path: Path) -> None:
    samples = run_workload(name, tmp_path, direct=False)
    for s in samples:
        mode = s.labels["io_mode"]
        assert mode in {"buffered-fadvise-dontneed", "buffered"}
        pct = s.labels.get("cache_resident_pct")
        if mode == "buffered-fadvise-dontneed" and pct is not None:
            assert pct <= bio.RESIDENT_LIMIT_PCT
        if mode == "buffered" and bio.fs_type(tmp_path) not in bio.MEMORY_FS:
            assert pct is not None
            assert pct > bio.RESIDENT_LIMIT_PCT  # only a failed, measured drop may downgrade the label


def test_einval_on_odirect_falls_back_honestly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem that refuses O_DIRECT (overlayfs, old tmpfs) must yield buffered samples labelled as such."""
    real_open: Callable[..., int] = os.open

    def refusing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "O_DIRECT not supported", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    samples = run_workload("io.seq_read", tmp_path)
    if bio.fs_type(tmp_path) in bio.MEMORY_FS:
        assert {s.labels["io_mode"] for s in samples} == {"buffered"}
    else:
        assert {s.labels["io_mode"] for s in samples} <= {"buffered-fadvise-dontneed", "buffered"}
        assert "direct" not in {s.labels["io_mode"] for s in samples}


def test_memory_filesystem_is_never_called_direct(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or bio.fs_type(shm) != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs here")
    scratch = shm / f"benchbed-test-{os.getpid()}"
    try:
        samples = run_workload("io.seq_read", scratch, reps=1, warmup=0, direct=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert {(s.labels["io_mode"], s.labels["fs_type"]) for s in samples} == {("buffered", "tmpfs")}


def test_resident_pct_sees_the_page_cache(tmp_path: Path) -> None:
    if bio.fs_type(tmp_path) in bio.MEMORY_FS:
        pytest.skip("page cache cannot be dropped on a memory filesystem")
    path = tmp_path / "f"
    path.write_bytes(os.urandom(1 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.read(fd, 1 << 20)
        cached = bio.resident_pct(fd, 1 << 20)
        if cached is None:
            pytest.skip("mincore is not reachable through ctypes here")
        assert cached > 50
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        dropped = bio.resident_pct(fd, 1 << 20)
        assert dropped is not None
        assert dropped <= bio.RESIDENT_LIMIT_PCT
    finally:
        os.close(fd)


def test_files_removed_when_consumer_stops_early(tmp_path: Path) -> None:
    info = load_builtins()["io.rand_read"]
    gen = info.fn(info.params(**SMALL["io.rand_read"]), Context(repetitions=5, scratch_dir=tmp_path))
    next(gen)
    assert list(tmp_path.iterdir()) != []
    gen.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("io.seq_read", {"file_size_mb": 1, "block_kb": 3}, "whole number"),
        ("io.seq_write", {"file_size_mb": 0}, "file_size_mb must be > 0"),
        ("io.rand_read", {"ops": 1}, "ops must be >= 2"),
        ("io.fsync", {"ops": 0}, "ops must be >= 2"),
    ],
)
def test_bad_params_are_errors_not_numbers(name: str, params: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        run_workload(name, tmp_path, **params)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def agent_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_agent(tmp_path_factory.mktemp("agent")).path


@pytest.mark.parametrize("name", sorted(SMALL))
def test_through_agent_zipapp(name: str, agent_pyz: Path, tmp_path: Path) -> None:
    scratch_base = tmp_path / "scratch"
    spec = {"workload": name, "params": SMALL[name], "repetitions": 2, "warmup": 0, "scratch_dir": str(scratch_base)}
    python = shutil.which("python3") or sys.executable
    proc = subprocess.run(
        [python, str(agent_pyz), "run", json.dumps(spec)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [r["t"] for r in records]
    assert kinds[0] == "hello"
    assert kinds[-1] == "done"
    assert "error" not in kinds
    assert "skipped" not in kinds
    samples = [r for r in records if r["t"] == "sample"]
    assert records[-1]["samples"] == len(samples) == len(METRICS[name]) * 3
    for r in samples:
        assert (r["unit"], r["better"]) == METRICS[name][r["metric"]]
        assert r["labels"]["io_mode"] in MODES
        assert r["value"] > 0
    assert list(scratch_base.iterdir()) == []
