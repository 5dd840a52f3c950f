"""The results database against the real thing: the embedded SQLite file and the PostgreSQL server started by
scripts/setup-postgres (BENCHBED_REQUIRE=postgres makes its absence a failure). Driven through the CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from benchbed.history import schema
from benchbed.history.engine import open_db
from tests.conftest import REPO
from tests.integration.history_db import cli, make_run, postgres_database

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/history.sqlite"
    else:
        yield from postgres_database()


def counts(url: str) -> dict[str, int]:
    db = open_db(url)
    try:
        with db.transaction() as conn:
            tables = (schema.runs, schema.targets, schema.instances, schema.medians, schema.samples)
            return {tab.name: int(conn.execute(select(func.count()).select_from(tab)).scalar_one()) for tab in tables}
    finally:
        db.close()


def test_publish_then_publish_again_adds_nothing(db_url: str, tmp_path: Path) -> None:
    run = make_run(tmp_path / "res", "r1", day=0, level=100.0)
    first = cli("publish", str(run), "--db", db_url)
    assert first.returncode == 0, first.stderr
    assert "r1: published" in first.stdout
    after = counts(db_url)
    assert after == {"runs": 1, "targets": 1, "instances": 6, "medians": 6, "samples": 30}
    again = cli("publish", str(run), "--db", db_url)
    assert again.returncode == 0, again.stderr
    assert "already in" in again.stdout
    assert counts(db_url) == after


def test_no_raw_keeps_the_medians_only(db_url: str, tmp_path: Path) -> None:
    run = make_run(tmp_path / "res", "r1", day=0, level=100.0)
    res = cli("publish", str(run), "--db", db_url, "--no-raw")
    assert res.returncode == 0, res.stderr
    assert counts(db_url) == {"runs": 1, "targets": 1, "instances": 6, "medians": 6, "samples": 0}


def test_same_run_id_from_other_files_is_refused(db_url: str, tmp_path: Path) -> None:
    assert cli("publish", str(make_run(tmp_path / "a", "r1", day=0, level=100.0)), "--db", db_url).returncode == 0
    other = make_run(tmp_path / "b", "r1", day=0, level=90.0)
    res = cli("publish", str(other), "--db", db_url)
    assert res.returncode == 2
    assert "already published from other files" in res.stderr
    assert counts(db_url)["runs"] == 1


def test_an_incomplete_run_published_then_resumed_is_replaced_by_the_finished_run(db_url: str, tmp_path: Path) -> None:
    """`benchbed run --resume` appends to the run's files: publishing the finished run replaces the incomplete one
    (keeping its accepted mark); a complete run is never replaced."""
    import json

    run = make_run(tmp_path / "res", "r1", day=0, level=100.0, instances=6)
    cases = (run / "cases.jsonl").read_text().splitlines()
    plan = [{k: json.loads(c)[k] for k in ("case", "target", "workload", "params", "instance")} for c in cases]
    meta = {**json.loads((run / "run.json").read_text()), "plan": plan}
    (run / "cases.jsonl").write_text("\n".join(cases[:4]) + "\n")  # killed after 4 of 6 instances
    (run / "run.json").write_text(json.dumps({**meta, "status": "incomplete"}))
    assert cli("publish", str(run), "--db", db_url).returncode == 0
    assert cli("accept", "r1", "--db", db_url).returncode == 0
    assert counts(db_url)["medians"] == 4  # the unfinished instances' samples are no statistics
    (run / "cases.jsonl").write_text("\n".join(cases) + "\n")  # resumed: the last two instances ran
    (run / "run.json").write_text(json.dumps({**meta, "status": "complete", "resumed": [{"attempt": 1}]}))
    again = cli("publish", str(run), "--db", db_url)
    assert again.returncode == 0, again.stderr
    assert "replaces its incomplete version" in again.stdout
    assert counts(db_url) == {"runs": 1, "targets": 1, "instances": 6, "medians": 6, "samples": 30}
    db = open_db(db_url)
    try:
        with db.transaction() as conn:
            row = conn.execute(select(schema.runs.c.status, schema.runs.c.accepted)).one()
    finally:
        db.close()
    assert tuple(row) == ("complete", True)
    (run / "cases.jsonl").write_text("\n".join(cases[:5]) + "\n")  # the complete run's files changed
    edited = cli("publish", str(run), "--db", db_url)
    assert edited.returncode == 2  # a complete run is one run: other files are refused, not replaced
    assert "already published from other files" in edited.stderr


def test_concurrent_publish_from_several_processes(db_url: str, tmp_path: Path) -> None:
    """Six publishers at once: each its own run plus the same two shared runs. Every run lands exactly once."""
    shared = [make_run(tmp_path / "res", f"shared{i}", day=i, level=100.0, seed=i) for i in range(2)]
    own = [make_run(tmp_path / "res", f"own{i}", day=10 + i, level=100.0, seed=10 + i) for i in range(6)]
    cmd = [sys.executable, "-m", "benchbed.cli", "publish"]
    procs = [
        subprocess.Popen(
            [*cmd, str(o), *map(str, shared), "--db", db_url],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for o in own
    ]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert counts(db_url) == {"runs": 8, "targets": 8, "instances": 48, "medians": 48, "samples": 240}


def test_concurrent_first_publish_migrates_once(db_url: str, tmp_path: Path) -> None:
    """An empty database and four publishers at once: one creates the schema, the others wait and find it."""
    runs = [make_run(tmp_path / "res", f"r{i}", day=i, level=100.0, seed=i) for i in range(4)]
    cmd = [sys.executable, "-m", "benchbed.cli", "publish"]
    procs = [
        subprocess.Popen(
            [*cmd, str(r), "--db", db_url], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for r in runs
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert counts(db_url)["runs"] == 4


def test_a_crash_mid_publish_leaves_nothing(db_url: str, tmp_path: Path) -> None:
    """SIGKILL after every row is written but before the commit: the database holds none of the run."""
    run = make_run(tmp_path / "res", "r1", day=0, level=100.0, instances=10, reps=50)
    crashed = cli("publish", str(run), "--db", db_url, env={"BENCHBED_HISTORY_TEST_CRASH": "before-commit"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert counts(db_url) == {"runs": 0, "targets": 0, "instances": 0, "medians": 0, "samples": 0}
    again = cli("publish", str(run), "--db", db_url)
    assert again.returncode == 0, again.stderr
    assert counts(db_url)["samples"] == 500


def test_history_finds_the_planted_step_at_the_driver_change(db_url: str, tmp_path: Path) -> None:
    """16 nightly runs; the driver goes 550.54 → 560.35 at run 10 and GEMM drops 8 % there on gpu-a only. The
    kernel changes at run 4 with no effect. The shift is reported at run 10, coinciding with the driver."""
    runs = []
    for i in range(16):
        driver = "560.35" if i >= 10 else "550.54"
        kernel = "6.1.0-21-amd64" if i >= 4 else "6.1.0-18-amd64"
        level = 92.0 if i >= 10 else 100.0
        runs.append(make_run(tmp_path / "res", f"a{i:02d}", day=i, level=level, driver=driver, kernel=kernel,
                             target="gpu-a", seed=i))  # fmt: skip
        runs.append(make_run(tmp_path / "res", f"b{i:02d}", day=i, level=50.0, driver=driver, kernel=kernel,
                             target="gpu-b", seed=100 + i))  # fmt: skip
    assert cli("publish", *map(str, runs), "--db", db_url).returncode == 0
    page = tmp_path / "history.html"
    res = cli("history", "--target", "gpu-*", "--workload", "gpu.gemm", "--db", db_url, "--html", str(page))
    assert res.returncode == 0, res.stderr
    shift = r"level shift on gpu-a: -[78]\.\d% at run a10 \(coincides with driver 550\.54 → 560\.35\)"
    assert re.search(shift, res.stdout), res.stdout
    assert "no level shift on gpu-b over 16 runs" in res.stdout
    assert sum(line.startswith("level shift on") for line in res.stdout.splitlines()) == 1
    assert "kernel 6.1.0-18-amd64 → 6.1.0-21-amd64" in res.stdout  # the environment change is on the timeline
    text = page.read_text()
    assert "Plotly.newPlot" in text
    assert "driver 550.54 → 560.35" in text
    assert "level -" in text
    assert "<script src=" not in text  # self-contained: plotly.js inlined
    one = cli("history", "-t", "gpu-b", "-w", "gpu.gemm", "--metric", "nope", "--db", db_url)
    assert one.returncode == 2
    assert "no published medians" in one.stderr


def test_history_judges_shifts_by_the_suites_own_threshold(db_url: str, tmp_path: Path) -> None:
    """A microbenchmark suite that says `thresholds: {default: 0.02}` gets its 3.5 % step reported, as `compare`
    would judge it; the 5 % fallback (what history used before) hid it."""
    import json

    runs = []
    for i in range(12):
        run = make_run(tmp_path / "res", f"m{i:02d}", day=i, level=103.5 if i >= 6 else 100.0, seed=i,
                       workloads=("my.bench",))  # fmt: skip
        meta = json.loads((run / "run.json").read_text())
        meta["suite"]["text"] = "name: nightly\nthresholds: {default: 0.02}\n"
        (run / "run.json").write_text(json.dumps(meta))
        runs.append(run)
    assert cli("publish", *map(str, runs), "--db", db_url).returncode == 0
    res = cli("history", "-t", "gpu-host", "-w", "my.bench", "--db", db_url)
    assert res.returncode == 0, res.stderr
    assert re.search(r"level shift on gpu-host: \+3\.\d% at run m06", res.stdout), res.stdout
    plain = tmp_path / "plain"
    for run in runs:  # the same numbers from a suite without a decision: the fallback, and it says so
        meta = json.loads((run / "run.json").read_text())
        (plain / f"p{run.name}").mkdir(parents=True)
        for f in run.rglob("*"):
            if f.is_file():
                dest = plain / f"p{run.name}" / f.relative_to(run)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(f.read_bytes())
        meta.update(run_id=f"p{run.name}", suite={"name": "other", "text": "name: other\n"}, baseline="gpu-plain",
                    targets={"gpu-plain": {"kind": "local"}})  # fmt: skip
        (plain / f"p{run.name}" / "run.json").write_text(json.dumps(meta))
        (plain / f"p{run.name}" / "env" / "gpu-host.json").rename(plain / f"p{run.name}" / "env" / "gpu-plain.json")
    for f in plain.rglob("*.jsonl"):
        f.write_text(f.read_text().replace('"gpu-host"', '"gpu-plain"'))
    assert cli("publish", *map(str, sorted(plain.iterdir())), "--db", db_url).returncode == 0
    hidden = cli("history", "-t", "gpu-plain", "-w", "my.bench", "--db", db_url)
    assert hidden.returncode == 0, hidden.stderr
    assert "no level shift on gpu-plain over 12 runs (±5% (fallback) or more)" in hidden.stdout


def test_history_of_a_group_by_list_or_by_the_targets_files_group(db_url: str, tmp_path: Path) -> None:
    runs = [make_run(tmp_path / "res", f"{h}{i}", day=i, level=100.0, target=h, seed=i)
            for h in ("gpu-a", "gpu-b", "cpu-c") for i in range(3)]  # fmt: skip
    assert cli("publish", *map(str, runs), "--db", db_url).returncode == 0
    (tmp_path / "lab.yaml").write_text("targets: {}\ngroups:\n  rack3: {hosts: [gpu-a, cpu-c]}\n")
    for args in (["-t", "gpu-a,cpu-c"], ["-t", "rack3", "--targets", str(tmp_path / "lab.yaml")]):
        res = cli("history", *args, "-w", "gpu.gemm", "--db", db_url)
        assert res.returncode == 0, res.stderr
        shown = {line.split()[4] for line in res.stdout.splitlines() if line.startswith("no level shift on")}
        assert shown == {"gpu-a", "cpu-c"}, res.stdout
    (tmp_path / "bad.yaml").write_text("targets: {x: {kind: nope}}\n")
    bad = cli("history", "-t", "rack3", "--targets", str(tmp_path / "bad.yaml"), "-w", "gpu.gemm", "--db", db_url)
    assert bad.returncode == 2
    assert bad.stderr.startswith("benchbed: error: "), bad.stderr
    assert "bad.yaml:1" in bad.stderr, bad.stderr


def test_compare_against_last_good(db_url: str, tmp_path: Path) -> None:
    good = make_run(tmp_path / "res", "good", day=0, level=100.0, seed=1)
    same = make_run(tmp_path / "res", "same", day=1, level=100.0, seed=2)
    worse = make_run(tmp_path / "res", "worse", day=2, level=90.0, driver="560.35", seed=3)
    none = cli("compare", str(same), "--against", "last-good", "--db", db_url)
    assert none.returncode == 2
    assert "no accepted run" in none.stderr
    acc = cli("accept", str(good), "--db", db_url)
    assert acc.returncode == 0, acc.stderr
    assert "good: accepted" in acc.stdout
    ok = cli("compare", str(same), "--against", "last-good", "--db", db_url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "against: good" in ok.stdout
    bad = cli("compare", str(worse), "--against", "last-good", "--db", db_url)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "REGRESSION" in bad.stdout
    assert "gpus.0.driver: 550.54 → 560.35" in bad.stdout  # the env diff
    # the newest accepted run wins: accept `worse`, and `same` is now judged against it (an improvement, exit 0)
    assert cli("accept", str(worse), "--db", db_url).returncode == 0
    vs_worse = cli("compare", str(same), "--against", "last-good", "--db", db_url)
    assert "against: worse" in vs_worse.stdout
    assert vs_worse.returncode == 0
    assert cli("accept", "worse", "--revoke", "--db", db_url).returncode == 0
    assert "against: good" in cli("compare", str(worse), "--against", "last-good", "--db", db_url).stdout
    other = make_run(tmp_path / "res", "other", day=3, level=100.0, workloads=("gpu.gemm", "cpu.stream"))
    mismatch = cli("compare", str(other), "--against", "last-good", "--db", db_url)
    assert mismatch.returncode == 2
    assert "no accepted run" in mismatch.stderr
    unknown = cli("accept", "no-such-run", "--db", db_url)
    assert unknown.returncode == 2
    assert "not in" in unknown.stderr


@pytest.mark.local
def test_run_publish_masks_the_password(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "name: pub\nbaseline: local\ndefaults: {instances: 2, repetitions: 2, warmup: 0}\n"
        "workloads:\n  - name: util.noop\n    params: {duration_ms: 1}\n"
    )
    (tmp_path / "t.yaml").write_text("targets:\n  local: {kind: local}\n")
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = ["run", str(tmp_path / "s.yaml"), "-t", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "res")]
    res = cli(*args, "--no-report", "--publish", db_url, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "published to" in res.stdout
    (run_dir,) = (tmp_path / "res").iterdir()
    assert "benchbed:benchbed@" not in (run_dir / "run.json").read_text()
    assert counts(db_url)["runs"] == 1


def test_non_finite_values_and_labels_publish(db_url: str, tmp_path: Path) -> None:
    """NaN/Infinity (which Python's json writes and PostgreSQL's JSON refuses) in a sample, a label and a case."""
    run = make_run(tmp_path / "res", "r1", day=0, level=100.0, instances=2, reps=2)
    odd = (
        '{"target": "gpu-host", "workload": "gpu.gemm", "params": {"n": 4096}, "instance": 0, "case": 0, '
        '"metric": "tflops", "value": Infinity, "unit": "TFLOP/s", "better": "higher", "phase": "measure", '
        '"repetition": 9, "valid": false, "reason": "overflow", "labels": {"clock": NaN, "note": "x"}}\n'
    )
    with (run / "samples.jsonl").open("a") as f:
        f.write(odd)
    with (run / "cases.jsonl").open("a") as f:
        f.write('{"case": 9, "target": "gpu-host", "workload": "gpu.gemm", "params": {"n": 4096}, "instance": 5, '
                '"status": "failed", "reason": "boom", "phases": {"total": NaN}}\n')  # fmt: skip
    res = cli("publish", str(run), "--db", db_url)
    assert res.returncode == 0, res.stderr
    assert counts(db_url) == {"runs": 1, "targets": 1, "instances": 3, "medians": 2, "samples": 5}
