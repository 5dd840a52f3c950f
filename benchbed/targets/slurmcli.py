"""The Slurm commands the `slurm` kind runs: submit, look up, cancel, broadcast, and the sweep of dead runs' jobs.

Why the command-line tools and not a Python binding: `sbatch --parsable`, `scontrol -o show job`, `scancel` and
`sbcast` are the interface every Slurm site installs and keeps compatible across releases (they are how users and
the site's own scripts drive it). pyslurm must be built against the exact libslurm of the cluster and trails
releases; slurmrestd is often not deployed. `squeue --json` in 22.05 ignores job filters (it prints every job),
so one job is read with `scontrol -o show job` (one line of Key=Value).
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from benchbed.errors import ProvisionError
from benchbed.owner import owner_alive, owner_label

JOB_PREFIX = "benchbed-"  # every job's name: benchbed-<run id>-<target>
OWNER_TAG = "benchbed-owner="  # every job's comment: benchbed-owner=<host:pid>
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "TIMEOUT", "SPECIAL_EXIT", "REVOKED"}  # fmt: skip
_FIELD = re.compile(r"\s(?=[A-Za-z][A-Za-z0-9_/:]*=)")  # a space before the next Key=
log = logging.getLogger(__name__)


def available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("scontrol") is not None


def reachable(timeout: float = 10.0) -> bool:
    """Is there a slurmctld these tools talk to (`scontrol ping`)?"""
    if not available():
        return False
    try:
        return call(["scontrol", "ping"], timeout=timeout).returncode == 0
    except ProvisionError:
        return False


def call(argv: Sequence[str], *, timeout: float, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one Slurm command; a missing tool or a hang is a ProvisionError naming the command."""
    try:
        return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as err:
        raise ProvisionError(
            f"{argv[0]} not found: the slurm target needs the Slurm client tools on PATH",
            hint="apt-get install slurm-client (and a slurm.conf and munge key for the cluster)",
        ) from err
    except subprocess.TimeoutExpired as err:
        raise ProvisionError(f"{argv[0]} did not answer within {timeout:g} s (is slurmctld up?)") from err


def last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1]


@dataclass(frozen=True)
class Job:
    """One `scontrol -o show job` record."""

    fields: dict[str, str]

    @classmethod
    def parse(cls, line: str) -> Job:
        pairs = (part.partition("=") for part in _FIELD.split(line.strip()))
        return cls({key: value for key, _, value in pairs if key})

    def get(self, key: str) -> str | None:
        value = self.fields.get(key)
        return None if value in (None, "", "(null)", "None", "Unknown", "N/A") else value

    @property
    def state(self) -> str:
        return (self.fields.get("JobState") or "UNKNOWN").split()[0]

    @property
    def node(self) -> str | None:
        return self.get("BatchHost") or self.get("NodeList")

    def seconds(self, key: str) -> float | None:
        stamp = self.get(key)
        try:
            return datetime.fromisoformat(stamp).timestamp() if stamp else None
        except ValueError:
            return None

    def queue_wait(self) -> float | None:
        """Submit → start, from the scheduler's own records (whole seconds)."""
        submit, start = self.seconds("SubmitTime"), self.seconds("StartTime")
        return max(0.0, start - submit) if submit is not None and start is not None else None

    def why(self) -> str:
        """The scheduler's state and reason in one phrase: `TIMEOUT (TimeLimit) on node-3`."""
        reason = self.get("Reason")
        where = f" on {self.node}" if self.node else ""
        return f"{self.state}{f' ({reason})' if reason else ''}{where}"


def submit(args: Sequence[str], script: str, *, timeout: float) -> str:
    """`sbatch --parsable`: the job id (a `;cluster` suffix dropped)."""
    res = call(["sbatch", "--parsable", *args], stdin=script, timeout=timeout)
    job = res.stdout.strip().split(";")[0]
    if res.returncode != 0 or not job.isdigit():
        raise ProvisionError(f"sbatch failed (rc {res.returncode}): {last_line(res.stderr or res.stdout)}")
    return job


def show(job: str, *, timeout: float) -> Job | None:
    """The job's record, or None once slurmctld has forgotten it (MinJobAge after its end)."""
    res = call(["scontrol", "-o", "show", "job", job], timeout=timeout)
    if res.returncode != 0:
        if "Invalid job id" in res.stderr:
            return None
        raise ProvisionError(f"scontrol show job {job} failed: {last_line(res.stderr)}")
    return Job.parse(res.stdout.splitlines()[0]) if res.stdout.strip() else None


def node_address(record: str) -> str | None:
    """`NodeAddr` of one `scontrol -o show node` line: the address slurmctld and the other daemons reach the node
    at (Slurm shows the node's name there when slurm.conf gives no address). None when the record has neither."""
    node = Job.parse(record)  # the same Key=Value line as a job's
    return node.get("NodeAddr") or node.get("NodeName")


def node_addr(node: str, *, timeout: float) -> str:
    """The address of compute node `node` (`scontrol -o show node`)."""
    res = call(["scontrol", "-o", "show", "node", node], timeout=timeout)
    addr = node_address(res.stdout.splitlines()[0]) if res.returncode == 0 and res.stdout.strip() else None
    if addr is None:
        raise ProvisionError(f"scontrol show node {node} gave no NodeAddr: {last_line(res.stderr or res.stdout)}")
    return addr


def cancel(jobs: Sequence[str], *, timeout: float) -> None:
    if jobs:
        res = call(["scancel", *jobs], timeout=timeout)
        if res.returncode != 0:
            log.warning("scancel %s: %s", " ".join(jobs), last_line(res.stderr))


@functools.cache
def version(*, timeout: float) -> str | None:
    """`slurm-wlm 22.05.8` ▸ `22.05.8`."""
    try:
        res = call(["scontrol", "-V"], timeout=timeout)
    except ProvisionError:
        return None
    return res.stdout.split()[-1] if res.returncode == 0 and res.stdout.strip() else None


def comment() -> str:
    return f"{OWNER_TAG}{owner_label()}"


def sweep(*, everything: bool, timeout: float) -> list[str]:
    """Cancel queued or running benchbed jobs whose harness is gone (all of them with `everything`)."""
    res = call(["squeue", "--noheader", "--format=%i|%j|%k"], timeout=timeout)
    if res.returncode != 0:
        raise ProvisionError(f"squeue failed: {last_line(res.stderr)}")
    doomed: list[tuple[str, str]] = []
    for line in res.stdout.splitlines():
        job, _, rest = line.strip().partition("|")
        name, _, note = rest.partition("|")
        if not name.startswith(JOB_PREFIX) or not note.startswith(OWNER_TAG):
            continue
        if everything or not owner_alive(note[len(OWNER_TAG) :]):
            doomed.append((job, name))
    cancel([job for job, _ in doomed], timeout=timeout)
    return [f"slurm job {job} ({name})" for job, name in doomed]
