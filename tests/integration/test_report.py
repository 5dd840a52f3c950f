"""The HTML report end to end: a real run through the CLI, and hand-made run directories with hostile text."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from benchbed.errors import ResultsFormatError
from benchbed.fmt import md as md_text
from benchbed.report.render import fmt_num, render, write_text
from benchbed.results import SCALAR_COLUMNS, load_run
from benchbed.stats import summarize
from tests.conftest import REPO


def write_report(run: Any, dest: Path, *, plotly: str = "inline") -> Path:
    return write_text(render(run, "html", plotly=plotly), dest)


EVIL = "<script>alert(1)</script>"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


SCRIPT_BLOCK = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def scripts(html: str) -> list[tuple[str, str]]:
    """(attributes, content) of every <script> element, as an HTML parser would cut them."""
    return SCRIPT_BLOCK.findall(html)


def markup(html: str) -> str:
    """The page without the contents of its script elements (plotly.js is 4 MB of code with URLs in it)."""
    return SCRIPT_BLOCK.sub(r"<script\1></script>", html)


def assert_self_contained(html: str) -> None:
    """Offline page: plotly.js inline, no src/href/url()/@import reaching out, exactly the four script blocks."""
    blocks = scripts(html)
    attrs = [a.strip() for a, _ in blocks]
    assert attrs == ['type="application/json" id="chart-data"', 'type="text/csv" id="samples-csv"', "", ""]
    assert "Plotly.newPlot" in blocks[3][1]
    assert "plotly.js v" in blocks[2][1][:500]  # the library itself, inline
    page = markup(html)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE)
    assert "@import" not in page
    assert "url(" not in page


def chart_data(html: str) -> dict[str, Any]:
    (content,) = [c for a, c in scripts(html) if 'id="chart-data"' in a]
    data: dict[str, Any] = json.loads(content)
    return data


def embedded_csv(html: str) -> pd.DataFrame:
    """The CSV block decoded as the page's script does (&lt; and &amp; back to < and &)."""
    (content,) = [c for a, c in scripts(html) if 'id="samples-csv"' in a]
    text = re.sub(r"&(lt|amp);", lambda m: "<" if m.group(1) == "lt" else "&", content)
    return pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)


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
    assert "<b>" not in markup(html)
    assert "<i>" not in markup(html)
    assert EVIL not in html  # nowhere, not even inside the JSON or CSV blocks
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


def verdict_report(tmp_path: Path) -> tuple[str, Path]:
    """10 instances per target: 'slow' is 10 % down on a higher-is-better metric, 'fast' 10 % up, 'same' within
    ±1 %, 'few' has 2 instances; rendered to HTML."""
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
    return write_report(load_run(run_dir), tmp_path / "r.html").read_text(encoding="utf-8"), run_dir


def test_verdict_cells_vs_the_baseline(tmp_path: Path) -> None:
    """10 instances per target: 'slow' is 10 % down on a higher-is-better metric, 'fast' 10 % up, 'same' within
    ±1 %, 'few' has 2 instances. Only significant verdicts are coloured; equivalence shows as ≈."""
    html, _ = verdict_report(tmp_path)
    cells = dict(re.findall(r'<td class="verdict (\w+)"[^>]*>(.*?)</td>', html, re.DOTALL))
    assert set(cells) == {"regression", "improvement", "equivalent", "inconclusive"}
    assert cells["regression"].startswith("✗ regression")
    assert cells["improvement"].startswith("✓ improvement")
    assert cells["equivalent"].startswith("≈ equivalent")
    assert "threshold ±1% (built-in cpu.gemm)" in cells["regression"]  # cpu.gemm's class threshold, and its source
    assert "MDE " in cells["regression"]
    assert cells["inconclusive"].startswith("inconclusive")  # 2 instances: too noisy to tell at ±1 %
    assert cells["inconclusive"].count("MDE") == 1
    assert ".verdict.regression {" in html
    assert ".verdict.equivalent" not in html  # only significant verdicts are coloured
    assert ".verdict.inconclusive" not in html
    assert html.count('<td class="muted">—</td>') == 1  # the baseline row has no verdict


# ── the publishable report: charts, headline, CSV, formats, merge, bad input ─────────────────────────────────
IMG = '"><img src=x onerror=alert(1)>'
CLOSE = "</script>"


def evil_sample(target: str, workload: str, value: float, instance: int, rep: int) -> dict[str, Any]:
    return {
        **hand_sample(target, value, instance, rep),
        "workload": workload,
        "params": {"label": IMG, "n": 64},
        "metric": f"lat{CLOSE}",
        "unit": "ms<b>",
        "better": "lower",
        "reason": f"why {EVIL} & {IMG}",
    }


def hostile_run(tmp_path: Path) -> Path:
    """Markup in every field a run directory can carry: target, workload, params, metric, unit, env, reasons."""
    targets = ["local", EVIL, IMG]
    samples = [
        evil_sample(t, w, (10.0 + k) * (1 + i / 100) * (1 + r / 1000), i, r)
        for k, t in enumerate(targets)
        for w in (f"cpu.gemm{CLOSE}", "io.fsync")
        for i in range(5)
        for r in range(3)
    ]
    cases = [
        {"case": 0, "target": "local", "workload": "io.fsync", "params": {"label": IMG}, "instance": 0, "status": "ok",
         "reason": None, "phases": {"create": 0.1, "boot": 1.0, "agent_ready": 0.2, "workload": 3.0, "total": 4.3}},
        {"case": 1, "target": EVIL, "workload": "io.fsync", "params": {"label": IMG}, "instance": 0, "status": "ok",
         "reason": None, "phases": {"create": 0.3, "boot": 9.0, "agent_ready": 0.4, "workload": 3.1, "total": 12.8}},
        # the failed and the skipped instance wrote no sample: case numbers no sample uses (a failed instance's
        # samples would be left out of the statistics)
        {"case": 15, "target": IMG, "workload": f"cpu.gemm{CLOSE}", "params": {}, "instance": 5, "status": "failed",
         "reason": f"agent exited 1: {IMG}", "stderr_tail": f"Boom {CLOSE}{EVIL}", "phases": {"total": 1.0}},
        {"case": 16, "target": EVIL, "workload": "gpu.h2d", "params": {}, "instance": 0, "status": "skipped",
         "reason": f"no CUDA device visible in target {EVIL}", "phases": {"total": 0.1}},
    ]  # fmt: skip
    run_dir = write_run(
        tmp_path / "run-evil", samples, cases, status="complete", targets={t: {"kind": "local"} for t in targets}
    )
    env = {"kind": "local", "kernel": "6.1", "cpu": {"model": "EPYC", "logical_cpus": 8}, "note": IMG}
    (run_dir / "env" / "local.json").write_text(json.dumps(env), encoding="utf-8")
    evil_env = {**env, "cpu": {"model": f"EPYC {EVIL}", "logical_cpus": 8}, f"key{CLOSE}": EVIL}
    (run_dir / "env" / "evil.json").write_text(json.dumps(evil_env), encoding="utf-8")
    (run_dir / "env" / "evil.json").rename(run_dir / "env" / f"{EVIL.replace('/', '_')}.json")
    return run_dir


def test_hostile_text_cannot_leave_its_place(tmp_path: Path) -> None:
    run_dir = hostile_run(tmp_path)
    html = write_report(load_run(run_dir), tmp_path / "r.html").read_text(encoding="utf-8")
    assert_self_contained(html)

    # raw payloads occur nowhere: not in markup, attributes, the JSON block or the CSV block
    for payload in (EVIL, IMG, "<img", "<b>"):
        assert payload not in html, payload
    assert "onerror=alert(1)>" not in markup(html)  # inside the CSV block a bare > is inert text
    assert html.lower().count("</script") == 4  # only the four blocks' own end tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup(html)
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in markup(html)
    assert "cpu.gemm&lt;/script&gt;" in markup(html)

    # the chart data parses and carries the names as text (escaped for plotly's label markup)
    data = chart_data(html)
    assert data["config"]["responsive"] is True
    ids = [c["id"] for c in data["charts"]]
    assert ids == [f"chart-{i}" for i in range(len(ids))]
    assert len(ids) == 3
    for chart_id in ids:
        assert f'<div class="chart" id="{chart_id}"' in html
    labels = {x for c in data["charts"][:2] for t in c["figure"]["data"] for x in t.get("x", [])}
    assert labels == {"local", "&lt;script&gt;alert(1)&lt;/script&gt;", '"&gt;&lt;img src=x onerror=alert(1)&gt;'}
    boxes = [t for t in data["charts"][0]["figure"]["data"] if "q1" in t]
    assert boxes
    assert all(len(t["q1"]) == len(t["x"]) for t in boxes)
    phase_bars = data["charts"][2]["figure"]["data"]
    assert [t["name"] for t in phase_bars] == ["create", "boot", "agent_ready"]  # workload and total not stacked

    # the CSV block gives back every sample, hostile text intact
    csv = embedded_csv(html)
    raw = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert list(csv.columns) == SCALAR_COLUMNS
    assert list(csv["target"]) == [s["target"] for s in raw]
    assert list(csv["reason"]) == [s["reason"] for s in raw]
    assert [float(v) for v in csv["value"]] == [s["value"] for s in raw]
    assert set(csv["params"]) == {json.dumps({"label": IMG, "n": 64}, sort_keys=True, separators=(",", ":"))}
    assert 'download="run-evil-samples.csv"' in html
    assert 'id="download-csv"' in html

    # environment: the hardware difference is a comparability warning; failures and skips are listed
    assert "not comparable" in html
    assert "cpu.model" in html
    assert 'class="differs flagged"' in html
    assert re.search(r'id="count-failed">1 failed<', html)
    assert re.search(r'id="count-skipped">1 skipped<', html)
    assert "agent exited 1: &#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "no CUDA device visible in target &lt;script&gt;" in html


def test_failures_and_skips_are_listed_with_reasons(tmp_path: Path) -> None:
    samples = [hand_sample(t, 10.0 + i, i, r) for t in ("local", "box") for i in range(3) for r in range(2)]
    cases = [
        {"case": 7, "target": "box", "workload": "cpu.gemm", "params": {"n": 64}, "instance": 3, "status": "failed",
         "reason": "timed out after 600 s", "stderr_tail": "Killed", "phases": {"total": 600.0}},
        {"case": 8, "target": "box", "workload": "gpu.gemm", "params": {}, "instance": 0, "status": "skipped",
         "reason": "no CUDA device visible in target 'box'", "phases": {"total": 0.1}},
        {"case": 9, "target": "local", "workload": "gpu.gemm", "params": {}, "instance": 0, "status": "skipped",
         "reason": "no CUDA device visible in target 'local'", "phases": {"total": 0.1}},
    ]  # fmt: skip
    run_dir = write_run(tmp_path / "run-fs", samples, cases, targets={"local": {"kind": "local"}, "box": {}})
    html = write_report(load_run(run_dir), tmp_path / "r.html").read_text(encoding="utf-8")
    assert re.search(r'id="count-failed">1 failed<', html)
    assert re.search(r'id="count-skipped">2 skipped<', html)
    assert "(1 failed, 2 skipped of 3 instances)" in html
    assert "1 instance failed." in html
    section = html[html.index('<section id="problems">') : html.index('<section id="distributions">')]
    assert section.count("</tr>") == 1 + 3  # header + one row per instance
    for reason in ("timed out after 600 s", "no CUDA device visible in target &#39;box&#39;", "Killed"):
        assert reason in section
    assert html.index('<section id="headline">') < html.index('<section id="problems">')  # right after the headline

    md = cli("report", str(run_dir), "--format", "md")
    assert md.returncode == 0, md.stderr
    assert "| box | cpu.gemm | n=64 | 3 | failed | timed out after 600 s |" in md.stdout
    assert "1 failed, 2 skipped" in md.stdout


def test_headline_matrix_colours_only_significant_verdicts(tmp_path: Path) -> None:
    html, run_dir = verdict_report(tmp_path)
    table = html[
        html.index('<table class="headline">') : html.index("</table>", html.index('<table class="headline">'))
    ]
    cells = re.findall(r'<td class="num hl (\w+)"[^>]*>(.*?)</td>', table, re.DOTALL)
    assert [c for c, _ in cells] == ["regression", "improvement", "equivalent", "inconclusive"]
    text = dict(cells)
    assert "✗ 10.0% worse" in text["regression"]
    assert "0.900" in text["regression"]
    assert "✓ 10.0% better" in text["improvement"]
    assert "≈ within ±1%" in text["equivalent"]
    assert "inconclusive" in text["inconclusive"]
    assert ".hl.regression {" in html
    assert ".hl.improvement {" in html
    assert ".hl.equivalent {" not in html
    assert ".hl.inconclusive {" not in html
    assert "coloured only where the verdict is significant" in html

    doc = json.loads(cli("report", str(run_dir), "--format", "json").stdout)
    assert doc["schema"] == 1
    assert doc["run_ids"] == ["run-v"]
    assert doc["baseline"] == "local"
    rows = {r["target"]: r for r in doc["rows"]}
    assert set(rows) == {"local", "slow", "fast", "same", "few"}
    assert rows["slow"]["verdict"] == "regression"
    assert rows["fast"]["verdict"] == "improvement"
    assert rows["same"]["verdict"] == "equivalent"
    assert rows["few"]["verdict"] == "inconclusive"
    assert rows["local"]["verdict"] is None
    assert rows["local"]["ratio"] == 1.0
    assert rows["slow"]["ratio"] == pytest.approx(0.9, rel=1e-3)
    assert rows["slow"]["ratio_ci_low"] < 0.9 < rows["slow"]["ratio_ci_high"]
    assert rows["slow"]["params"] == {"n": 64, "note": "<i>x</i>"}
    assert rows["slow"]["n_instances"] == 10
    for key in ("unit", "better", "median", "ci_low", "ci_high", "mde_pct", "threshold", "p_mwu_holm", "p_tost"):
        assert key in rows["slow"], key
    assert doc["counts"]["verdict_regression"] == 1


def test_markdown_escapes_names_and_json_has_no_nan(tmp_path: Path) -> None:
    pipe = "a|b`c`<x>*y*"
    samples = [hand_sample("local", 10.0 + i, i, r) for i in range(3) for r in range(2)]
    samples += [hand_sample(pipe, 9.0, 0, 0)]  # one sample: no CI, no verdict possible
    samples += [hand_sample(EVIL, 9.0 + i, i, r) for i in range(3) for r in range(2)]
    run_dir = write_run(tmp_path / "run-md", samples, [])
    md = cli("report", str(run_dir), "--format", "md")
    assert md.returncode == 0, md.stderr
    out = md.stdout
    assert out.startswith("# benchbed report — handmade\n")
    assert EVIL not in out
    assert "<i>" not in out
    assert "<x>" not in out
    assert "a\\|b\\`c\\`&lt;x&gt;\\*y\\*" in out  # one cell, inert
    header = next(line for line in out.splitlines() if line.startswith("| case |"))
    assert header.count(" | ") == 4  # case, metric, baseline median, two targets: the pipe did not add a column
    head, thresholds = out.split("## Verdicts: threshold (source) and MDE")
    table = [line for line in head.splitlines() if line.startswith("| cpu.gemm")]
    assert len(table) == 2  # the headline's row and the medians' row
    assert all(row.count(" | ") == 4 for row in table)
    assert "## Medians [95% CI] (instances)" in out
    assert table[1].split(" | ")[2].startswith("11.0 [")  # local: instance medians 10, 11, 12
    assert table[1].endswith("9.00 — (1) |")  # one instance: no CI
    assert "Median of per-instance medians" in out
    judged = [line for line in thresholds.splitlines() if line.startswith("| cpu.gemm")]
    assert len(judged) == 2  # one per non-baseline target, each with its threshold and where it came from
    assert all(row.count(" | ") == 6 and md_text("±1% (built-in cpu.gemm)") in row for row in judged)

    res = cli("report", str(run_dir), "--format", "json", "-o", str(tmp_path / "s.json"))
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "s.json").read_text(encoding="utf-8")
    assert "NaN" not in text
    assert "Infinity" not in text
    rows = {r["target"]: r for r in json.loads(text)["rows"]}
    assert rows[pipe]["ci_low"] is None
    assert rows[pipe]["verdict"] == "inconclusive"
    assert rows[EVIL]["target"] == EVIL  # JSON carries the name as data


def test_several_runs_merge_into_one_page(tmp_path: Path) -> None:
    def run(name: str, level: float) -> Path:
        samples = [
            hand_sample(t, level * (1 + i / 100), i, r) for t in ("local", name) for i in range(5) for r in range(2)
        ]
        phases = {"create": 0.1, "boot": 1.0, "total": 1.1}
        cases = [{"case": 0, "target": name, "workload": "cpu.gemm", "params": {}, "instance": 0, "status": "ok",
                  "reason": None, "phases": phases}]  # fmt: skip
        rd = write_run(tmp_path / f"20260101-000000-s-{name}", samples, cases, status="complete",
                       targets={"local": {"kind": "local"}, name: {"kind": "docker"}})  # fmt: skip
        env = {"kernel": f"k-{name}", "cpu": {"model": f"cpu-{name}"}}
        (rd / "env" / "local.json").write_text(json.dumps(env), "utf-8")
        return rd

    first, second = run("aaaa", 10.0), run("bbbb", 11.0)
    dest = tmp_path / "merged.html"
    res = cli("report", str(first), str(second), "-o", str(dest))
    assert res.returncode == 0, res.stderr
    html = dest.read_text(encoding="utf-8")
    assert_self_contained(html)
    assert "2 runs merged into one page" in html
    head = html[html.index('<table class="headline">') : html.index("</thead>", html.index('<table class="headline">'))]
    assert re.findall(r'<th class="num mono">([^<]*)</th>', head) == ["aaaa", "local@bbbb", "bbbb"]
    assert '<th class="num">local@aaaa median</th>' in head
    assert '<th class="mono">local@aaaa</th><th class="mono">local@bbbb</th>' in html  # environment side by side
    assert 'baseline <span class="mono">local@aaaa</span>' in html
    warnings = re.findall(r'<li class="env-warning">(.*?)</li>', html, re.DOTALL)
    assert len(warnings) == 1  # the kernel is under test across runs; the CPU is not
    assert "cpu.model" in warnings[0]
    assert "differs across runs" in warnings[0]
    csv = embedded_csv(html)
    assert len(csv) == 40
    assert set(csv["target"]) == {"local@aaaa", "aaaa", "local@bbbb", "bbbb"}

    doc = json.loads(cli("report", str(first), str(second), "--format", "json").stdout)
    assert doc["run_ids"] == [first.name, second.name]
    assert doc["baseline"] == "local@aaaa"
    ratio = {r["target"]: r["ratio"] for r in doc["rows"]}
    assert ratio["local@bbbb"] == pytest.approx(1.1, rel=1e-6)


def test_plotly_from_the_cdn(tmp_path: Path) -> None:
    import plotly.offline

    run_dir = write_run(tmp_path / "run-cdn", [hand_sample("local", 1.0 + i, i, 0) for i in range(3)], [])
    html = write_report(load_run(run_dir), tmp_path / "r.html", plotly="cdn").read_text(encoding="utf-8")
    blocks = scripts(html)
    src = f"https://cdn.plot.ly/plotly-{plotly.offline.get_plotlyjs_version()}.min.js"
    assert f'<script src="{src}" charset="utf-8"></script>' in html
    assert len(blocks) == 4
    assert blocks[2][1] == ""
    assert len(html) < 200_000  # no inline copy of the library
    assert "Plotly.newPlot" in blocks[3][1]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such run directory"),
        ("format", "unknown report format 'pdf'"),
        ("plotly", "unknown --plotly mode 'web'"),
        ("env", "corrupt JSON"),
        ("runjson", "corrupt JSON"),
        ("samples", "not valid JSON"),
        ("twice", "given more than once"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, case: str, message: str) -> None:
    run_dir = write_run(tmp_path / "run-bad", [hand_sample("local", 1.0, 0, 0)], [])
    args = [str(run_dir), "-o", str(tmp_path / "r.html")]
    if case == "missing":
        args[0] = str(tmp_path / "nope")
    elif case == "format":
        args += ["--format", "pdf"]
    elif case == "plotly":
        args += ["--plotly", "web"]
    elif case == "env":
        (run_dir / "env" / "local.json").write_text("{not json", encoding="utf-8")
    elif case == "runjson":
        (run_dir / "run.json").write_text("{", encoding="utf-8")
    elif case == "samples":
        (run_dir / "samples.jsonl").write_text("{bad\n" + json.dumps(hand_sample("local", 1.0, 0, 0)) + "\n")
    elif case == "twice":
        args.insert(1, str(run_dir))
    res = cli("report", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("benchbed: error: ")
    assert message in lines[0]
    assert not (tmp_path / "r.html").exists()


def gpu_sample(instance: int, rep: int, labels: dict[str, Any]) -> dict[str, Any]:
    return {
        **hand_sample("local", 600.0 + rep, instance, rep),
        "workload": "gpu.gemm",
        "params": {"n": 4096},
        "unit": "TFLOP/s",
        "labels": labels,
    }


def test_throttled_samples_and_gpu_settings_are_shown(tmp_path: Path) -> None:
    calm = {"telemetry": "nvml every 20 ms", "sm_mhz_min": 1980}
    hot = {**calm, "throttled": "sw_power_cap", "sm_mhz_min": 1410}
    samples = [gpu_sample(i, r, hot if (i, r) in ((0, 1), (1, 2)) else calm) for i in range(2) for r in range(4)]
    cases = [{"case": i, "target": "local", "workload": "gpu.gemm", "params": {"n": 4096}, "instance": i,
              "status": "ok", "reason": None, "phases": {"total": 1.0}} for i in range(2)]  # fmt: skip
    run_dir = write_run(tmp_path / "run-gpu", samples, cases, targets={"local": {"kind": "local"}})
    env = {"kind": "local", "gpus": [{"index": 0, "persistence_mode": "disabled", "bar1_note": "BAR1 is 0.25 GiB"}]}
    (run_dir / "env" / "local.json").write_text(json.dumps(env), encoding="utf-8")
    html = markup(write_report(load_run(run_dir), tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "GPU notes" in html
    assert "2 of 8 overlapped a clock-event reason" in html
    assert "sw_power_cap" in html
    assert "persistence mode off" in html
    assert "BAR1 is 0.25 GiB" in html
    text = render(load_run(run_dir), "md")
    assert "## GPU notes" in text
    assert (
        "| local | gpu.gemm | n=4096 | throughput | 2 of 8 overlapped a clock-event reason | sw\\_power\\_cap |" in text
    )
    assert "persistence mode off" in text


def test_a_cpu_report_has_no_gpu_notes(tmp_path: Path) -> None:
    samples = [hand_sample("local", 10.0 + r, i, r) for i in range(2) for r in range(3)]
    run_dir = write_run(tmp_path / "run-cpu", samples, [], targets={"local": {"kind": "local"}})
    assert "GPU notes" not in markup(write_report(load_run(run_dir), tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "GPU notes" not in render(load_run(run_dir), "md")


def test_restored_vm_instances_are_marked_in_html_and_markdown(tmp_path: Path) -> None:
    """A libvirt target with `start: restore` records how each instance started: both formats say so."""
    samples = [hand_sample(t, 10.0 + i, i, 0) for t in ("local", "vm") for i in range(3)]
    cases = [
        {"case": i, "target": t, "workload": "cpu.gemm", "params": {}, "instance": i, "status": "ok",
         "phases": {"total": 1.0}, **({"start": start} if t == "vm" else {})}
        for t in ("local", "vm") for i, start in enumerate(["booted", "restored", "restored"])
    ]  # fmt: skip
    targets = {"local": {"kind": "local"}, "vm": {"kind": "libvirt"}}
    run_dir = write_run(tmp_path / "run-restored", samples, cases, status="complete", targets=targets)
    html = write_report(load_run(run_dir), tmp_path / "r.html").read_text(encoding="utf-8")
    (line,) = re.findall(r'<p id="instance-starts">(.*?)</p>', markup(html), re.DOTALL)
    assert "vm: 2 restored, 1 booted" in line
    assert "local" not in line  # only targets with restored instances are named
    md = render(load_run(run_dir), "md")
    assert "- VM instances restored from a saved guest (the rest booted): vm: 2 restored, 1 booted" in md

    plain = write_run(tmp_path / "run-booted", samples, [{**c, "start": None} for c in cases], targets=targets)
    assert 'id="instance-starts"' not in write_report(load_run(plain), tmp_path / "b.html").read_text(encoding="utf-8")
