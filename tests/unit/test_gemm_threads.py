"""cpu.gemm's `threads`: the BLAS really runs that many threads, and a thread count it cannot apply is a skip."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from benchbed.workloads.base import Context, Skipped
from benchbed.workloads.cpu import CpuGemm, cpu_gemm

pytest.importorskip("numpy")

PROBE = textwrap.dedent(
    """
    import os, sys
    from benchbed.workloads.base import Context
    from benchbed.workloads.cpu import CpuGemm, cpu_gemm
    samples = list(cpu_gemm(CpuGemm(n=64, threads=int(sys.argv[1])), Context(repetitions=2, warmup=0)))
    assert samples and all(s.value > 0 for s in samples)
    print(len(os.listdir("/proc/self/task")))
    """
)


def threads_after_gemm(threads: int) -> int:
    """Threads alive in a fresh process after a GEMM: OpenBLAS starts its workers when it loads."""
    proc = subprocess.run([sys.executable, "-c", PROBE, str(threads)], capture_output=True, text=True, check=True)
    return int(proc.stdout.strip())


def test_one_thread_means_one_thread_in_a_fresh_process() -> None:
    assert threads_after_gemm(1) == 1


@pytest.mark.skipif(len(__import__("os").sched_getaffinity(0)) < 2, reason="needs 2 cores to see BLAS workers")
def test_library_default_starts_its_workers() -> None:
    assert threads_after_gemm(0) > 1  # so the probe above can tell the difference


def test_numpy_already_loaded_without_threadpoolctl_skips_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy  # noqa: F401  -- loaded before the workload, as in-process use would

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # not installed
    with pytest.raises(Skipped, match="threads=1: numpy was loaded before the workload"):
        list(cpu_gemm(CpuGemm(n=8, threads=1), Context(repetitions=1, warmup=0)))


def test_negative_threads_skip() -> None:
    with pytest.raises(Skipped, match="positive thread count"):
        list(cpu_gemm(CpuGemm(n=8, threads=-2), Context(repetitions=1, warmup=0)))
