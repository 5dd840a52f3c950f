"""Round trips with the real tools: a `benchbed run` of the pytest workload → `benchbed export --pytest-benchmark` →
`pytest-benchmark compare` tabulates it; `benchbed import` → `benchbed report` renders; Parquet → same samples."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchbed.results import RunData, load_run
from benchbed.stats import canonical_params
from tests.integration.test_pytest_workload import NAMES, run_suite

pytestmark = pytest.mark.local


def bench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def compare_cli() -> list[str]:
    """pytest-benchmark's own CLI (installed with it as `pytest-benchmark` and `py.test-benchmark`)."""
    script = Path(sys.executable).parent / "pytest-benchmark"
    found = str(script) if script.is_file() else shutil.which("pytest-benchmark")
    if found is None:
        pytest.fail("the pytest-benchmark CLI is not installed (pip install pytest-benchmark)")
    return [found]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunData:
    return run_suite(tmp_path_factory.mktemp("run"), {"local": {"kind": "local", "python": sys.executable}})


def test_export_is_read_by_pytest_benchmark_compare(run: RunData, tmp_path: Path) -> None:
    dest = tmp_path / "0001_benchbed.json"
    res = bench(tmp_path, "export", str(run.dir), "--pytest-benchmark", str(dest))
    assert res.returncode == 0, res.stderr
    assert "4 benchmarks of target 'local'" in res.stdout
    proc = subprocess.run(
        [*compare_cli(), "compare", str(dest)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in NAMES:
        assert name in proc.stdout
    assert "Rounds" in proc.stdout


def test_import_of_pytest_benchmarks_json_then_report(run: RunData, tmp_path: Path) -> None:
    # the very file pytest-benchmark wrote would be the natural input; an exported run is one too
    src = tmp_path / "pb.json"
    assert bench(tmp_path, "export", str(run.dir), "--pytest-benchmark", str(src)).returncode == 0
    res = bench(tmp_path, "import", str(src), "--out", str(tmp_path / "res"), "--target", "laptop")
    assert res.returncode == 0, res.stderr
    (run_dir,) = (tmp_path / "res").iterdir()
    back = load_run(run_dir)
    assert set(back.samples.metric) == NAMES
    assert sorted(back.samples.value) == pytest.approx(sorted(run.samples.value))
    html = tmp_path / "r.html"
    res = bench(tmp_path, "report", str(run_dir), "-o", str(html))
    assert res.returncode == 0, res.stderr
    text = html.read_text()
    assert "test_sort[20000]" in text
    assert "laptop" in text


def test_parquet_round_trips_the_samples(run: RunData, tmp_path: Path) -> None:
    dest = tmp_path / "s.parquet"
    res = bench(tmp_path, "export", str(run.dir), "--parquet", str(dest))
    assert res.returncode == 0, res.stderr
    got = pd.read_parquet(dest)
    want = run.samples.copy()
    want["params"] = want["params"].map(canonical_params)
    assert set(got.run_id) == {run.dir.name}
    cols = ["target", "workload", "params", "metric", "unit", "better", "value", "instance", "repetition", "phase"]
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), want[cols].reset_index(drop=True))
    assert got.valid.tolist() == [True] * len(got)
    assert json.loads(got.params.iloc[0]) == {"path": "bench"}
