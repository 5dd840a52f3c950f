"""Samples of instances that did not finish stay on disk and out of the statistics; every report and `compare`
say per case how many were left out, so a thinner case is never silently thinner."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from benchbed.cli import app
from benchbed.compare import compare, to_markdown
from benchbed.report.render import render
from benchbed.results import load_run
from benchbed.stats import unfinished_by_case

PARAMS = {"n": 1}
LINE = "6 samples from 3 unfinished instances"


def sample(target: str, case: int, value: float, rep: int, attempt: int = 0, workload: str = "w") -> dict[str, Any]:
    row = {"target": target, "workload": workload, "params": PARAMS, "metric": "lat", "unit": "ms",
           "better": "lower", "value": value, "instance": case, "repetition": rep, "phase": "measure",
           "valid": True, "reason": None, "case": case}  # fmt: skip
    return {**row, "attempt": attempt} if attempt else row


def write(run_dir: Path, *, unfinished: bool) -> Path:
    """local: cases 0-3 ok. box: 4, 5 (second try), 8, 9 ok; with `unfinished`, 5's first try was cut short
    (1 sample, no record), 6 failed after 2 samples and 7 was cut short after 3: 3 instances, 6 samples."""
    samples, cases = [], []
    for case in range(10):
        target = "local" if case < 4 else "box"
        attempt = 1 if case == 5 and unfinished else 0
        if unfinished and case in (5, 6, 7):
            samples += [sample(target, case, 99.0, r) for r in range({5: 1, 6: 2, 7: 3}[case])]
            if case == 6:
                cases.append({"case": 6, "target": "box", "workload": "w", "params": PARAMS, "instance": 6,
                              "status": "failed", "reason": "agent killed"})  # fmt: skip
            if case != 5:
                continue
        samples += [sample(target, case, 10.0 + case / 100 + r / 1000, r, attempt) for r in range(3)]
        record = {"case": case, "target": target, "workload": "w", "params": PARAMS, "instance": case, "status": "ok"}
        cases.append({**record, "attempt": attempt} if attempt else record)
    samples += [sample("box", 4, 1.0, r, workload="other") for r in range(2)]  # a finished case of another workload
    plan = [{"case": c, "target": "local" if c < 4 else "box", "workload": "w", "instance": c} for c in range(10)]
    (run_dir / "env").mkdir(parents=True)
    meta = {"schema_version": 1, "run_id": run_dir.name, "status": "incomplete", "suite": {"name": "u"},
            "baseline": "local", "seed": 1, "targets": {"local": {"kind": "local"}, "box": {"kind": "ssh"}},
            "plan": plan}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(meta))
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (run_dir / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write(tmp_path / "run-u", unfinished=True)


def test_per_instance_and_per_case_counts(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert run.meta["unfinished_samples"] == 6
    assert sorted(zip(run.unfinished["case"], run.unfinished["attempt"], run.unfinished["samples"], strict=True)) == [
        (5, 0, 1),  # the first try of an instance that a resume ran again
        (6, 0, 2),  # failed
        (7, 0, 3),  # planned, never recorded: cut short
    ]
    assert 99.0 not in set(run.samples["value"])  # none of them is a statistic
    by_case = unfinished_by_case(run.unfinished).to_dict("records")
    assert by_case == [{"target": "box", "workload": "w", "params": '{"n":1}', "instances": 3, "samples": 6}]


def test_markdown_and_json_reports_say_what_was_left_out(run_dir: Path) -> None:
    md = render(load_run(run_dir), "md")
    assert f"- {LINE} left out of the statistics" in md
    assert "| box | w | n=1 | 3 | 6 |" in md
    assert "Every instance ran to completion." not in md
    doc = json.loads(render(load_run(run_dir), "json"))
    assert doc["counts"]["unfinished_instances"] == 3
    assert doc["counts"]["unfinished_samples"] == 6
    assert doc["unfinished"] == [{"target": "box", "workload": "w", "params": "n=1", "instances": 3, "samples": 6}]


def test_html_report_shows_the_count_per_case(run_dir: Path) -> None:
    html = render(load_run(run_dir), "html")
    assert re.search(r'id="count-unfinished">6 left out \(unfinished\)<', html)
    assert f"{LINE} left out of the statistics." in html
    table = html.split('<h3 id="unfinished">', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table)
    assert cells == ["box", "w", "n=1", "3", "6"]


def test_a_run_without_unfinished_instances_says_nothing_of_them(tmp_path: Path) -> None:
    run = load_run(write(tmp_path / "run-ok", unfinished=False))
    assert run.unfinished.empty
    md = render(run, "md")
    assert "unfinished" not in md
    assert "Every instance ran to completion." in md
    assert 'id="unfinished"' not in render(run, "html")
    assert json.loads(render(run, "json"))["unfinished"] == []


def test_compare_names_the_cases_left_out(run_dir: Path, tmp_path: Path) -> None:
    result = compare(run_dir, n_resamples=199)
    expected = f"run-u:box w n=1: {LINE} left out of the statistics"
    assert result.unfinished == [expected]
    assert f"- unfinished: {expected}" in to_markdown(result)
    clean = compare(write(tmp_path / "run-ok", unfinished=False), n_resamples=199)
    assert clean.unfinished == []
    out = CliRunner().invoke(app, ["compare", str(run_dir)])
    assert out.exit_code in (0, 1), out.output
    assert f"note: unfinished: {expected}" in " ".join(out.output.split())
