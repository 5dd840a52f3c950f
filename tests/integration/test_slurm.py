"""The `slurm` target against a real Slurm cluster on 127.0.0.1 (scripts/setup-slurm: munged, slurmctld, slurmd)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchbed.results import load_run
from benchbed.targets.slurm import SlurmTarget
from tests.conftest import REPO, interruptible
from tests.integration import slurmctl as C
from tests.integration import sshd as S

pytestmark = pytest.mark.slurm

SLOW = {"name": "util.noop", "params": {"duration_ms": 100}, "repetitions": 300}
NOOP = {"name": "util.noop", "params": {"duration_ms": 1}}
SLURM_PHASES = {"submit", "queue_wait", "job_start", "step_start", "put_agent", "agent_ready", "workload", "teardown"}


@pytest.fixture(scope="module")
def nodes() -> list[str]:
    return C.required()


@pytest.fixture
def run_id() -> str:
    rid = f"t{uuid.uuid4().hex[:8]}"
    yield rid
    for job in C.jobs(rid):  # a failed test must not leave its jobs to the next one
        subprocess.run(["scancel", job], check=False)


def samples_of(run_dir: Path, target: str) -> int:
    path = run_dir / "samples.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if f'"target":"{target}"' in line.replace(" ", ""))


def cli(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def target(spec: dict[str, Any], run_id: str) -> Any:
    from benchbed.targets.slurmjob import SlurmProvisioner

    return SlurmProvisioner("box", SlurmTarget.model_validate(spec), run_id)


# ── a full suite ─────────────────────────────────────────────────────────────────────────────────────────
def test_quick_suite_on_slurm_next_to_local(nodes: list[str], tmp_path: Path) -> None:
    S.write_targets(tmp_path / "targets.yaml", {"local": {"kind": "local"}, "slurm": C.spec(nodelist=nodes[0])})
    proc = cli("run", "quick", "-t", "targets.yaml", "--repeat", "1", "--out", "res", "--no-report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "res").iterdir()
    run = load_run(run_dir)
    status = run.cases.pivot_table(index="workload", columns="target", values="status", aggfunc="first")
    assert (status.slurm == status.local).all(), status
    assert (status.slurm == "ok").sum() >= 10, status
    key = ["workload", "metric", "unit", "better", "phase"]
    shapes = {t: set(map(tuple, g[key].drop_duplicates().values.tolist())) for t, g in run.samples.groupby("target")}
    assert shapes["slurm"] == shapes["local"]
    for phases in run.cases[run.cases.target == "slurm"].phases:
        assert phases.keys() >= SLURM_PHASES, phases
        assert all(v >= 0 for v in phases.values())
    facts = run.env["slurm"]["slurm"]
    assert facts["node"] == nodes[0]
    assert facts["version"].count(".") == 2
    assert facts["partition"]
    assert facts["cpus"] >= 1
    assert run.env["slurm"]["kind"] == "slurm"
    assert not C.jobs(run_dir.name)
    assert not list(Path("/tmp").glob(f"benchbed-{run_dir.name}-*"))


# ── the session: workdir, transfer, commands ─────────────────────────────────────────────────────────────
@pytest.mark.parametrize("transfer", ["sbcast", "shared"])
def test_workdir_is_private_the_agent_arrives_and_all_is_removed(
    nodes: list[str], tmp_path: Path, run_id: str, transfer: str
) -> None:
    parent = tmp_path / transfer
    t = target(C.spec(transfer=transfer, workdir=str(parent)), run_id)
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(4096))
    with t.provision() as session:
        wd = Path(session.workdir)
        assert wd.parent == parent
        assert wd.stat().st_mode & 0o777 == 0o700
        session.put(src, f"{session.workdir}/payload.bin")
        res = session.run(["sh", "-c", 'sha256sum payload.bin; echo "$SLURM_JOB_ID $SLURMD_NODENAME"; pwd'])
        digest, ids, cwd = res.stdout.splitlines()
        assert digest.split()[0] == __import__("hashlib").sha256(src.read_bytes()).hexdigest()
        assert ids.split()[1] in nodes
        assert cwd == session.workdir
        failed = session.run(["sh", "-c", "echo to-stderr >&2; exit 3"])
        assert (failed.rc, failed.stderr, failed.reason) == (3, "to-stderr\n", None)
    assert not list(parent.iterdir())
    assert not C.jobs(run_id)
    phases = t.startup_phases()
    assert phases.keys() >= {"submit", "queue_wait", "job_start", "step_start", "job_end"}


def test_case_timeout_cancels_the_job(nodes: list[str], tmp_path: Path, run_id: str) -> None:
    targets = {"box": C.spec(workdir=str(tmp_path / "wd"))}
    slow = {**SLOW, "timeout_s": 3}
    runner = S.run_suite(tmp_path, targets, [slow, NOOP], run_id=run_id)
    cases = load_run(runner.run_dir).cases.sort_values("case")
    assert cases.status.tolist() == ["failed", "ok"]
    assert "timed out after 3 s" in cases.reason.iloc[0]
    assert not C.jobs(run_id)
    assert not list((tmp_path / "wd").iterdir())


# ── faults: the scheduler ends the job mid-case ──────────────────────────────────────────────────────────
@pytest.mark.parametrize(
    ("how", "expect"),
    [
        (["scancel"], "CANCELLED"),
        (["scontrol", "update", "EndTime=now"], "TIMEOUT (TimeLimit)"),  # the scheduler's own time-limit kill
        (["scontrol", "update", "State=DOWN", "Reason=benchbed-test"], "NODE_FAIL"),  # the node is lost
    ],
    ids=["cancelled", "time-limit", "node-lost"],
)
def test_job_ended_by_the_scheduler_fails_that_case_and_the_suite_goes_on(
    nodes: list[str], tmp_path: Path, run_id: str, how: list[str], expect: str
) -> None:
    targets = {"box": C.spec(nodelist=nodes[0], workdir=str(tmp_path / "wd"))}
    runner = S.make_runner(tmp_path, targets, [SLOW, NOOP], run_id=run_id)

    def strike() -> None:
        C.wait_for(lambda: samples_of(runner.run_dir, "box") > 0, what="first sample")
        (job,) = C.jobs(run_id)
        if how[0] == "scancel":
            argv = [*how, job]
        else:
            what = f"NodeName={nodes[0]}" if "State=DOWN" in how else f"JobId={job}"
            argv = [*how[:2], what, *how[2:]]
        subprocess.run(argv, check=True)
        if "State=DOWN" in how:  # the node comes back for the next case once its job is gone
            C.wait_for(lambda: job not in C.jobs(run_id), what="the lost node's job to end")
            subprocess.run(["scontrol", "update", f"NodeName={nodes[0]}", "State=RESUME"], check=False)

    killer = threading.Thread(target=strike, daemon=True)
    killer.start()
    try:
        runner.execute()
    finally:
        killer.join()
        if "State=DOWN" in how:
            subprocess.run(["scontrol", "update", f"NodeName={nodes[0]}", "State=RESUME"], check=False)
    run = load_run(runner.run_dir)
    assert run.meta["status"] == "complete"
    cases = run.cases.sort_values("case")
    assert cases.status.tolist() == ["failed", "ok"], cases[["status", "reason"]]
    reason = cases.reason.iloc[0]
    assert reason.startswith("slurm job "), reason
    assert expect in reason
    assert f"on {nodes[0]}" in reason
    assert "\n" not in reason
    C.wait_no_jobs(run_id)


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        (
            {"partition": "no-such-partition"},
            "sbatch failed (rc 1): sbatch: error: Batch job submission failed: Invalid partition",
        ),
        ({"python": "/nonexistent/python3"}, "python '/nonexistent/python3' not found on node "),
        ({"workdir": "/proc/nope"}, "cannot create a workdir under /proc/nope on node "),
    ],
    ids=["partition", "python", "workdir"],
)
def test_bad_definitions_fail_with_one_line(
    nodes: list[str], tmp_path: Path, run_id: str, over: dict[str, Any], pattern: str
) -> None:
    runner = S.run_suite(tmp_path, {"box": C.spec(**over)}, [NOOP], run_id=run_id)
    (reason,) = load_run(runner.run_dir).cases.reason
    assert pattern in reason
    assert reason.startswith("target 'box': ")
    assert "\n" not in reason
    assert not C.jobs(run_id)


# ── Ctrl-C and cleanup ───────────────────────────────────────────────────────────────────────────────────
def blocker(node: str) -> str:
    """A job that holds `node`, so the next job pinned there waits in the queue."""
    res = subprocess.run(
        ["sbatch", "--parsable", "--exclusive", f"--nodelist={node}", "--output=/dev/null", "--job-name=bbtest-block"],
        input="#!/bin/sh\nexec sleep 600\n",
        capture_output=True,
        text=True,
        check=True,
    )
    job = res.stdout.strip()
    C.wait_for(lambda: C.job_field(job, "JobState") == "RUNNING", what="blocker running")
    return job


def start_run(tmp: Path, targets: dict[str, Any], workloads: list[dict[str, Any]], *extra: str) -> Any:
    S.write_targets(tmp / "targets.yaml", targets)
    suite = {"name": "s", "baseline": next(iter(targets)), "defaults": {"instances": 1, "repetitions": 300}}
    (tmp / "suite.yaml").write_text(yaml.safe_dump({**suite, "workloads": workloads}))
    cmd = [sys.executable, "-m", "benchbed.cli", "run", "suite.yaml", "-t", "targets.yaml", "--out", "res"]
    return subprocess.Popen(
        [*cmd, "--no-report", *extra],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=interruptible,
    )


def run_dir_of(tmp: Path) -> Path:
    return C.wait_for(lambda: next((d for d in (tmp / "res").glob("*") if d.is_dir()), None), what="run directory")


def test_ctrl_c_cancels_queued_and_running_jobs(nodes: list[str], tmp_path: Path) -> None:
    """One target streams on the last node while another waits in the queue behind a blocker; Ctrl-C ends both."""
    block = blocker(nodes[0])
    try:
        targets = {"queued": C.spec(nodelist=nodes[0])}
        if len(nodes) > 1:
            targets["running"] = C.spec(nodelist=nodes[-1])
        proc = start_run(tmp_path, targets, [{"name": "util.noop", "params": {"duration_ms": 50}}], "--parallel", "2")
        run = run_dir_of(tmp_path)
        C.wait_for(lambda: "PENDING" in C.jobs(run.name).values(), what="a queued job")
        if len(nodes) > 1:
            C.wait_for(lambda: samples_of(run, "running") > 0, what="the running target's samples")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err.decode()
        assert not C.jobs(run.name)
        assert json.loads((run / "run.json").read_text())["status"] == "incomplete"
    finally:
        subprocess.run(["scancel", block], check=False)
        if proc.poll() is None:
            proc.kill()


def test_cleanup_cancels_a_dead_runs_jobs_and_spares_a_live_ones(nodes: list[str], tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    proc = start_run(tmp_path, {"box": C.spec(workdir=str(wd))}, [SLOW])
    run = run_dir_of(tmp_path)
    C.wait_for(lambda: samples_of(run, "box") > 0, what="the first sample")
    proc.kill()  # SIGKILL: no teardown; the job keeps running, owned by a dead harness
    proc.communicate()
    (job,) = C.jobs(run.name)
    assert list(wd.iterdir())
    live = subprocess.run(  # a job of a live harness (this test process): cleanup leaves it alone
        ["sbatch", "--parsable", "--output=/dev/null", f"--job-name=benchbed-live-{run.name}", "--nodes=1"],
        input=f"#!/bin/sh\n#SBATCH --comment=benchbed-owner={os.uname().nodename}:{os.getpid()}\nexec sleep 600\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        out = cli("cleanup", cwd=tmp_path, timeout=120)
        assert out.returncode == 0, out.stderr
        assert f"slurm job {job} (benchbed-{run.name}-box)" in out.stdout
        C.wait_for(lambda: job not in C.jobs(run.name), what="the dead run's job to go")
        C.wait_for(lambda: not list(wd.iterdir()), what="its workdir to go with the job")
        assert live in C.jobs(f"live-{run.name}")
    finally:
        subprocess.run(["scancel", live], check=False)


# ── fleets ───────────────────────────────────────────────────────────────────────────────────────────────
class _Spans:
    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self.open: dict[int, float] = {}

    def started(self, plan: Any, run_dir: Path) -> None:
        pass

    def case_started(self, case: Any) -> None:
        self.open[case.index] = time.monotonic()

    def case_finished(self, case: Any, record: dict[str, Any]) -> None:
        self.spans.setdefault(case.target, []).append((self.open.pop(case.index), time.monotonic()))

    def replanned(self, plan: Any) -> None:
        pass


def test_fleet_one_target_per_node_runs_in_parallel(nodes: list[str], tmp_path: Path, run_id: str) -> None:
    if len(nodes) < 2:
        pytest.skip("one node: scripts/setup-slurm makes two where the machine has two CPUs")
    targets = {node: C.spec(nodelist=node) for node in nodes[:2]}
    spans = _Spans()
    work = {"name": "util.noop", "params": {"duration_ms": 300}}
    runner = S.run_suite(
        tmp_path, targets, [work], defaults={"instances": 2}, parallel=2, observer=spans, run_id=run_id
    )
    run = load_run(runner.run_dir)
    assert set(run.cases.status) == {"ok"}, run.cases[["target", "status", "reason"]]
    assert {run.env[n]["slurm"]["node"] for n in nodes[:2]} == set(nodes[:2])
    every = sorted(s for spans_ in spans.spans.values() for s in spans_)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(every)), "the nodes never ran at once"
    for name, mine in spans.spans.items():
        for a, b in itertools.pairwise(mine):
            assert b[0] >= a[1], f"{name}: two instances at once on one node"


# ── a stack through Slurm's container support ────────────────────────────────────────────────────────────
def test_stack_runs_as_an_oci_container_through_slurm(nodes: list[str], tmp_path: Path, run_id: str) -> None:
    """The stack image as an OCI bundle (`srun --container`, runc): bare-metal Slurm and Slurm container are two
    boundaries on the same node, and the fingerprint says the userland is the image's."""
    from tests.conftest import need
    from tests.integration import dockerd

    if os.geteuid() != 0 or not Path("/etc/slurm/oci.conf").is_file():
        need("slurm", "the stack needs root and /etc/slurm/oci.conf (scripts/setup-slurm writes it where runc is)")
    image = dockerd.test_image()
    if not dockerd.image_present(image):
        need("slurm", f"test image {image} not built (scripts/build-test-image)")
    targets = {"bare": C.spec(nodelist=nodes[0]), "oci": C.spec(nodelist=nodes[0], stack=image, python="python3")}
    runner = S.run_suite(tmp_path, targets, [NOOP, {"name": "cpu.gemm", "params": {"n": 32}}], run_id=run_id)
    run = load_run(runner.run_dir)
    assert set(run.cases.status) == {"ok"}, run.cases[["target", "status", "reason"]]
    oci, bare = run.env["oci"], run.env["bare"]
    assert oci["stack_image"]["boundary"] == "slurm-oci"
    assert oci["slurm"]["container"]
    assert oci["hostname"] == "benchbed"  # the bundle's own UTS namespace
    assert oci["python"]["executable"] != bare["python"]["executable"]  # the image's interpreter, not the venv's
    assert oci["slurm"]["node"] == bare["slurm"]["node"] == nodes[0]
    assert not C.jobs(run_id)


def test_gres_gpu_reaches_the_step_and_the_fingerprint(nodes: list[str], tmp_path: Path, run_id: str) -> None:
    """setup-slurm gives each node one stand-in GPU (gres.conf: /dev/null), so `--gres=gpu:1` is scheduled and
    bound as on a GPU cluster: the step sees CUDA_VISIBLE_DEVICES, the job record names the GPU it got."""
    gres = subprocess.run(["sinfo", "-h", "-N", "-o", "%G"], capture_output=True, text=True, check=True).stdout
    if "gpu" not in gres:
        pytest.skip("the cluster declares no gres/gpu (scripts/setup-slurm does)")
    targets = {"gpu": C.spec(nodelist=nodes[0], gres="gpu:1"), "cpu": C.spec(nodelist=nodes[0])}
    runner = S.run_suite(tmp_path, targets, [NOOP], run_id=run_id)
    run = load_run(runner.run_dir)
    assert set(run.cases.status) == {"ok"}, run.cases[["target", "status", "reason"]]
    gpu, cpu = run.env["gpu"], run.env["cpu"]
    assert gpu["cuda_visible_devices"] == "0"
    assert gpu["slurm"]["gres"] == "gpu:1"
    assert gpu["slurm"]["tres_per_node"] == "gres:gpu:1"  # TRES counts gres/gpu only with slurmdbd accounting
    assert "tres_per_node" not in cpu["slurm"]
    assert cpu["cuda_visible_devices"] in (None, "")
