"""pytest-benchmark interop keeps its meaning: metadata survives import → export, summary-only data is never
passed off as a distribution, trimmed files are named, and environment warnings do not cry wolf."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from benchbed.fileio import write_atomic
from benchbed.interop.pbjson import build_document
from benchbed.report.render import render
from benchbed.results import load_run
from benchbed.rules import UNDER_TEST_RUNS, Rules
from tests.unit.test_interop import cli, imported
from tests.unit.test_pytest_workload import make_json, summary_only


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    doc = make_json(tmp_path_factory.mktemp("pbm"), rounds=5)
    doc["benchmarks"][0]["group"] = "sorting"  # a suite's own group, as @pytest.mark.benchmark(group=…) writes it
    doc["benchmarks"][0]["stats"]["iterations"] = 7
    doc["benchmarks"][0]["extra_info"] = {"bytes": 1024}
    doc["commit_info"] = {"id": "abc123", "dirty": False, "project": "demo"}
    doc["datetime"] = "2026-11-01T10:00:00.000000+00:00"
    return doc


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_export_keeps_group_fullname_iterations_params_datetime_and_commit(
    original: dict[str, Any], tmp_path: Path
) -> None:
    run_dir = imported(write(tmp_path / "o.json", original), tmp_path / "res")
    doc = build_document(run_dir)
    back = {b["name"]: b for b in doc["benchmarks"]}
    for bench in original["benchmarks"]:
        got = back[bench["name"]]
        for key in ("group", "fullname", "params", "param"):
            assert got[key] == bench[key], key
        assert got["stats"]["iterations"] == bench["stats"]["iterations"]
    first = back[original["benchmarks"][0]["name"]]
    assert first["extra_info"]["bytes"] == 1024
    assert first["options"]["timer"] == original["benchmarks"][0]["options"]["timer"]
    assert doc["datetime"] == original["datetime"]
    assert doc["commit_info"] == original["commit_info"]
    assert "median of per-instance medians" in doc["benchbed"]["medians"]
    assert first["extra_info"]["benchbed_instances"] == 1
    assert first["extra_info"]["benchbed_median_of_instance_medians"] == pytest.approx(first["stats"]["median"])


def test_summary_only_is_refused_by_export_and_marked_in_every_report(original: dict[str, Any], tmp_path: Path) -> None:
    run_dir = imported(write(tmp_path / "s.json", summary_only(original)), tmp_path / "res")
    res = cli("export", str(run_dir), "--pytest-benchmark", str(tmp_path / "x.json"))
    assert res.exit_code == 2
    assert "summary only" in res.output
    assert not (tmp_path / "x.json").exists()
    run = load_run(run_dir)
    md = render(run, "md")
    assert "**Summary only**: 4 benchmark(s)" in md
    assert "Summary only</strong> — 4 benchmarks" in render(run, "html")


def test_data_shorter_than_rounds_is_one_warning_line(original: dict[str, Any], tmp_path: Path) -> None:
    doc = json.loads(json.dumps(original))
    doc["benchmarks"][1]["stats"]["rounds"] = 38523
    res = cli("import", str(write(tmp_path / "t.json", doc)), "--out", str(tmp_path / "res"))
    assert res.exit_code == 0, res.output
    (line,) = [x for x in res.output.splitlines() if x.startswith("warning:")]
    assert f"{doc['benchmarks'][1]['name']}: 5 of 38523" in line
    (run_dir,) = (tmp_path / "res").iterdir()
    assert load_run(run_dir).meta["imported"]["warnings"] == [line.removeprefix("warning: ")]


def test_provenance_never_warns_and_derived_fields_follow_the_field_under_test() -> None:
    base = {
        "source": "/tmp/a.json",
        "commit_info": {"id": "aaa", "time": "t1"},
        "python": {"version": "3.12.1"},
        "machine_info": {"python_version": "3.12.1", "python_build": ["main"], "node": "box"},
        "cpu": {"model": "EPYC"},
    }
    new = {
        "source": "/tmp/b.json",
        "commit_info": {"id": "bbb", "time": "t2"},
        "python": {"version": "3.13.0"},
        "machine_info": {"python_version": "3.13.0", "python_build": ["other"], "node": "box"},
        "cpu": {"model": "Xeon"},
    }
    tested, warned = Rules().env_diff(base, new, under_test=UNDER_TEST_RUNS)
    assert [e.key for e in tested] == ["machine_info.python_build", "machine_info.python_version", "python.version"]
    assert [e.key for e in warned] == ["cpu.model"]  # a real difference still warns


def test_exported_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert write_atomic(tmp_path / "a.json", "{}").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert write_atomic(tmp_path / "b.json", "{}").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_parquet_keeps_labels(original: dict[str, Any], tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    run_dir = imported(write(tmp_path / "o.json", original), tmp_path / "res")
    res = cli("export", str(run_dir), "--parquet", str(tmp_path / "s.parquet"))
    assert res.exit_code == 0, res.output
    labels = json.loads(pd.read_parquet(tmp_path / "s.parquet")["labels"].iloc[0])
    assert labels["fullname"] == original["benchmarks"][0]["fullname"]
    assert labels["group"] == "sorting"


def test_the_report_says_which_quartiles_its_iqr_uses(original: dict[str, Any], tmp_path: Path) -> None:
    """pytest-benchmark's quartiles differ from numpy's linear ones: the report names its method, and the exported
    file keeps pytest-benchmark's (so `pytest-benchmark compare` prints the original's IQR)."""
    run_dir = imported(write(tmp_path / "o.json", original), tmp_path / "res")
    page = render(load_run(run_dir), "html")
    assert "numpy's linear percentiles" in page
    assert "pytest-benchmark's" in page.split("numpy's linear percentiles", 1)[1][:200]
    back = {b["name"]: b for b in build_document(run_dir)["benchmarks"]}
    for bench in original["benchmarks"]:
        assert back[bench["name"]]["stats"]["iqr"] == pytest.approx(bench["stats"]["iqr"])
