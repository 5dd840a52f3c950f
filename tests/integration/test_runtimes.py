"""Runtime as an axis: one docker target on runc and on gVisor's runsc, against a real dockerd with runsc
registered (scripts/setup-runtimes), through the shipped quick suite."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from benchbed.results import load_run
from tests.integration import dockerd, podmand
from tests.integration.test_docker import bench, write

pytestmark = [pytest.mark.docker, pytest.mark.runsc]


@pytest.fixture(scope="module")
def image() -> str:
    tag = dockerd.required_image()
    podmand.require_runsc()
    return tag


def shapes(samples: object, target: str) -> set[tuple[str, str, str, str, str]]:
    s = samples[samples.target == target]  # type: ignore[index]
    return set(zip(s.workload, s.metric, s.unit, s.better, s.phase, strict=True))


def test_quick_suite_on_runc_and_runsc_matches_local_shapes(tmp_path: Path, image: str) -> None:
    targets = {
        "local": {"kind": "local"},
        "box": {"kind": "docker", "image": image, "pull": "never", "runtime": ["runc", "runsc"]},
    }
    t, _ = write(tmp_path, targets, "unused: true\n")
    proc = bench(
        tmp_path, "run", "quick", "--targets", str(t), "--repeat", "1", "--out", str(tmp_path / "res"), "--no-report"
    )
    assert proc.returncode == 0, proc.stderr
    assert "on local, box@runc, box@runsc" in proc.stdout or "box@runsc" in proc.stdout
    (run_dir,) = (tmp_path / "res").iterdir()
    run = load_run(run_dir)
    assert sorted(run.meta["targets"]) == ["box@runc", "box@runsc", "local"]
    for target in ("box@runc", "box@runsc"):
        bad = run.cases[(run.cases.target == target) & (run.cases.status == "failed")]
        assert bad.empty, bad[["workload", "reason"]].to_string()
        assert shapes(run.samples, target) == shapes(run.samples, "local"), target
    order = [c["target"] for c in run.meta["plan"]]
    rounds = {tuple(order[i : i + 3]) for i in range(0, len(order), 3)}  # one case on each target, in seeded order
    assert all(set(r) == {"local", "box@runc", "box@runsc"} for r in rounds)
    assert len(rounds) > 1  # interleaved like any other targets, not one fixed order

    runc, runsc = run.env["box@runc"], run.env["box@runsc"]
    assert runc["docker"]["runtime"]["name"] == "runc"
    assert runsc["docker"]["runtime"]["name"] == "runsc"
    assert "--network=none" in runsc["docker"]["runtime"]["args"]
    assert "runsc" in runsc["docker"]["runtime"]["version"]
    assert runsc["docker"]["runtime"]["sandboxed"]
    assert not runc["docker"]["runtime"]["sandboxed"]
    assert runc["kernel"] == run.env["local"]["kernel"]  # runc shares the host kernel...
    assert runsc["kernel"] != runc["kernel"]  # ...gVisor's Sentry reports its own
    assert run.meta["boundaries"] == {
        "local": "bare metal",
        "box@runc": "container runtimes",
        "box@runsc": "sandboxed runtimes",
    }
    text = bench(tmp_path, "report", str(run_dir), "-f", "md")
    assert text.returncode == 0, text.stderr
    spectrum = "Isolation spectrum: bare metal: local → container runtimes: box@runc → sandboxed runtimes: box@runsc"
    assert spectrum in text.stdout.replace("\\", "")
    fsync = run.samples[(run.samples.workload == "io.fsync") & (run.samples.target == "box@runsc")]
    assert set(fsync.labels.map(lambda lab: lab.get("fs_type"))) != {"tmpfs"}  # the container's own filesystem


def test_unknown_runtime_lists_the_registered_ones(tmp_path: Path, image: str) -> None:
    targets = {
        "local": {"kind": "local"},
        "odd": {"kind": "docker", "image": image, "pull": "never", "runtime": "nosuch"},
    }
    t, s = write(
        tmp_path,
        targets,
        "name: odd\nbaseline: local\ndefaults: {instances: 1}\n"
        "workloads:\n  - {name: util.noop, params: {duration_ms: 1}}\n",
    )
    proc = bench(tmp_path, "run", str(s), "--targets", str(t), "--out", str(tmp_path / "res"), "--no-report")
    assert proc.returncode == 1, proc.stderr  # the odd target's case failed (README: exit codes)
    (run_dir,) = (tmp_path / "res").iterdir()
    reasons = dict(zip(load_run(run_dir).cases.target, load_run(run_dir).cases.reason, strict=True))
    assert "runtime 'nosuch' is not registered with the engine (registered: " in reasons["odd"]
    assert "runsc" in reasons["odd"]
    assert "\n" not in reasons["odd"]
    assert dockerd.labelled_containers(tmp_path / "res") == []


def test_setup_runtimes_merges_daemon_json_and_is_idempotent(tmp_path: Path, image: str) -> None:
    """scripts/setup-runtimes keeps whatever daemon.json holds and adds runsc once (dockerd already has it here)."""
    conf = tmp_path / "daemon.json"
    conf.write_text('{"log-level": "warn", "runtimes": {"other": {"path": "/bin/true"}}}\n')
    script = Path(__file__).resolve().parents[2] / "scripts" / "setup-runtimes"
    for _ in range(2):
        done = subprocess.run(
            ["bash", str(script)], env={**os.environ, "DAEMON_JSON": str(conf)}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "setup-runtimes: ok (runsc" in done.stderr
    merged = json.loads(conf.read_text())
    assert merged["log-level"] == "warn"
    assert merged["runtimes"]["other"] == {"path": "/bin/true"}
    assert merged["runtimes"]["runsc"]["runtimeArgs"] == ["--platform=ptrace", "--network=none"]
