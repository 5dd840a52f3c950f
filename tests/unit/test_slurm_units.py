"""The slurm kind without a cluster: spec checks, sbatch arguments, scontrol records, groups of nodes, lanes."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchbed.config import load_targets
from benchbed.errors import ConfigError
from benchbed.targets import slurmcli
from benchbed.targets.registry import lane_of
from benchbed.targets.slurm import SlurmTarget
from benchbed.targets.slurmjob import SlurmProvisioner

RECORD = (
    "JobId=42 JobName=benchbed-r1-box UserId=root(0) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) "
    "SubmitTime=2026-11-30T08:00:00 StartTime=2026-11-30T08:00:07 EndTime=2026-11-30T08:01:07 "
    "Partition=gpu NodeList=n[1-2] BatchHost=n1 NumCPUs=16 TRES=cpu=16,mem=64G,node=2,gres/gpu=2 "
    "Command=/bin/sh -c 'echo a b' WorkDir=/home/me/my dir Comment=benchbed-owner=ctl:123 OverSubscribe=NO"
)


def test_an_scontrol_record_parses_values_with_spaces_and_equals_signs() -> None:
    job = slurmcli.Job.parse(RECORD)
    assert job.state == "TIMEOUT"
    assert job.node == "n1"
    assert job.fields["WorkDir"] == "/home/me/my dir"
    assert job.fields["Comment"] == "benchbed-owner=ctl:123"
    assert job.fields["TRES"] == "cpu=16,mem=64G,node=2,gres/gpu=2"
    assert job.get("Dependency") is None
    assert job.queue_wait() == 7.0
    assert job.why() == "TIMEOUT (TimeLimit) on n1"


def test_a_pending_job_has_no_queue_wait_yet() -> None:
    job = slurmcli.Job.parse(
        "JobId=7 JobState=PENDING Reason=Resources SubmitTime=2026-11-30T08:00:00 StartTime=Unknown"
    )
    assert job.queue_wait() is None
    assert job.why() == "PENDING (Resources)"


def test_sbatch_arguments_carry_the_run_label_and_every_option() -> None:
    spec = SlurmTarget.model_validate(
        {
            "kind": "slurm",
            "partition": "gpu",
            "account": "lab",
            "qos": "bench",
            "nodelist": "n1",
            "constraint": "h100",
            "gres": "gpu:1",
            "time_limit": "10:00",
            "sbatch_args": ["--mem=0"],
        }
    )
    args = SlurmProvisioner("box", spec, "r1").sbatch_args()
    assert "--job-name=benchbed-r1-box" in args
    assert any(a.startswith("--comment=benchbed-owner=") for a in args)
    for want in ("--partition=gpu", "--account=lab", "--qos=bench", "--nodelist=n1", "--constraint=h100"):
        assert want in args
    assert {"--gres=gpu:1", "--time=10:00", "--exclusive", "--output=/dev/null"} <= set(args)
    assert args[-1] == "--mem=0"
    shared = SlurmTarget.model_validate({"kind": "slurm", "exclusive": False})
    assert "--exclusive" not in SlurmProvisioner("box", shared, "r1").sbatch_args()


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"time_limit": "ten minutes"}, "time_limit"),
        ({"stack": "img", "container": "/b"}, "not both"),
        ({"transfer": "scp"}, "transfer"),
        ({"nodes": 0}, "nodes"),
    ],
)
def test_bad_specs_are_refused(tmp_path: Path, over: dict[str, object], error: str) -> None:
    path = tmp_path / "t.yaml"
    body = ", ".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in over.items())
    path.write_text(f"targets:\n  box: {{kind: slurm, {body}}}\n")
    with pytest.raises(ConfigError, match=error):
        load_targets(path)


def test_a_group_of_nodes_is_one_target_per_node_each_its_own_lane(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "targets:\n  local: {kind: local}\ngroups:\n  fleet:\n    hosts: [node01, node02]\n"
        "    template: {kind: slurm, partition: gpu, gres: 'gpu:1'}\n"
        "  lab:\n    hosts: [gpu01]\n    template: {user: bench}\n"
    )
    specs = load_targets(path)
    assert sorted(specs) == ["gpu01", "local", "node01", "node02"]
    assert specs["node02"].kind == "slurm"
    assert specs["node02"].nodelist == "node02"  # type: ignore[attr-defined]
    assert specs["node02"].partition == "gpu"  # type: ignore[attr-defined]
    assert specs["gpu01"].kind == "ssh"  # a template without `kind:` is still an ssh one
    assert len({lane_of(specs[n]) for n in ("node01", "node02", "local")}) == 3


def test_stray_srun_exit_lines_leave_the_agents_stderr() -> None:
    from benchbed.targets.slurmjob import _TASK_END

    text = "Traceback ...\nValueError: boom\nsrun: error: n1: task 0: Exited with exit code 1\n"
    assert _TASK_END.sub("", text) == "Traceback ...\nValueError: boom\n"
