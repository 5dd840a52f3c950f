"""The HTML report end to end: a real run through the CLI, and hand-made run directories with hostile text."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchbed.errors import ResultsFormatError
from benchbed.report.render import fmt_num, write_report
from benchbed.results import load_run
from benchbed.stats import summarize
from tests.conftest import REPO

EVIL = "<script>alert(1)</script>"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def assert_self_contained(html: str) -> None:
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.IGNORECASE)
    assert "@import" not in html
    assert "url(" not in html


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """quick suite, cpu.* only, on two local targets so there is a ratio to show."""
    tmp = tmp_path_factory.mktemp("run")
    targets = tmp / "targets.yaml"
    targets.write_text("targets:\n  local: {kind: local}\n  other: {kind: local}\n", encoding="utf-8")
    res = cli("run", "--no-report", "--out", str(tmp / "results"), "--only", "cpu.*", "-t", str(targets), "--seed", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    (run_dir,) = (tmp / "results").iterdir()
    return run_dir


@pytest.mark.local
def test_report_of_a_real_run(real_run: Path, tmp_path: Path) -> None:
    dest = tmp_path / "nested" / "dir" / "report.html"
    res = cli("report", str(real_run), "-o", str(dest))
    assert res.returncode == 0, res.stderr
    assert str(dest) in res.stdout
    html = dest.read_text(encoding="utf-8")
    assert_self_contained(html)
    assert [p.name for p in dest.parent.iterdir()] == ["report.html"]  # no temp file left behind

    run = load_run(real_run)
    assert run.meta["run_id"] in html
    assert run.meta["agent"]["sha256"] in html
    assert "quick" in html
    assert "complete" in html
    assert "Incomplete run" not in html
    for name in ("local", "other", "cpu.gemm", "cpu.stream", "n=256", "throughput", "triad", "GFLOP/s"):
        assert name in html, name
    assert "higher is better" in html
    summary = summarize(run.samples, "local")
    assert set(summary["target"]) == {"local", "other"}
    for r in summary.itertuples():
        assert fmt_num(r.median, r.ci_high - r.ci_low) in html, (r.workload, r.metric, r.target)
    other = summary[summary["target"] == "other"]
    assert other["ratio"].notna().all()
    for r in other.itertuples():
        assert fmt_num(r.ratio, r.ratio_ci_high - r.ratio_ci_low) in html
    # environment, startup phases and methodology sections carry the run's own data
    assert run.env["local"]["kernel"] in html
    assert "python.version" in html
    assert "agent_ready" in html
    assert "Every instance ran to completion" in html
    assert f"seed {run.meta['seed']}" in html


def test_report_cli_on_a_non_run_directory(tmp_path: Path) -> None:
    res = cli("report", str(tmp_path), "-o", str(tmp_path / "r.html"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "not a benchbed run" in lines[0]
    assert not (tmp_path / "r.html").exists()


def write_run(run_dir: Path, samples: list[dict[str, Any]], cases: list[dict[str, Any]], **meta: Any) -> Path:
    (run_dir / "env").mkdir(parents=True)
    base = {
        "schema_version": 1,
        "run_id": run_dir.name,
        "status": "incomplete",
        "started": "2026-01-02T03:04:05+00:00",
        "benchbed_version": "0.1.0",
        "suite": {"name": "handmade", "description": "<b>not bold</b>"},
        "baseline": "local",
        "seed": 42,
        "agent": {"sha256": "ab" * 32},
        "targets": {"local": {"kind": "local"}, EVIL: {"kind": "local"}},
        "plan": [],
    }
    (run_dir / "run.json").write_text(json.dumps({**base, **meta}), encoding="utf-8")
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    (run_dir / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return run_dir


def hand_sample(target: str, value: float, instance: int, rep: int, phase: str = "measure") -> dict[str, Any]:
    return {
        "target": target,
        "workload": "cpu.gemm",
        "params": {"n": 64, "note": "<i>x</i>"},
        "instance": instance,
        "case": instance,
        "metric": "throughput",
        "value": value,
        "unit": "GFLOP/s",
        "better": "higher",
        "phase": phase,
        "repetition": rep,
        "valid": True,
        "reason": None,
    }


def test_hostile_names_render_as_text_and_problems_are_listed(tmp_path: Path) -> None:
    samples = [hand_sample("local", 10.0 + i + r / 10, i, r) for i in range(3) for r in range(4)]
    samples += [hand_sample(EVIL, 9.0 + i + r / 10, i, r) for i in range(3) for r in range(4)]
    samples += [hand_sample("local", 3.0, 0, 0, phase="cold")]
    phases = {"create": 0.5, "boot": 2.0, "total": 3.0}
    cases = [
        {"case": 0, "target": "local", "workload": "cpu.gemm", "params": {"n": 64}, "instance": 0, "status": "ok",
         "reason": None, "phases": phases},
        {"case": 1, "target": EVIL, "workload": "cpu.gemm", "params": {"n": 64}, "instance": 3, "status": "failed",
         "reason": "agent exited 1: <img src=x onerror=alert(2)>", "phases": phases,
         "stderr_tail": "Traceback ...\nBoom: </pre><script>alert(3)</script>"},
        {"case": 2, "target": "local", "workload": "gpu.h2d", "params": {}, "instance": 0, "status": "skipped",
         "reason": "no CUDA device visible in target 'local'", "phases": {"total": 0.1}},
    ]  # fmt: skip
    run_dir = write_run(tmp_path / "run-1", samples, cases)
    (run_dir / "env" / "local.json").write_text(
        json.dumps({"kind": "local", "kernel": "6.1 <b>", "gpus": [{"name": "H100"}], "domain_xml": "<d>\n" * 50}),
        encoding="utf-8",
    )
    dest = write_report(load_run(run_dir), tmp_path / "out" / "r.html")
    html = dest.read_text(encoding="utf-8")

    assert_self_contained(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html
    assert "<b>" not in html
    assert "<i>" not in html
    assert "Incomplete run" in html
    assert "1 instance failed" in html
    assert "no CUDA device visible in target &#39;local&#39;" in html
    assert "gpu.h2d" in html
    assert "<details><summary>stderr tail</summary>" in html
    assert "gpus.0.name" in html
    assert "H100" in html
    assert "cold start" in html
    assert "boot" in html
    evil = summarize(load_run(run_dir).samples, "local").set_index("target").loc[EVIL]
    assert fmt_num(evil["ratio"], evil["ratio_ci_high"] - evil["ratio_ci_low"]) in html


def test_empty_run_is_refused(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run-empty", [], [], status="running")
    with pytest.raises(ResultsFormatError, match="has no samples yet"):
        write_report(load_run(run_dir), tmp_path / "r.html")
    res = cli("report", str(run_dir), "-o", str(tmp_path / "r.html"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "run-empty has no samples yet" in res.stderr
    assert not (tmp_path / "r.html").exists()


def test_only_failed_cases_still_render(tmp_path: Path) -> None:
    cases = [
        {"case": 0, "target": "local", "workload": "cpu.gemm", "params": {}, "instance": 0, "status": "failed",
         "reason": "timed out after 5 s", "phases": {"total": 5.0}},
    ]  # fmt: skip
    run_dir = write_run(tmp_path / "run-failed", [], cases, status="complete")
    html = write_report(load_run(run_dir), tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No measured samples in this run." in html
    assert "timed out after 5 s" in html
    assert "Incomplete run" not in html


def test_verdict_cells_vs_the_baseline(tmp_path: Path) -> None:
    """10 instances per target: 'slow' is 10 % down on a higher-is-better metric, 'fast' 10 % up, 'same' within
    ±1 %, 'few' has 2 instances. Only significant verdicts are coloured; equivalence shows as ≈."""
    wobble = [1.0, 1.002, 0.998, 1.001, 0.999, 1.0015, 0.9985, 1.0005, 0.9995, 1.0]
    level = {"local": 100.0, "slow": 90.0, "fast": 110.0, "same": 100.1}
    samples = [
        hand_sample(t, level[t] * w * (1 + r / 1000), i, r)
        for t in level
        for i, w in enumerate(wobble)
        for r in range(3)
    ]
    samples += [hand_sample("few", 100.0 + i, i, 0) for i in range(2)]
    run_dir = write_run(tmp_path / "run-v", samples, [], targets={t: {"kind": "local"} for t in [*level, "few"]})
    html = write_report(load_run(run_dir), tmp_path / "r.html").read_text(encoding="utf-8")
    cells = dict(re.findall(r'<td class="verdict (\w+)"[^>]*>(.*?)</td>', html, re.DOTALL))
    assert set(cells) == {"regression", "improvement", "equivalent", "inconclusive"}
    assert cells["regression"].startswith("✗ regression")
    assert cells["improvement"].startswith("✓ improvement")
    assert cells["equivalent"].startswith("≈ equivalent")
    assert "threshold ±1%" in cells["regression"]  # cpu.gemm's class threshold
    assert "MDE " in cells["regression"]
    assert cells["inconclusive"].startswith("inconclusive")  # 2 instances: too noisy to tell at ±1 %
    assert cells["inconclusive"].count("MDE") == 1
    assert ".verdict.regression {" in html
    assert ".verdict.equivalent" not in html  # only significant verdicts are coloured
    assert ".verdict.inconclusive" not in html
    assert html.count('<td class="muted">—</td>') == 1  # the baseline row has no verdict
