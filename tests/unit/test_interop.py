"""`benchbed import` / `benchbed export`: stats as pytest-benchmark computes them, units, and bad input → exit 2 with
one line and nothing half-written. Documents come from a real pytest-benchmark run of the example suite."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from benchbed.cli import app
from benchbed.interop.pbjson import build_document, pb_stats
from benchbed.results import RunWriter, load_run
from tests.unit.test_pytest_workload import make_json, summary_only

STAT_FIELDS = ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers")
STAT_FIELDS += ("stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total")


@pytest.fixture(scope="module")
def real_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pb")
    path = tmp / "real.json"
    path.write_text(json.dumps(make_json(tmp, rounds=5)))
    return path


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def imported(real_file: Path, out: Path, *extra: str) -> Path:
    res = cli("import", str(real_file), "--out", str(out), *extra)
    assert res.exit_code == 0, res.output
    (run_dir,) = out.iterdir()
    return run_dir


def write_run(base: Path, rows: list[tuple[str, str, float]]) -> Path:
    """A run directory with (metric, unit, value) samples of workload w on target `t`, written by RunWriter."""
    writer = RunWriter(base / "run", {"run_id": "run", "baseline": "t", "targets": {"t": {"kind": "local"}}})
    for i, (metric, unit, value) in enumerate(rows):
        rec = {"target": "t", "workload": "w", "params": {"n": 1}, "instance": 0, "case": 0, "metric": metric}
        writer.sample(
            {**rec, "unit": unit, "better": "lower", "value": value, "phase": "measure", "repetition": i, "valid": True}
        )
    writer.finish("complete")
    return base / "run"


# ── stats: the same numbers pytest-benchmark's own Stats class gives ────────────────────────────────────────
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 12])
def test_stats_match_pytest_benchmarks_own(n: int) -> None:
    from pytest_benchmark.stats import Stats

    values = [1.0 + ((i * 7919) % 13) / 10 for i in range(n)]
    ref = Stats()
    for v in values:
        ref.update(v)
    ours = pb_stats(values)
    for field in STAT_FIELDS:
        want = getattr(ref, field)
        assert ours[field] == (pytest.approx(want) if isinstance(want, float) else want), field
    assert ours["data"] == values


def test_import_keeps_the_raw_rounds(real_file: Path, tmp_path: Path) -> None:
    run = load_run(imported(real_file, tmp_path / "res", "--target", "laptop"))
    doc = json.loads(real_file.read_text())
    assert run.meta["status"] == "complete"
    assert run.meta["schema_version"] == 1
    assert run.meta["imported"]["summary_only"] == []
    assert set(run.samples.target) == {"laptop"}
    assert set(run.samples.workload) == {"pytest"}
    for bench in doc["benchmarks"]:
        got = run.samples[run.samples.metric == bench["name"]].value.tolist()
        assert got == bench["stats"]["data"]
    assert run.env["laptop"]["machine_info"] == doc["machine_info"]
    assert run.env["laptop"]["python"]["version"] == doc["machine_info"]["python_version"]


def test_several_files_are_instances_and_one_bad_file_writes_nothing(real_file: Path, tmp_path: Path) -> None:
    run = load_run(imported(real_file, tmp_path / "res", str(real_file)))
    assert sorted(set(run.samples.instance)) == [0, 1]
    assert list(run.cases.status) == ["ok", "ok"]
    (tmp_path / "bad.json").write_text("{}")
    res = cli("import", str(real_file), str(tmp_path / "bad.json"), "--out", str(tmp_path / "res2"))
    assert res.exit_code == 2
    assert "bad.json: no 'benchmarks' list" in res.stderr
    assert not (tmp_path / "res2").exists()


def test_import_of_summary_only_is_marked_not_invented(real_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "summary.json"
    src.write_text(json.dumps(summary_only(json.loads(real_file.read_text()))))
    run = load_run(imported(src, tmp_path / "res"))
    assert len(run.samples) == 4
    assert len(run.meta["imported"]["summary_only"]) == 4
    assert run.samples.reason.str.startswith("summary only").all()


def test_export_of_an_import_gives_back_pytest_benchmarks_stats(real_file: Path, tmp_path: Path) -> None:
    run_dir = imported(real_file, tmp_path / "res")
    res = cli("export", str(run_dir), "--pytest-benchmark", str(tmp_path / "out.json"))
    assert res.exit_code == 0, res.output
    back = json.loads((tmp_path / "out.json").read_text())
    orig = {b["name"]: b["stats"] for b in json.loads(real_file.read_text())["benchmarks"]}
    assert {b["name"] for b in back["benchmarks"]} == set(orig)
    for bench in back["benchmarks"]:
        for field in STAT_FIELDS:
            want = orig[bench["name"]][field]
            assert bench["stats"][field] == (pytest.approx(want) if isinstance(want, float) else want), field
    assert back["machine_info"] == json.loads(real_file.read_text())["machine_info"]


def test_export_converts_time_units_and_leaves_out_the_rest(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, [("lat", "ms", 2.0), ("lat", "ms", 4.0), ("bw", "GB/s", 10.0)])
    doc = build_document(run_dir)
    (bench,) = doc["benchmarks"]
    assert bench["name"] == "w[n=1]::lat"
    assert bench["stats"]["data"] == [0.002, 0.004]
    assert math.isclose(bench["stats"]["mean"], 0.003)
    assert doc["benchbed"]["skipped"] == ["w[n=1]::bw (GB/s)"]
    assert doc["benchbed"]["target"] == "t"


# ── bad input: exit 2, one line naming the file, nothing written ─────────────────────────────────────────────────
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json {", "bad.json:1: not JSON"),
        ("[1, 2]", "bad.json: top level is a JSON list"),
        ('{"machine_info": {}}', "bad.json: no 'benchmarks' list"),
        ('{"benchmarks": [{"name": "t"}]}', "bad.json: benchmarks[0] (t): missing 'stats'"),
        ('{"benchmarks": []}', "bad.json: 'benchmarks' is empty"),
    ],
)
def test_bad_import_file(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    res = cli("import", str(tmp_path / "bad.json"), "--out", str(tmp_path / "res"))
    assert res.exit_code == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("benchbed: error: ")
    assert message in line
    assert not (tmp_path / "res").exists()


def test_bad_import_target_name_and_missing_file(real_file: Path, tmp_path: Path) -> None:
    res = cli("import", str(real_file), "--out", str(tmp_path / "res"), "--target", "no spaces")
    assert res.exit_code == 2
    assert "--target 'no spaces': not a valid target name" in res.stderr
    res = cli("import", str(tmp_path / "missing.json"), "--out", str(tmp_path / "res"))
    assert res.exit_code == 2
    assert "missing.json: cannot read" in res.stderr
    assert not (tmp_path / "res").exists()


def test_bad_exports_write_nothing(real_file: Path, tmp_path: Path) -> None:
    run_dir = imported(real_file, tmp_path / "res")
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        (["--pytest-benchmark", str(out / "x.json"), "--target", "nope"], "no samples for target 'nope'"),
        (["--pytest-benchmark", str(out / "no" / "x.json")], "does not exist"),
        ([], "nothing to export"),
    ]
    for args, message in cases:
        res = cli("export", str(run_dir), *args)
        assert res.exit_code == 2, res.output
        (line,) = res.stderr.strip().splitlines()
        assert message in line
    res = cli("export", str(tmp_path / "nope"), "--parquet", str(out / "x.parquet"))
    assert res.exit_code == 2
    assert "not a benchbed run" in res.stderr
    only_bw = write_run(tmp_path / "bw", [("bw", "GB/s", 1.0)])
    res = cli("export", str(only_bw), "--pytest-benchmark", str(out / "x.json"))
    assert res.exit_code == 2
    assert "no time-like samples" in res.stderr
    assert list(out.iterdir()) == []  # no file, no temp file


def test_parquet_without_pyarrow_says_which_extra(real_file: Path, tmp_path: Path) -> None:
    run_dir = imported(real_file, tmp_path / "res")
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"  # what an environment without pyarrow looks like to import
        "from benchbed.cli import main; sys.argv = ['benchbed'] + sys.argv[1:]; main()"
    )
    dest = tmp_path / "s.parquet"
    proc = subprocess.run(
        [sys.executable, "-c", code, "export", str(run_dir), "--parquet", str(dest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "pip install 'benchbed[parquet]'" in line
    assert not dest.exists()


def test_unwritable_destinations_are_one_line_exit_2(real_file: Path, tmp_path: Path) -> None:
    """/proc refuses new files even to root: the OS error becomes one line naming the path, never a traceback."""
    run_dir = imported(real_file, tmp_path / "res")
    for args, message in (
        (["export", str(run_dir), "--parquet", "/proc/benchbed-nope.parquet"], "cannot write here"),
        (["export", str(run_dir), "--pytest-benchmark", "/proc/benchbed-nope.json"], "cannot write here"),
        (["import", str(real_file), "--out", "/proc/benchbed-nope"], "cannot create the run directory"),
        (["run", "--only", "util.noop", "--out", "/proc/benchbed-nope", "--no-report"], "is not writable"),
    ):
        res = cli(*args)
        assert res.exit_code == 2, res.output
        (line,) = res.stderr.strip().splitlines()
        assert message in line, line
        assert "/proc/benchbed-nope" in line
