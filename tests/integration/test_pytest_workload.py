"""The `pytest` workload through `benchbed run` in every target kind: the example pytest-benchmark suite travels
inside the agent and comes back as one sample per recorded round (local, ssh, docker, libvirt under TCG)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.results import RunData, load_run
from benchbed.workloads.pytest_bench import bundle_name
from tests.integration import dockerd, libvirtd
from tests.integration import sshd as S

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "workloads" / "pytest-example"
NAMES = {"test_sort[20000]", "test_sort[50000]", "test_json_roundtrip", "test_sha256"}
REPS = 3


def run_suite(
    tmp: Path,
    targets: dict[str, Any],
    *,
    suite_dir: Path = EXAMPLE,
    timeout_s: int = 600,
    params: dict[str, Any] | None = None,
) -> RunData:
    """Copy the suite next to a suite file that names it relatively, run it on `targets`, load the run; the exit
    code is 1 exactly when a case failed."""
    shutil.copytree(suite_dir, tmp / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    suite = {
        "name": "pytest-it",
        "baseline": next(iter(targets)),
        "seed": 1,
        "defaults": {"instances": 1, "repetitions": REPS, "warmup": 1, "timeout_s": timeout_s},
        "workloads": [{"name": "pytest", "params": params or {"path": "bench"}}],
    }
    (tmp / "s.yaml").write_text(json.dumps(suite))
    (tmp / "t.yaml").write_text(json.dumps({"targets": targets}))
    argv = [sys.executable, "-m", "benchbed.cli", "run", str(tmp / "s.yaml"), "--targets", str(tmp / "t.yaml")]
    proc = subprocess.run(
        [*argv, "--out", str(tmp / "res"), "--no-report"],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=timeout_s + 600,
        check=False,
    )
    (run_dir,) = (tmp / "res").iterdir()
    run = load_run(run_dir)
    failed = bool((run.cases["status"] == "failed").any()) if not run.cases.empty else False
    assert proc.returncode == (1 if failed else 0), proc.stdout + proc.stderr
    return run


def raw_samples(run: RunData, target: str) -> list[dict[str, Any]]:
    lines = (run.dir / "samples.jsonl").read_text().splitlines()
    return [rec for rec in map(json.loads, lines) if rec["target"] == target]


def assert_rounds(run: RunData, target: str) -> list[dict[str, Any]]:
    """Every case of `target` ok, and REPS measured rounds in seconds for each of the example's benchmarks."""
    cases = run.cases[run.cases.target == target]
    assert list(cases.status) == ["ok"], cases[["status", "reason"]].to_dict("records")
    recs = raw_samples(run, target)
    per_metric: dict[str, int] = {}
    for rec in recs:
        assert (rec["workload"], rec["unit"], rec["better"], rec["phase"], rec["valid"]) == (
            "pytest",
            "s",
            "lower",
            "measure",
            True,
        )
        assert 0 < rec["value"] < 60
        per_metric[rec["metric"]] = per_metric.get(rec["metric"], 0) + 1
    assert per_metric == dict.fromkeys(NAMES, REPS)
    return recs


def local(**extra: Any) -> dict[str, Any]:
    return {"kind": "local", "python": sys.executable, **extra}


# ── local ────────────────────────────────────────────────────────────────────────────────────────────────────
@pytest.mark.local
def test_local_rounds_and_the_agent_carries_the_suite(tmp_path: Path) -> None:
    run = run_suite(tmp_path, {"local": local()})
    recs = assert_rounds(run, "local")
    assert {r["labels"]["fullname"] for r in recs} == {f"test_example.py::{n}" for n in NAMES}
    with zipfile.ZipFile(run.dir / "agent.pyz") as zf:
        assert f"{bundle_name('bench')}/test_example.py" in zf.namelist()
    assert run.meta["agent"]["bundles"] == {bundle_name("bench"): str((tmp_path / "bench").resolve())}


@pytest.mark.local
def test_local_without_pytest_benchmark_is_skipped_with_the_reason(tmp_path: Path) -> None:
    bare = shutil.which("python3", path="/usr/bin:/bin")
    if bare is None:
        pytest.skip("no system python3 to stand for a target without pytest")
    has = subprocess.run([bare, "-c", "import pytest_benchmark"], capture_output=True, check=False).returncode == 0
    if has:
        pytest.skip(f"{bare} has pytest-benchmark: no interpreter without it here")
    run = run_suite(tmp_path, {"bare": {"kind": "local", "python": bare}})
    (case,) = run.cases.to_dict("records")
    assert case["status"] == "skipped"
    assert "is not installed" in case["reason"]
    assert "python3-pytest" in case["reason"]
    assert raw_samples(run, "bare") == []


FAILING = """
def test_fine(benchmark):
    benchmark(sum, range(1000))

def test_wrong(benchmark):
    assert benchmark(sum, range(10)) == 46, "the user's own assertion"
"""


@pytest.mark.local
def test_a_failing_user_test_fails_the_case_with_pytests_tail(tmp_path: Path) -> None:
    suite = tmp_path / "src"
    suite.mkdir()
    (suite / "test_f.py").write_text(FAILING)
    run = run_suite(tmp_path, {"local": local()}, suite_dir=suite)
    (case,) = run.cases.to_dict("records")
    assert case["status"] == "failed"
    assert "pytest exited 1" in case["reason"]
    assert "the user's own assertion" in case["reason"]
    assert raw_samples(run, "local") == []  # never a number from a failed suite


BENCH_PY = """
def test_join(benchmark):
    benchmark(",".join, ["a"] * 100)
"""


@pytest.mark.local
def test_benchmark_files_not_named_test_star_collect_by_path_glob_or_own_python_files(tmp_path: Path) -> None:
    suite = tmp_path / "src"
    (suite / "benchmarks").mkdir(parents=True)
    (suite / "bench.py").write_text(BENCH_PY)
    (suite / "benchmarks" / "perf_join.py").write_text(BENCH_PY.replace("test_join", "test_join2"))
    plain = run_suite(tmp_path / "plain", {"local": local()}, suite_dir=suite)
    (case,) = plain.cases.to_dict("records")
    assert case["status"] == "failed"  # as before: the directory by pytest's default python_files finds nothing
    assert "pytest was asked to collect the directory 'bench' by pytest's default python_files" in case["reason"]
    assert "name them in `path` or `files`" in case["reason"]
    by_file = run_suite(tmp_path / "file", {"local": local()}, suite_dir=suite, params={"path": "bench/bench.py"})
    assert {s["metric"] for s in raw_samples(by_file, "local")} == {"test_join"}
    globbed = run_suite(
        tmp_path / "glob", {"local": local()}, suite_dir=suite, params={"path": "bench", "files": "benchmarks/*.py"}
    )
    assert {s["metric"] for s in raw_samples(globbed, "local")} == {"test_join2"}
    (suite / "pytest.ini").write_text("[pytest]\npython_files = bench.py perf_*.py\n")
    own = run_suite(tmp_path / "own", {"local": local()}, suite_dir=suite)
    assert {s["metric"] for s in raw_samples(own, "local")} == {"test_join", "test_join2"}


# ── ssh ──────────────────────────────────────────────────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S.Sshd]:
    with S.required(tmp_path_factory.mktemp("sshd")) as srv:
        yield srv


@pytest.mark.ssh
def test_ssh_rounds(tmp_path: Path, server: S.Sshd) -> None:
    # the sshd is this host: its python is the venv's, which has pytest-benchmark
    run = run_suite(tmp_path, {"box": server.spec(python=sys.executable)})
    assert_rounds(run, "box")


# ── docker ───────────────────────────────────────────────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def image() -> str:
    return dockerd.required_image()


@pytest.mark.docker
def test_docker_rounds_with_debians_pytest_benchmark(tmp_path: Path, image: str) -> None:
    run = run_suite(tmp_path, {"box": {"kind": "docker", "image": image}})
    recs = assert_rounds(run, "box")
    assert {r["labels"]["pytest_benchmark"] for r in recs} == {"3.2.2"}  # bookworm's python3-pytest-benchmark


# ── libvirt (one guest, TCG) ─────────────────────────────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def overlays() -> Iterator[Path]:
    with libvirtd.required_overlays() as path:
        yield path


@pytest.mark.libvirt
@pytest.mark.slow
def test_libvirt_rounds(tmp_path: Path, overlays: Path) -> None:
    run = run_suite(tmp_path, {"vm": libvirtd.guest_spec(overlays)}, timeout_s=900)
    recs = assert_rounds(run, "vm")
    assert {r["labels"]["pytest_benchmark"] for r in recs} == {"3.2.2"}
    assert run.env["vm"]["kind"] == "libvirt"
    assert libvirtd.benchbed_domains() == []
    assert list(overlays.iterdir()) == []
