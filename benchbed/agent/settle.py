"""Wait, before the workload, until the machine the agent runs on is quiet (suite `defaults.settle_s`).

An instance's predecessor does not end when its process does: a VM's teardown frees a gigabyte that the kernel
zeroes and (under a hypervisor with free-page reporting) hands back to the host, dockerd removes a container's
layers, dirty pages are written back. On the 2-vCPU CI machine the instances that ran right after a VM instance
were the ones whose GEMM repetitions ran at 0.6-0.75× for tens of milliseconds (docs/methodology.md). Measuring
then charges one target with another's aftermath, in whatever order the interleaving happened to put them.

So the agent reads /proc/stat (inside a container or a chroot that is the host's; inside a VM, the guest's) and
starts only once the CPU time used by everything else over one window is at most `BUSY_CPUS` — or after `max_s`,
and then says it did not settle. What it waited and saw goes into the case record (`settle`), never into a sample.
Stdlib-only: it runs inside every target.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WINDOW_S = 0.25  # one look: long enough for /proc/stat's 10 ms ticks to count a busy neighbour
BUSY_CPUS = 0.1  # others may use a tenth of one CPU: what an idle host's kernel threads and daemons use


def cpu_times(path: str = "/proc/stat") -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs together; None where there is no /proc/stat."""
    try:
        with Path(path).open() as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal (guest is in user)
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


def own_ticks() -> int:
    """This process's CPU time in clock ticks (its own polling must not count as a neighbour)."""
    t = os.times()
    return round((t.user + t.system) * os.sysconf("SC_CLK_TCK"))


def settle(
    max_s: float,
    *,
    read: Callable[[], tuple[int, int] | None] = cpu_times,
    own: Callable[[], int] = own_ticks,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Wait until others used at most BUSY_CPUS over one WINDOW_S, for at most max_s; what was seen."""
    ncpu = os.cpu_count() or 1
    t0 = now()
    before, mine = read(), own()
    if before is None:
        return {"settled": None, "waited_s": 0.0, "reason": "no /proc/stat to watch"}
    busy = float("nan")
    while True:
        sleep(WINDOW_S)
        after, mine_after = read(), own()
        if after is None:
            return {"settled": None, "waited_s": round(now() - t0, 3), "reason": "/proc/stat went away"}
        ticks = after[1] - before[1]
        if ticks > 0:
            busy = max(0.0, (after[0] - before[0] - (mine_after - mine)) / ticks * ncpu)
        waited = now() - t0
        if ticks > 0 and busy <= BUSY_CPUS:
            return {"settled": True, "waited_s": round(waited, 3), "busy_cpus": round(busy, 3)}
        if waited >= max_s:
            return {"settled": False, "waited_s": round(waited, 3), "busy_cpus": round(busy, 3)}
        before, mine = after, mine_after
