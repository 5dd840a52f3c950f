"""Fault injection: each fault of docs/reliability.md against the real component, with what benchbed must do.

Every fault ends in one clear line (never a traceback), loses no complete sample, and leaves nothing that
`benchbed cleanup` cannot find.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.results import load_run
from tests.integration import dockerd
from tests.integration.faultkit import (
    EngineLink,
    bench,
    cli_env,
    samples_text,
    start,
    tmpfs,
    unmount,
    wait_for,
    write,
)


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# ── 1. the engine goes away mid-case ───────────────────────────────────────────────────────────────────────
@pytest.mark.docker
def test_engine_stopped_mid_case_fails_that_target_and_the_suite_goes_on(
    tmp_path: Path, reap: list[subprocess.Popen[str]]
) -> None:
    image = dockerd.required_image()
    link = EngineLink()
    try:
        targets = {
            "local": {"kind": "local"},
            "box": {"kind": "docker", "image": image, "pull": "never", "docker_host": link.url},
        }
        suite = (
            "name: engine\nbaseline: local\nmodules: [slow.py]\n"
            "defaults: {instances: 2, repetitions: 1, timeout_s: 120}\n"
            "workloads:\n  - {name: test.slow, params: {seconds: 4}}\n  - {name: util.noop, params: {duration_ms: 1}}\n"
        )
        t, s = write(tmp_path, targets, suite)
        res = tmp_path / "res"
        proc = start(tmp_path, reap, "run", str(s), "-t", str(t), "--out", str(res), "--no-report", "--seed", "3")
        wait_for("a sample from the container", lambda: '"target": "box", "workload": "test.slow"' in samples_text(res))
        link.cut()  # the engine is gone while the container's case runs, and stays gone for the rest of the run
        out, err = proc.communicate(timeout=300)
        assert "Traceback" not in err, err
        (run_dir,) = res.iterdir()
        run = load_run(run_dir)
        assert proc.returncode == (1 if (run.cases.status == "failed").any() else 0), err  # README: exit codes
        assert run.meta["status"] == "complete"
        local = run.cases[run.cases.target == "local"]
        assert len(local) == 4
        assert set(local.status) == {"ok"}  # the other target went on
        box = run.cases[run.cases.target == "box"]
        assert len(box) == 4  # every planned instance of the engine's target has a record
        assert set(box.status) == {"failed"} or set(box[box.case > box.case.min()].status) == {"failed"}
        assert all("Docker engine" in r for r in box[box.status == "failed"].reason), list(box.reason)
        assert "failed on box" in out
        assert "left for `benchbed cleanup`" in err  # the one container the lost engine could not remove
        link.restore()  # the engine returns: what the dead connection could not remove, cleanup does
        swept = bench(tmp_path, "cleanup", "--docker-host", link.url)
        assert swept.returncode == 0, swept.stderr
        assert "removed container" in swept.stdout, swept.stdout
        assert dockerd.labelled_containers(res) == []
    finally:
        link.close()


# ── 1b. the libvirt daemon's connection goes away mid-case ─────────────────────────────────────────────────
@pytest.mark.libvirt
@pytest.mark.slow
def test_libvirt_connection_lost_mid_case_fails_cleanly_and_cleanup_finds_the_guest(
    tmp_path: Path, reap: list[subprocess.Popen[str]]
) -> None:
    from tests.integration import libvirtd

    with libvirtd.required_overlays() as overlays:
        link = EngineLink("/var/run/libvirt/libvirt-sock")
        uri = f"qemu+unix:///system?socket={link.path}"
        try:
            targets = {"local": {"kind": "local"}, "vm": libvirtd.guest_spec(overlays, uri=uri)}
            suite = (
                "name: virtlost\nbaseline: local\nmodules: [slow.py]\nseed: 2\n"
                "defaults: {instances: 2, repetitions: 1, warmup: 0, timeout_s: 900}\n"
                "workloads:\n  - {name: test.slow, params: {seconds: 3}}\n"
            )
            t, s = write(tmp_path, targets, suite)
            res = tmp_path / "res"
            proc = start(tmp_path, reap, "run", str(s), "-t", str(t), "--out", str(res), "--no-report")
            wait_for("a sample from the guest", lambda: '"target": "vm"' in samples_text(res), timeout=1500)
            link.cut()  # libvirtd is gone for the harness while the guest's case runs, and for the rest of the run
            _, err = proc.communicate(timeout=900)
            assert "Traceback" not in err, err
            (run_dir,) = res.iterdir()
            run = load_run(run_dir)
            assert proc.returncode == (1 if (run.cases.status == "failed").any() else 0), err  # README: exit codes
            assert run.meta["status"] == "complete"
            local = run.cases[run.cases.target == "local"]
            assert set(local.status) == {"ok"}
            assert len(local) == 2
            vm = run.cases[run.cases.target == "vm"]
            assert len(vm) == 2  # every planned instance has its record: none ended the suite
            assert "failed" in set(vm.status)
            assert all("libvirt" in r or "socket" in r for r in vm[vm.status == "failed"].reason), list(vm.reason)
            assert "left for `benchbed cleanup`" in err  # the guest the lost connection could not destroy
            link.restore()
            swept = bench(tmp_path, "cleanup", "--libvirt-uri", uri, "-t", str(t))
            assert swept.returncode == 0, swept.stderr
            assert "removed domain" in swept.stdout, swept.stdout
            assert run.meta["run_id"] not in " ".join(libvirtd.benchbed_domains())
        finally:
            link.close()


# ── 2. the results store fills up ──────────────────────────────────────────────────────────────────────────
MANY = (
    "name: many\nbaseline: local\ndefaults: {instances: 3, repetitions: 2000, warmup: 0}\n"
    "workloads:\n  - {name: util.noop, params: {duration_ms: 0}}\n"
)


@pytest.fixture
def small_store() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmpfs(400)
    try:
        yield where
    finally:
        unmount(where)


@pytest.mark.local
def test_full_store_is_one_line_keeps_every_complete_line_and_marks_the_run_incomplete(
    tmp_path: Path, small_store: Path
) -> None:
    (tmp_path / "s.yaml").write_text(MANY)
    proc = bench(tmp_path, "run", "s.yaml", "--out", str(small_store), "--no-report", "--seed", "1")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("benchbed: error: results store full: "), line
    (run_dir,) = [p for p in small_store.iterdir() if p.is_dir()]
    text = (run_dir / "samples.jsonl").read_bytes()
    assert len(text) > 50_000  # the run got somewhere before the store filled
    assert text.endswith(b"\n")  # no partial line
    rows = [json.loads(line) for line in text.splitlines()]
    assert all(r["workload"] == "util.noop" for r in rows)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "incomplete"
    assert "results store full" in meta["status_note"]
    assert [p.name for p in small_store.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")] == []
    assert load_run(run_dir).meta["status"] == "incomplete"


@pytest.mark.local
@pytest.mark.parametrize("size_kib", [8, 120])  # 8: no room for run.json's reserve; 120: none for the agent
def test_a_store_full_before_anything_ran_leaves_no_half_made_run(tmp_path: Path, size_kib: int) -> None:
    if os.geteuid() != 0:
        pytest.skip("a tmpfs store needs root")
    store = tmpfs(size_kib)
    try:
        (tmp_path / "s.yaml").write_text(MANY)
        proc = bench(tmp_path, "run", "s.yaml", "--out", str(store), "--no-report")
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("benchbed: error: results store full: "), line
        assert "nothing ran, the run directory was removed" in line
        assert list(store.iterdir()) == []  # no run that says `running` forever, no .reserve, no .agent
    finally:
        unmount(store)


# ── 3. the results store is read-only ──────────────────────────────────────────────────────────────────────
@pytest.mark.local
def test_read_only_store_is_refused_before_anything_runs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a read-only mount needs root (root ignores file modes)")
    store = tmpfs(64)
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)
        (tmp_path / "s.yaml").write_text(MANY)
        proc = bench(tmp_path, "run", "s.yaml", "--out", str(store), "--no-report")
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"benchbed: error: results store {store} is not writable"), line
        assert "run " not in proc.stdout  # nothing started
        assert list(store.iterdir()) == []
    finally:
        unmount(store)


# ── 4. a corrupt run: one reader, one message, for report and compare ──────────────────────────────────────
TINY = (
    "name: tiny\nbaseline: local\ndefaults: {instances: 2, repetitions: 3, warmup: 0}\n"
    "workloads:\n  - {name: util.noop, params: {duration_ms: 0}}\n"
)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tiny")
    (tmp / "s.yaml").write_text(TINY)
    proc = bench(tmp, "run", "s.yaml", "--out", str(tmp / "res"), "--no-report", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp / "res").iterdir()
    return run_dir


def _array_line(run: Path) -> None:
    with (run / "samples.jsonl").open("a") as f:
        f.write("[1, 2]\n")
        f.write((run / "samples.jsonl").read_text().splitlines()[0] + "\n")


def _samples_dir(run: Path) -> None:
    (run / "samples.jsonl").unlink()
    (run / "samples.jsonl").mkdir()


def _first_sample(run: Path) -> str:
    return (run / "samples.jsonl").read_text().splitlines()[0]


def _append(run: Path, line: str) -> None:
    with (run / "samples.jsonl").open("a") as f:
        f.write(line + "\n")
        f.write(_first_sample(run) + "\n")  # not the last line: that one may be cut short by a crash


def _set_meta(**fields: Any) -> Any:
    def corrupt(run: Path) -> None:
        meta = json.loads((run / "run.json").read_text())
        meta.update(fields)
        (run / "run.json").write_text(json.dumps(meta))

    return corrupt


CORRUPTIONS = {
    "non-utf8-samples": (lambda run: (run / "samples.jsonl").write_bytes(b'{"a": "\xff\xfe"}\n' * 3), "not UTF-8"),
    "truncated-env": (lambda run: (run / "env" / "local.json").write_text('{"kernel": "6.'), "corrupt JSON"),
    "array-line": (_array_line, "not a JSON object"),
    "samples-a-directory": (_samples_dir, "not a file"),
    "run-json-a-list": (lambda run: (run / "run.json").write_text("[1, 2]\n"), "not a JSON object"),
    "schema-version-0": (_set_meta(schema_version=0), "schema_version 0"),
    "env-a-list": (lambda run: (run / "env" / "local.json").write_text("[]\n"), "not a JSON object"),
    "not-a-sample": (lambda run: _append(run, '{"a": 1}'), "is not a sample (no metric, target, value, workload)"),
    "value-not-a-number": (
        lambda run: _append(run, _first_sample(run).replace('"value": ', '"value": "x", "v": ')),
        "not a number",
    ),
}


@pytest.mark.local
@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_run_is_the_same_one_line_for_report_and_compare(name: str, finished_run: Path, tmp_path: Path) -> None:
    import shutil

    corrupt, expected = CORRUPTIONS[name]
    run = tmp_path / finished_run.name
    shutil.copytree(finished_run, run)
    corrupt(run)
    lines = []
    commands = [["report", str(run), "--format", "md"], ["report", str(run)], ["compare", str(run)]]
    if importlib.util.find_spec("sqlalchemy"):  # the history extra: publish reads runs with the same reader
        commands.append(["publish", str(run), "--db", f"sqlite:///{tmp_path / 'h.db'}"])
    for args in commands:
        proc = bench(tmp_path, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert expected in line, line
        assert str(run) in line
        lines.append(line)
    assert len(set(lines)) == 1, lines


# ── 5. samples of instances that did not finish stay out of the statistics ─────────────────────────────────
DIES = '''
import os
from dataclasses import dataclass
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    flag: str = ""

@workload("test.dies", params=P)
def dies(p, ctx):
    """Two samples; the first instance to run then dies as a container killed mid-case would (SIGKILL)."""
    first = not os.path.exists(p.flag)
    open(p.flag, "a").close()
    for i in range(2):
        yield Sample("x", 100.0 * first + i, "s", "lower", "measure", i)
    if first:
        os.kill(os.getpid(), 9)
'''


@pytest.mark.local
def test_samples_of_a_failed_instance_are_kept_on_disk_but_not_counted(tmp_path: Path) -> None:
    (tmp_path / "dies.py").write_text(DIES)
    (tmp_path / "s.yaml").write_text(
        "name: dies\nbaseline: local\nmodules: [dies.py]\ndefaults: {instances: 3, repetitions: 2, warmup: 0}\n"
        f"workloads:\n  - {{name: test.dies, params: {{flag: {tmp_path / 'died'}}}}}\n"
    )
    proc = bench(tmp_path, "run", "s.yaml", "--out", "res", "--no-report", "--seed", "2")
    assert proc.returncode in (0, 1), proc.stderr  # 1: a case failed (where run says so)
    assert "Traceback" not in proc.stderr
    (run_dir,) = (tmp_path / "res").iterdir()
    on_disk = (run_dir / "samples.jsonl").read_text().splitlines()
    assert len(on_disk) == 6  # nothing the agent said is lost...
    run = load_run(run_dir)
    assert sorted(run.cases.status) == ["failed", "ok", "ok"]
    assert len(run.samples) == 4  # ...but the dead instance's two samples are not statistics
    assert len(set(run.samples.instance)) == 2
    assert run.samples.value.max() < 100
    summary = json.loads(bench(tmp_path, "report", str(run_dir), "--format", "json").stdout)
    text = json.dumps(summary)
    assert '"n_samples": 4' in text, text[:2000]


# ── 6. a SIGKILLed harness: the local agent ends itself, `cleanup` sweeps its workdir ──────────────────────
def agent_pids(tmpdir: Path) -> list[int]:
    """Agents started under `tmpdir` (their command line names their workdir's agent.pyz)."""
    from tests.integration.test_agent import processes_mentioning

    return [pid for pid in processes_mentioning(str(tmpdir)) if pid != os.getpid()]


@pytest.mark.local
def test_sigkilled_harness_leaves_no_local_agent_and_cleanup_sweeps_the_workdir(
    tmp_path: Path, reap: list[subprocess.Popen[str]]
) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    t, s = write(
        tmp_path,
        {"local": {"kind": "local"}},
        "name: kill\nbaseline: local\nmodules: [slow.py]\ndefaults: {instances: 1, repetitions: 1}\n"
        "workloads:\n  - {name: test.slow, params: {seconds: 120}}\n",
    )
    env_tmp = {"TMPDIR": str(tmpdir)}
    res = tmp_path / "res"
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchbed.cli", "run", str(s), "-t", str(t), "--out", str(res), "--no-report"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**cli_env(), **env_tmp},
    )
    reap.append(proc)
    try:
        wait_for("a sample from the local agent", lambda: "test.slow" in samples_text(res))
        assert agent_pids(tmpdir)
        proc.kill()
        proc.communicate(timeout=30)
        wait_for("the orphaned agent to end itself", lambda: not agent_pids(tmpdir), timeout=30)
        (workdir,) = tmpdir.iterdir()  # the harness could not remove it...
        assert workdir.name.startswith("benchbed-")
        swept = subprocess.run(
            [sys.executable, "-m", "benchbed.cli", "cleanup", "-t", str(t)],  # local only: no engine swept
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**cli_env(), **env_tmp},
            check=False,
        )
        assert swept.returncode == 0, swept.stderr
        assert f"removed workdir {workdir}" in swept.stdout, swept.stdout
        assert list(tmpdir.iterdir()) == []  # ...`benchbed cleanup` does
    finally:
        for pid in agent_pids(tmpdir):
            os.kill(pid, 9)


# ── 7. secrets: env keys are recorded, their values only where marked safe ─────────────────────────────────
SECRET = "s3cr3t-Val-8d1f"
ENVLEN = '''
import os
from benchbed.workloads import Sample, workload

@workload("test.envlen")
def envlen(p, ctx):
    """How long the API_TOKEN the target was given is: proof it arrived, without recording it."""
    yield Sample("len", float(len(os.environ.get("API_TOKEN", ""))), "chars", "higher", "measure", 0)
'''


@pytest.mark.docker
def test_env_values_reach_the_container_but_never_the_results_reports_or_logs(tmp_path: Path) -> None:
    image = dockerd.required_image()
    env = {"API_TOKEN": SECRET, "MODE": "fast"}
    t, s = write(
        tmp_path,
        {"box": {"kind": "docker", "image": image, "pull": "never", "env": env, "env_safe": ["MODE"]}},
        "name: secret\nbaseline: box\nmodules: [envlen.py]\ndefaults: {instances: 1, repetitions: 1, warmup: 0}\n"
        "workloads:\n  - {name: test.envlen}\n",
    )
    (tmp_path / "envlen.py").write_text(ENVLEN)
    proc = bench(tmp_path, "run", str(s), "-t", str(t), "--out", "res", "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "res").iterdir()
    assert list(load_run(run_dir).samples.value) == [len(SECRET)]  # the container got it
    recorded = json.loads((run_dir / "run.json").read_text())["targets"]["box"]["env"]
    assert recorded == {"API_TOKEN": "<redacted>", "MODE": "fast"}
    md = bench(tmp_path, "report", str(run_dir), "--format", "md")
    for path in [*run_dir.rglob("*"), *(tmp_path / "reports").glob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    for text in (proc.stdout, proc.stderr, md.stdout, md.stderr):
        assert SECRET not in text


# ── 8. hostile Markdown: `compare --markdown` escapes like `report --format md` ────────────────────────────
EVIL_MOD = '''
from dataclasses import dataclass
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    tag: str = ""

@workload("test.evil", params=P)
def evil(p, ctx):
    """Hostile metric and unit names."""
    for i in range(3):
        yield Sample("<script>alert(1)</script>", 1.0 + i, "<b>u</b>|x", "lower", "measure", i)
'''
HOSTILE = ("<script", "<img", "<b>")


@pytest.mark.local
def test_compare_markdown_escapes_every_string_it_did_not_write(tmp_path: Path) -> None:
    import shutil

    (tmp_path / "evil.py").write_text(EVIL_MOD)
    t, s = write(
        tmp_path,
        {"local": {"kind": "local"}, "again": {"kind": "local"}},
        "name: evil\nbaseline: local\nmodules: [evil.py]\ndefaults: {instances: 3, repetitions: 3, warmup: 0}\n"
        "workloads:\n  - {name: test.evil, params: {tag: '<img src=x onerror=alert(2)>'}}\n",
    )
    proc = bench(tmp_path, "run", str(s), "-t", str(t), "--out", "res", "--no-report", "--seed", "6")
    assert proc.returncode == 0, proc.stderr
    (made,) = (tmp_path / "res").iterdir()
    run = tmp_path / "res" / "r<img src=y onerror=alert(3)>"  # a directory name is the user's text too
    shutil.move(made, run)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "status": "incomplete"}))  # so a note names the run
    out = tmp_path / "summary.md"
    cmp = bench(tmp_path, "compare", str(run), "--markdown", str(out))
    assert cmp.returncode in (0, 1), cmp.stderr
    text = out.read_text()
    assert "&lt;script&gt;" in text
    assert "&lt;img src=y" in text  # the run's name, in the note and the environment heading
    for raw in HOSTILE:
        assert raw not in text, [line for line in text.splitlines() if raw in line]
    report = bench(tmp_path, "report", str(run), "--format", "md").stdout
    assert "&lt;script&gt;" in report
    for raw in HOSTILE:
        assert raw not in report
