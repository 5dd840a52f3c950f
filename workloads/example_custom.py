"""An example custom workload. Listed under `modules:` in a suite, it is packed into the agent zipapp, so every
target runs these exact bytes. Keep module-level imports to the standard library; import heavy libraries inside
the function so a target without them reports `skipped` instead of crashing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from benchbed.workloads import Context, Sample, workload


@dataclass(frozen=True)
class HashParams:
    size_mb: int = 16
    algorithm: str = "sha256"


@workload("example.hash", params=HashParams, tags={"cpu", "example"})
def hash_throughput(p: HashParams, ctx: Context) -> Iterator[Sample]:
    """hashlib throughput over an in-memory buffer, in MB/s (1e6 bytes/s)."""
    data = bytes(range(256)) * (p.size_mb * 4096)
    for phase, rep in ctx.schedule():
        t0 = time.perf_counter_ns()
        hashlib.new(p.algorithm, data).digest()
        seconds = (time.perf_counter_ns() - t0) / 1e9
        yield Sample("throughput", len(data) / seconds / 1e6, "MB/s", "higher", phase, rep)
