"""One Slurm job per instance: `sbatch` an allocation ▸ wait for it ▸ a probe step makes the workdir ▸ the agent
arrives (`sbcast`, or a copy onto a shared filesystem) ▸ `srun` runs it as a step ▸ `scancel`, wait for the end.

The job's batch script only holds the allocation and owns the workdir: it removes it when the job ends, however it
ends (our `scancel`, the time limit, `benchbed cleanup`), so nothing is left on the node. Steps are `srun --jobid`
processes on this machine; their stdout is the agent's protocol, streamed like a local process's.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from benchbed.errors import Interrupted, ProvisionError, TransportError
from benchbed.interrupts import held_signals
from benchbed.targets import slurmcli as cli
from benchbed.targets.base import CommandResult, Endpoint, LineHandler, PhaseClock, TargetImpl
from benchbed.targets.local import LocalSession
from benchbed.targets.slurm import SlurmTarget
from benchbed.targets.slurmnet import VIA, NodeAddresses

POLL_FIRST_S, POLL_MAX_S = 0.05, 2.0  # queue polling backs off: a big cluster's slurmctld is shared
SETTLE_S = 5.0  # after a step died with the job, how long its state may take to leave RUNNING
_NO_PYTHON, _NO_WORKDIR = 3, 4
_TASK_END = re.compile(r"^srun: error: \S+: tasks? [\d,-]+: (Exited with exit code \d+|Killed|Terminated)\n?", re.M)
# how a step learns that the scheduler ended it: slurmstepd's `*** JOB 7 ON n1 CANCELLED AT ... ***`, or srun's own
# line when the node went away under it
_BANNER = re.compile(r"\*\*\* (?:JOB|STEP) [^*]*\*\*\*|srun: error: Node failure on \S+")

HOLDER = """#!/bin/sh
# benchbed: holds one instance's allocation; the instance's workdir (made by the first step) ends with it
W={workdir}
trap 'rm -rf -- "$W"; exit 0' TERM INT HUP
trap 'rm -rf -- "$W"' EXIT
while :; do sleep 3600 & wait $!; done
"""


class SlurmSession(LocalSession):
    """Commands are `srun` steps in the instance's job; the workdir is on the node (or a shared filesystem)."""

    def __init__(self, owner: SlurmProvisioner, job: str, workdir: str, node: str | None = None) -> None:
        super().__init__(workdir)
        self.owner = owner
        self.job = job
        self.node = node  # where the steps run: the allocation's first node
        self._net: dict[str, Any] | None = None
        self.launch_dir = None  # srun starts here; --chdir puts the step in the workdir on the node
        self.chdir = workdir
        self.stack_cache = None  # a fresh node-local workdir per instance: nothing to keep
        self.aborted = False

    def command(self, argv: Sequence[str]) -> list[str]:
        spec, bundle = self.owner.spec, self.owner.bundle
        head = ["srun", f"--jobid={self.job}", "--nodes=1", "--ntasks=1", "--overlap", "--quiet", "--kill-on-bad-exit"]
        head += [f"--chdir={self.chdir}", *spec.srun_args]
        if bundle is None:
            return [*head, *argv]
        # in a container the step starts in the bundle's cwd: enter the workdir (bound from the node) first
        return [*head, f"--container={bundle}", "/bin/sh", "-c", 'cd "$0" && exec "$@"', self.chdir, *argv]

    def serve_net(self) -> dict[str, Any]:
        """The node's own address (its NodeAddr), any port: the controller connects there (slurmnet)."""
        if self._net is None:
            self._net = self.owner.addresses.serve_net(self.node, self.owner.bundle, self.owner.spec.serve_port)
        return self._net

    def endpoint(self, port: int) -> AbstractContextManager[Endpoint | None]:
        net = self.serve_net()
        return nullcontext(None if net["port"] is None else Endpoint(net["bind"], port, VIA))

    def put(self, local: Path, remote: str) -> None:
        if self.owner.spec.transfer == "shared":
            super().put(local, remote)
            return
        res = cli.call(["sbcast", "--force", f"--jobid={self.job}", str(local), remote], timeout=self.owner.timeout)
        if res.returncode != 0:
            raise TransportError(f"{self.owner.where()}: sbcast to {remote} failed: {cli.last_line(res.stderr)}")

    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        res = super().stream(argv, on_line, timeout=timeout)
        res = dataclasses.replace(res, stderr=_TASK_END.sub("", res.stderr))  # srun's echo of the exit code
        troubled = res.rc != 0 or "srun: error:" in res.stderr  # srun exits 0 when the node failed under it
        if troubled and not res.timed_out and not self.aborted:
            reason = ended_why(self.job, res.stderr, self.owner.timeout)
            if reason:  # a step the scheduler ended did not succeed, whatever srun's exit code says
                return dataclasses.replace(res, rc=res.rc or 1, reason=reason)
        return res

    def _end(self, proc: subprocess.Popen[bytes]) -> int:
        """srun is a client here: reap it, killing it if it still runs (its step ends with the job, in the
        provisioner's teardown). Unlike a local agent's, its process group is not waited for."""
        if proc.poll() is None:
            proc.kill()
        rc = proc.wait()
        self.agents.discard(proc)
        return rc

    def abort(self) -> None:
        """The run stops (from another thread): cancel the job, so the step and its srun end now."""
        self.aborted = True
        cli.cancel([self.job], timeout=self.owner.timeout)

    def close(self) -> None:
        """End the srun processes still running here; the job (and its workdir) end in the provisioner."""
        with held_signals():
            for proc in list(self.agents):
                self._end(proc)


class SlurmProvisioner(TargetImpl):
    """Submits one job per instance; remembers the jobs it has not seen end, so close()/stop() cancel them."""

    def __init__(self, name: str, spec: SlurmTarget, run_id: str) -> None:
        super().__init__(name, spec, run_id)
        self.spec: SlurmTarget = spec
        self.timeout = spec.command_timeout_s
        self.jobs = JobBook(self.timeout)
        self.addresses = NodeAddresses(self.timeout)  # serve.latency's across path: each node's NodeAddr
        self._stop = threading.Event()
        self._facts: dict[str, Any] = {}
        self.bundle: str | None = spec.container  # the OCI bundle the steps run in, if any
        self._stack_image: dict[str, str] | None = None

    def _on_stack(self, image: str) -> None:
        """The stack as an OCI bundle, made once per run (its unpack is the `stack_unpack` phase of that instance)."""
        from benchbed.targets.slurmoci import stack_bundle

        binds = [self.spec.workdir, *([self.spec.scratch_dir] if self.spec.scratch_dir else [])]
        bundle, self._stack_image, unpack_s = stack_bundle(image, binds, self.where())
        self.bundle = str(bundle)
        if unpack_s:
            self._clock.add("stack_unpack", unpack_s)

    def where(self) -> str:
        return f"target {self.name!r}"

    def sbatch_args(self) -> list[str]:
        return sbatch_args(self.spec, f"{cli.JOB_PREFIX}{self.run_id}-{self.name}")

    @contextmanager
    def provision(self) -> Iterator[SlurmSession]:
        self._clock = clock = PhaseClock()
        if self.spec.stack and self._stack_image is None:
            self._on_stack(self.spec.stack)
        t0 = time.perf_counter()
        parent = self.spec.workdir.rstrip("/") or "/"
        with held_signals():  # a job exists only once it is recorded: Ctrl-C cannot orphan it between the two
            try:
                job = cli.submit(
                    self.sbatch_args(), HOLDER.format(workdir=self._workdir_sh(parent)), timeout=self.timeout
                )
            except ProvisionError as err:
                raise self.error(ProvisionError, err.args[0], hint=err.hint) from err
            self.jobs.add(job)
        session: SlurmSession | None = None
        try:
            clock.add("submit", time.perf_counter() - t0)
            self._wait_running(job, clock)
            workdir = f"{parent}/{cli.JOB_PREFIX}{self.run_id}-{job}"
            session = SlurmSession(self, job, workdir, self._facts.get("node"))
            t1 = time.perf_counter()
            self._probe(session, parent)
            clock.add("step_start", time.perf_counter() - t1)
            yield session
        finally:
            with held_signals():
                if session is not None:
                    session.close()
                self._clock.add("job_end", self.jobs.end(job))

    def _workdir_sh(self, parent: str) -> str:
        return f'{shlex.quote(parent)}/{shlex.quote(cli.JOB_PREFIX + self.run_id)}-"$SLURM_JOB_ID"'

    def _wait_running(self, job: str, clock: PhaseClock) -> None:
        """Poll the job until it runs. Its queue wait comes from the scheduler's records (whole seconds); the rest
        of the time until it was seen running (scheduling cycle, node launch, polling) is `job_start`."""
        t0, delay = time.perf_counter(), POLL_FIRST_S
        while True:
            info = cli.show(job, timeout=self.timeout)
            state = info.state if info else "GONE"
            if info is not None and state == "RUNNING":
                break
            if info is None or state in cli.ENDED:
                why = info.why() if info else "gone from the queue"
                raise self.error(ProvisionError, f"slurm job {job} ended before it started: {why}")
            if time.perf_counter() - t0 > self.spec.queue_timeout_s:
                raise self.error(
                    ProvisionError,
                    f"slurm job {job} still {info.why()} after {self.spec.queue_timeout_s:g} s in the queue",
                    hint="raise queue_timeout_s, or pick a partition/nodes that are free",
                )
            if self._stop.wait(delay):
                raise Interrupted(f"{self.where()}: run stopping")
            delay = min(delay * 1.5, POLL_MAX_S)
        seen = time.perf_counter() - t0
        queued = min(info.queue_wait() or 0.0, seen)
        clock.add("queue_wait", queued)
        clock.add("job_start", seen - queued)
        self._facts = facts(info, self.spec, self.timeout)

    def _probe(self, session: SlurmSession, parent: str) -> None:
        """First step: python present on the node? then the private workdir (mode 700) the holder will remove."""
        q, py = shlex.quote, shlex.quote(self.spec.python)
        script = (
            f"command -v {py} >/dev/null 2>&1 || exit {_NO_PYTHON}; umask 077; "
            f"mkdir -p -- {q(parent)} && mkdir -- {q(session.workdir)} || exit {_NO_WORKDIR}"
        )
        session.chdir = parent  # the workdir does not exist yet
        try:
            res = session.run(["/bin/sh", "-c", script], timeout=self.timeout)
        finally:
            session.chdir = session.workdir
        node = self._facts.get("node", "?")
        if res.rc == _NO_PYTHON:
            raise self.error(
                ProvisionError, f"python {self.spec.python!r} not found on node {node}", hint="set `python:`"
            )
        if res.rc == _NO_WORKDIR:
            msg = f"cannot create a workdir under {parent} on node {node}: {cli.last_line(res.stderr)}"
            raise self.error(ProvisionError, msg)
        if res.rc != 0:
            reason = res.reason or f"rc {res.rc}: {cli.last_line(res.stderr)}"
            raise self.error(ProvisionError, f"first step of slurm job {session.job} on {node} failed: {reason}")

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"slurm": {**self._facts, **({"container": self.bundle} if self.bundle else {})}}
        if self._stack_image:
            out["stack_image"] = self._stack_image
        return out if self._facts else {}

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """End of run (also after Ctrl-C): cancel every job whose instance never reached its own teardown."""
        self.jobs.close()


class JobBook:
    """The jobs a provisioner submitted and has not yet seen end (instances run in parallel lanes): each ends in
    its instance's teardown, and whatever is left (Ctrl-C, a crash in between) is cancelled at the end of the run."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._jobs: set[str] = set()
        self._lock = threading.Lock()

    def add(self, job: str) -> None:
        with self._lock:
            self._jobs.add(job)

    def end(self, job: str) -> float:
        """scancel, then wait until the job is gone from the node (its holder removed the workdir); the seconds
        that wait took (the `job_end` phase)."""
        cli.cancel([job], timeout=self.timeout)
        t0 = time.perf_counter()
        self.wait_ended([job])
        with self._lock:
            self._jobs.discard(job)
        return time.perf_counter() - t0

    def close(self) -> None:
        with self._lock:
            left = sorted(self._jobs)
            self._jobs.clear()
        cli.cancel(left, timeout=self.timeout)
        self.wait_ended(left)  # a cancelled running job is COMPLETING until its node has cleaned up

    def wait_ended(self, jobs: Sequence[str]) -> None:
        """Until each job has left the queue (ended, or forgotten by the scheduler), at most `timeout` seconds."""
        deadline = time.monotonic() + self.timeout
        for job in jobs:
            while time.monotonic() < deadline:
                info = cli.show(job, timeout=self.timeout)
                if info is None or info.state in cli.ENDED:
                    break
                time.sleep(0.05)


def ended_why(job: str, stderr: str, timeout: float) -> str | None:
    """Why a step failed when the scheduler ended the job (cancelled, timed out, node lost, preempted): its
    state and reason in one line. None when the job still runs: then the agent itself failed."""
    banner = _BANNER.search(stderr)
    deadline = time.monotonic() + SETTLE_S
    while True:  # a job the scheduler ends passes through COMPLETING; a step banner may come before the state
        info = cli.show(job, timeout=timeout)
        if info is None or info.state in cli.ENDED or (info.state == "RUNNING" and not banner):
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if info is not None and info.state != "RUNNING":
        return f"slurm job {job} {info.why()}" + (f": {banner.group(0)}" if banner else "")
    return f"slurm: {banner.group(0)}" if banner else None


def facts(info: cli.Job, spec: SlurmTarget, timeout: float) -> dict[str, Any]:
    """What the fingerprint says about the allocation: node, partition, CPUs and GPUs (TRES), Slurm's version."""
    out = {
        "job_id": info.fields.get("JobId"),
        "node": info.node,
        "nodes": info.get("NodeList"),
        "partition": info.get("Partition"),
        "account": info.get("Account"),
        "qos": info.get("QOS"),
        "cpus": int(info.fields["NumCPUs"]) if info.fields.get("NumCPUs", "").isdigit() else None,
        "tres": info.get("TRES") or info.get("AllocTRES"),
        "gres": spec.gres,
        "tres_per_node": info.get("TresPerNode"),
        "exclusive": spec.exclusive,
        "oversubscribe": info.get("OverSubscribe"),
        "time_limit": info.get("TimeLimit"),
        "version": cli.version(timeout=timeout),
    }
    return {key: value for key, value in out.items() if value is not None}


def sbatch_args(spec: SlurmTarget, job_name: str) -> list[str]:
    """The job: named after the run and target, its owner in the comment, never requeued, then the spec's options."""
    args = [f"--job-name={job_name}", f"--comment={cli.comment()}"]
    args += ["--output=/dev/null", "--error=/dev/null", f"--nodes={spec.nodes}", "--ntasks=1", "--no-requeue"]
    for flag, value in (
        ("partition", spec.partition),
        ("account", spec.account),
        ("qos", spec.qos),
        ("nodelist", spec.nodelist),
        ("constraint", spec.constraint),
        ("gres", spec.gres),
        ("time", spec.time_limit),
    ):
        if value:
            args.append(f"--{flag}={value}")
    if spec.exclusive:
        args.append("--exclusive")
    return [*args, *spec.sbatch_args]
