"""The `pytest` workload: command mapping, JSON → samples on real pytest-benchmark output, bundling, config checks.

The JSON documents come from real pytest-benchmark runs of workloads/pytest-example (a subprocess, a few seconds).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from benchbed.agent.build import MAX_BUNDLE_BYTES, build_agent, bundle_files
from benchbed.config import load_suite
from benchbed.errors import ConfigError
from benchbed.workloads import Context, load_for
from benchbed.workloads.pytest_bench import (
    PytestBench,
    PytestFailed,
    bundle_name,
    command,
    pytest_bench,
    samples_from_json,
    split_path,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "workloads" / "pytest-example"
NAMES = {"test_sort[20000]", "test_sort[50000]", "test_json_roundtrip", "test_sha256"}


def make_json(tmp: Path, *, rounds: int = 3) -> dict[str, Any]:
    """Run pytest-benchmark on the example suite with the workload's own command line; return its JSON."""
    out = tmp / f"pb-{rounds}.json"
    ctx = Context(repetitions=rounds, warmup=1, scratch_dir=tmp)
    argv = command(PytestBench(str(EXAMPLE)), ctx, EXAMPLE, out)
    res = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def summary_only(doc: dict[str, Any]) -> dict[str, Any]:
    """The same document as pytest-benchmark writes it without raw data (3.x without --benchmark-save-data)."""
    benches = [{**b, "stats": {k: v for k, v in b["stats"].items() if k != "data"}} for b in doc["benchmarks"]]
    return {**doc, "benchmarks": benches}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_json(tmp_path_factory.mktemp("pb"))


def test_command_maps_repetitions_and_warmup(tmp_path: Path) -> None:
    ctx = Context(repetitions=7, warmup=2, scratch_dir=tmp_path)
    argv = command(PytestBench("x", select="sort", args="-x --benchmark-disable-gc"), ctx, tmp_path, Path("/o"))
    assert argv[:3] == [sys.executable, "-m", "pytest"]
    for flag in ("--benchmark-min-rounds=7", "--benchmark-max-time=0", "--benchmark-warmup=on"):
        assert flag in argv
    assert "--benchmark-warmup-iterations=2" in argv
    assert argv[-4:] == ["-k", "sort", "-x", "--benchmark-disable-gc"]
    assert argv[argv.index("-c") + 1] == str(tmp_path / "benchbed-pytest.ini")  # no config of its own: empty one
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    cold = command(PytestBench("x"), Context(repetitions=1, warmup=0, scratch_dir=tmp_path), tmp_path, Path("/o"))
    assert "--benchmark-warmup=off" in cold
    assert "-c" not in cold  # the suite's own pytest.ini applies


def test_real_json_gives_one_sample_per_recorded_round(real: dict[str, Any]) -> None:
    samples = list(samples_from_json(real))
    by_metric: dict[str, list[float]] = {}
    for s in samples:
        assert (s.unit, s.better, s.phase, s.valid, s.reason) == ("s", "lower", "measure", True, None)
        by_metric.setdefault(s.metric, []).append(s.value)
    assert set(by_metric) == NAMES
    for bench in real["benchmarks"]:
        assert bench["stats"]["rounds"] == 3  # min_rounds with max_time 0: exactly `repetitions` rounds
        assert by_metric[bench["name"]] == bench["stats"]["data"]  # pytest-benchmark's own numbers, untouched
    assert all(0 < v < 10 for v in by_metric["test_sha256"])


def test_summary_only_json_is_one_marked_median_per_benchmark(real: dict[str, Any]) -> None:
    doc = summary_only(real)
    samples = list(samples_from_json(doc))
    assert {s.metric for s in samples} == NAMES
    assert len(samples) == len(NAMES)
    medians = {b["name"]: b["stats"]["median"] for b in doc["benchmarks"]}
    for s in samples:
        assert s.value == medians[s.metric]
        assert s.reason is not None
        assert "summary only" in s.reason
        assert "3 rounds" in s.reason
        assert s.labels["summary"] == "median"


def test_duplicate_names_fall_back_to_fullname(real: dict[str, Any]) -> None:
    bench = real["benchmarks"][0]
    twin = {**bench, "fullname": "other/test_x.py::" + bench["name"]}
    metrics = {s.metric for s in samples_from_json({"benchmarks": [bench, twin]})}
    assert metrics == {bench["fullname"], twin["fullname"]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "top level is list"),
        ({"machine_info": {}}, "no 'benchmarks' list"),
        ({"benchmarks": [{"stats": {}}]}, "benchmarks[0]: missing 'name'"),
        ({"benchmarks": [{"name": "t"}]}, "benchmarks[0] (t): missing 'stats'"),
        ({"benchmarks": [{"name": "t", "stats": {"data": ["x"]}}]}, "stats.data is not a list of numbers"),
        ({"benchmarks": [{"name": "t", "stats": {"mean": 1}}]}, "neither stats.data nor a numeric stats.median"),
    ],
)
def test_malformed_documents_say_what_is_wrong(doc: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        list(samples_from_json(doc))


# ── the workload, in-process (benchbed unpacked: `path` is a directory here) ─────────────────────────────────
def run_workload(tmp: Path, path: Path, **kw: Any) -> list[Any]:
    info = load_for("pytest")["pytest"]
    tmp.mkdir(exist_ok=True)  # the agent's scratch dir always exists
    ctx = Context(repetitions=2, warmup=0, scratch_dir=tmp, timeout_s=kw.pop("timeout_s", 300))
    return list(info.fn(PytestBench(str(path), **kw), ctx))


def test_workload_runs_a_selection(tmp_path: Path) -> None:
    samples = run_workload(tmp_path, EXAMPLE, select="sort")
    assert {s.metric for s in samples} == {"test_sort[20000]", "test_sort[50000]"}
    assert len(samples) == 4


FAILING = """
def test_ok(benchmark):
    benchmark(sum, range(1000))

def test_broken(benchmark):
    benchmark(sum, range(10))
    assert 1 == 2, "user assertion fired"
"""


def test_a_failing_user_test_fails_with_pytests_tail(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_f.py").write_text(FAILING)
    with pytest.raises(PytestFailed, match="pytest exited 1") as err:
        run_workload(tmp_path / "scratch", suite)
    assert "user assertion fired" in str(err.value)
    assert "1 failed" in str(err.value)


def test_a_selection_of_nothing_is_a_failure(tmp_path: Path) -> None:
    with pytest.raises(PytestFailed, match="selected no tests"):
        run_workload(tmp_path, EXAMPLE, select="no_such_test")


def test_pytest_is_stopped_before_the_case_timeout(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_slow.py").write_text("import time\n\ndef test_slow(benchmark):\n    benchmark(time.sleep, 60)\n")
    with pytest.raises(PytestFailed, match="did not finish within"):
        run_workload(tmp_path / "scratch", suite, timeout_s=3)


def test_workload_is_registered_and_agent_side_stdlib_only() -> None:
    assert pytest_bench.__module__ == "benchbed.workloads.pytest_bench"
    assert load_for("pytest")["pytest"].params is PytestBench


# ── bundling ─────────────────────────────────────────────────────────────────────────────────────────────────
def make_suite_dir(base: Path) -> Path:
    d = base / "bench"
    (d / "sub").mkdir(parents=True)
    (d / "__pycache__").mkdir()
    (d / ".git").mkdir()
    (d / "test_a.py").write_text("def test_a(benchmark):\n    benchmark(int)\n")
    (d / "sub" / "data.txt").write_text("x")
    (d / "__pycache__" / "test_a.cpython-311.pyc").write_bytes(b"\0")
    (d / "sub" / "old.pyc").write_bytes(b"\0")
    (d / ".git" / "HEAD").write_text("ref")
    (d / ".hidden").write_text("x")
    return d


def test_bundle_skips_caches_bytecode_and_dotfiles(tmp_path: Path) -> None:
    d = make_suite_dir(tmp_path)
    assert [rel for rel, _ in bundle_files(d)] == ["sub/data.txt", "test_a.py"]


def test_bundle_size_cap(tmp_path: Path) -> None:
    d = make_suite_dir(tmp_path)
    with (d / "big.bin").open("wb") as fh:
        fh.truncate(MAX_BUNDLE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ValueError, match="more than 16 MiB"):
        bundle_files(d)


def test_agent_with_bundle_is_deterministic_and_covers_the_suite(tmp_path: Path) -> None:
    d = make_suite_dir(tmp_path)
    bundles = {bundle_name("bench"): d}
    a = build_agent(tmp_path / "a", (), bundles)
    (d / "test_a.py").touch()  # a new mtime alone changes nothing
    b = build_agent(tmp_path / "b", (), bundles)
    assert a.sha256 == b.sha256
    with zipfile.ZipFile(a.path) as zf:
        names = [n for n in zf.namelist() if n.startswith("benchbed_bundles/")]
    assert names == [f"{bundle_name('bench')}/sub/data.txt", f"{bundle_name('bench')}/test_a.py"]
    (d / "test_a.py").write_text("def test_a(benchmark):\n    benchmark(float)\n")
    assert build_agent(tmp_path / "c", (), bundles).sha256 != a.sha256
    assert build_agent(tmp_path / "d").sha256 != a.sha256


def test_bundle_name_ignores_spelling_of_the_same_path() -> None:
    assert bundle_name("pytest-example") == bundle_name("./pytest-example/") == bundle_name("x/../pytest-example")


# ── config: `path` is resolved and checked by the controller ────────────────────────────────────────────────────
def test_suite_resolves_path_relative_to_the_suite_file(tmp_path: Path) -> None:
    make_suite_dir(tmp_path)
    (tmp_path / "s.yaml").write_text("name: x\nworkloads:\n  - name: pytest\n    params: {path: bench}\n")
    loaded = load_suite(tmp_path / "s.yaml")
    assert loaded.bundles == {bundle_name("bench"): (tmp_path / "bench").resolve()}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{path: nope}", "s.yaml:4: workloads[0].params.path: 'nope' is not a directory"),
        ("{path: bench/nope.py}", "s.yaml:4: workloads[0].params.path: 'nope.py' matches no file in"),
        ("{path: bench, files: ../x.py}", "s.yaml:4: workloads[0].params.path: '../x.py' must name files inside"),
        ("{select: sort}", "s.yaml:4: workloads[0].params: path: field required"),
        ("{path: bench, k: 1}", "s.yaml:4: workloads[0].params: unknown parameter 'k' for pytest"),
    ],
)
def test_bad_path_is_a_located_config_error(tmp_path: Path, params: str, message: str) -> None:
    make_suite_dir(tmp_path)
    (tmp_path / "s.yaml").write_text(f"name: x\nworkloads:\n  - name: pytest\n    params: {params}\n")
    with pytest.raises(ConfigError) as err:
        load_suite(tmp_path / "s.yaml")
    assert message in str(err.value)


def test_oversized_suite_dir_is_a_config_error(tmp_path: Path) -> None:
    d = make_suite_dir(tmp_path)
    with (d / "big.bin").open("wb") as fh:
        fh.truncate(MAX_BUNDLE_BYTES + 1)
    (tmp_path / "s.yaml").write_text("name: x\nworkloads:\n  - name: pytest\n    params:\n      path: bench\n")
    with pytest.raises(ConfigError, match=r"s\.yaml:5: workloads\[0\]\.params\.path: .* more than 16 MiB"):
        load_suite(tmp_path / "s.yaml")


def test_split_path_ships_the_directory_and_names_what_to_collect() -> None:
    assert split_path("suite") == ("suite", [])
    assert split_path("bench.py") == (".", ["bench.py"])
    assert split_path("proj/benchmarks/*.py") == ("proj/benchmarks", ["*.py"])
    assert split_path("proj", "bench.py 'perf/*.py'") == ("proj", ["bench.py", "perf/*.py"])


def test_a_path_or_glob_that_names_nothing_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "bench.py").write_text("def test_x(benchmark):\n    benchmark(int)\n")
    good = tmp_path / "good.yaml"
    good.write_text("name: s\nworkloads:\n  - name: pytest\n    params: {path: suite/bench.py}\n")
    assert load_suite(good).suite.workloads[0].params["path"] == "suite/bench.py"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: s\nworkloads:\n  - name: pytest\n    params: {path: suite, files: 'perf/*.py'}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:4: .*'perf/\*.py' matches no file"):
        load_suite(bad)
