"""The Slurm cluster on 127.0.0.1 that scripts/setup-slurm brings up (munged, slurmctld, one slurmd per node), as
tests and benchmarks see it: its nodes, benchbed's jobs in its queue, and a skip (or a failure under
BENCHBED_REQUIRE=slurm) when it is not up.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

SETUP = "scripts/setup-slurm"


def missing_reason() -> str | None:
    """Why the tests cannot use a Slurm cluster here, or None."""
    for tool in ("sbatch", "srun", "scontrol", "sinfo", "sbcast", "scancel", "squeue"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (run {SETUP} as root)"
    try:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return f"slurmctld does not answer (run {SETUP} as root)"
    if res.returncode != 0:
        return f"sinfo failed: {res.stderr.strip()} (run {SETUP} as root)"
    states = dict(line.split() for line in res.stdout.splitlines() if line.strip())
    bad = {n: s for n, s in states.items() if s.rstrip("*") not in ("idle", "allocated", "mixed", "completing")}
    if not states or bad:
        return f"nodes not usable: {bad or 'none'} (run {SETUP} as root)"
    return None


def required() -> list[str]:
    """The cluster's node names, or a skip naming why (a failure under BENCHBED_REQUIRE=slurm)."""
    from tests.conftest import need

    why = missing_reason()
    if why:
        need("slurm", why)
    res = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=10, check=True)
    return sorted(set(res.stdout.split()))


def jobs(name_part: str = "benchbed-") -> dict[str, str]:
    """Queued or running jobs whose name contains name_part: id → state."""
    res = subprocess.run(
        ["squeue", "--noheader", "--format=%i|%j|%T"], capture_output=True, text=True, timeout=10, check=True
    )
    out = {}
    for line in res.stdout.splitlines():
        job, name, state = line.strip().split("|")
        if name_part in name:
            out[job] = state
    return out


def job_field(job: str, key: str) -> str | None:
    res = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=10)
    for part in res.stdout.split():
        k, _, v = part.partition("=")
        if k == key:
            return v
    return None


def wait_for(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def wait_no_jobs(name_part: str, timeout: float = 60.0) -> None:
    wait_for(lambda: not jobs(name_part), timeout, f"jobs named *{name_part}* to leave the queue")


def spec(**over: Any) -> dict[str, Any]:
    import sys

    return {"kind": "slurm", "python": sys.executable, **over}
