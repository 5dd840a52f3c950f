"""Workload `pytest`: runs a user's pytest-benchmark suite inside the target; each recorded round is a sample.

The suite's directory travels inside the agent zipapp (so its bytes are covered by the agent's sha256) and is
extracted into the scratch dir. pytest runs as a child of the agent with the target's own interpreter. How the
suite's knobs map onto pytest-benchmark's:

- `repetitions` → `--benchmark-min-rounds=N --benchmark-max-time=0`: exactly N recorded rounds per benchmark.
- `warmup` → `--benchmark-warmup=on --benchmark-warmup-iterations=W` (off when 0): pytest-benchmark runs the
  warm-up itself and records none of it, so there are no `warmup` samples.
- No `cold` sample either: pytest-benchmark calibrates (calls the function at least once) before its first
  recorded round, so a first-call time does not exist in its output and is never invented here.
- A round's value is pytest-benchmark's own: the round's time divided by its iterations, in seconds.

Stdlib-only: this module runs inside every target. `samples_from_json` is also what `benchbed import` uses.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import posixpath
import re
import shlex
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbed.workloads.base import Context, Sample, Skipped, workload

BUNDLE_ROOT = "benchbed_bundles"
TAIL_LINES = 15
SUMMARY = re.compile(r"\b(passed|failed|errors?|no tests ran)\b.* in [\d.]+s")
TIMEOUT_MARGIN = 0.1  # of the case's timeout_s, kept so pytest's tail can be reported before the agent is killed


@dataclass(frozen=True)
class PytestBench:
    path: str  # a directory, a file (bench.py) or a glob (benchmarks/*.py), relative to the suite file
    select: str = ""
    args: str = ""
    files: str = ""  # more files or globs inside `path`'s directory, space-separated (e.g. "bench.py perf/*.py")


GLOB_CHARS = frozenset("*?[")


def split_path(path: str, files: str = "") -> tuple[str, list[str]]:
    """(directory to ship, files/globs inside it for pytest to collect). `bench.py` or `benchmarks/*.py` ship their
    directory and name what to collect: files given by name are collected whatever the suite's `python_files`;
    a bare directory is collected by its own config's `python_files` (pytest's default: test_*.py, *_test.py)."""
    parts = posixpath.normpath(path.replace("\\", "/")).split("/")
    cut = next((i for i, part in enumerate(parts) if GLOB_CHARS & set(part)), None)
    if cut is None and parts[-1].endswith(".py"):
        cut = len(parts) - 1
    root = "/".join(parts[:cut]) if cut is not None else "/".join(parts)
    patterns = ["/".join(parts[cut:])] if cut is not None else []
    return (root or "."), patterns + shlex.split(files)


class PytestFailed(Exception):
    """pytest ran but did not produce benchmarks: the message carries the tail of its output."""


def bundle_name(path: str) -> str:
    """Archive folder for a suite directory, from the `path` parameter as written (controller and target agree)."""
    norm = posixpath.normpath(path.replace("\\", "/"))
    return f"{BUNDLE_ROOT}/{hashlib.sha256(norm.encode()).hexdigest()[:16]}"


def _agent_archive() -> Path | None:
    """The zipapp this agent runs from, or None when benchbed is imported from a source tree."""
    import benchbed

    archive = getattr(getattr(benchbed, "__loader__", None), "archive", None)
    return Path(archive) if archive else None


def _extract(path: str, dest: Path) -> Path:
    """Unpack the bundled suite into dest/<basename>, so test ids look the same in every target."""
    archive = _agent_archive()
    if archive is None:  # unpacked (development, in-process tests): the path is a directory here
        local = Path(path)
        if not local.is_dir():
            raise PytestFailed(f"pytest suite directory {path!r} not found (not running from an agent zipapp)")
        return local.resolve()
    prefix = bundle_name(path) + "/"
    out = dest / (posixpath.basename(posixpath.normpath(path)) or "suite")
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if not names:
            raise PytestFailed(f"pytest suite {path!r} is not bundled in this agent (built without it?)")
        for name in names:
            rel = name[len(prefix) :]
            if rel.startswith("/") or ".." in rel.split("/"):
                raise PytestFailed(f"unsafe path {name!r} in the agent bundle")
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
    return out


CONFIG_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def collect_targets(p: PytestBench, suite: Path) -> list[str]:
    """What pytest is asked to collect: the suite directory, or the files `path` / `files` name (globs expanded
    inside it, sorted); PytestFailed when a pattern matches nothing."""
    _, patterns = split_path(p.path, p.files)
    if not patterns:
        return [str(suite)]
    found: list[str] = []
    for pattern in patterns:
        matches = sorted(str(m) for m in suite.glob(pattern) if m.is_file())
        if not matches:
            raise PytestFailed(f"{pattern!r} matches no file in the pytest suite {split_path(p.path)[0]!r}")
        found += [m for m in matches if m not in found]
    return found


def collection_note(p: PytestBench, suite: Path) -> str:
    """One line on what pytest was asked to collect, for a run that selected no tests."""
    _, patterns = split_path(p.path, p.files)
    own = next((name for name in CONFIG_FILES if (suite / name).is_file()), None)
    rules = f"python_files from the suite's {own}" if own else "pytest's default python_files (test_*.py, *_test.py)"
    asked = f"the files {' '.join(patterns)}" if patterns else f"the directory {p.path!r} by {rules}"
    select = f", -k {p.select!r}" if p.select else ""
    hint = "" if patterns else "; benchmarks in other files (bench.py, benchmarks/*.py): name them in `path` or `files`"
    return f"pytest was asked to collect {asked}{select}{hint}"


def command(p: PytestBench, ctx: Context, suite: Path, json_out: Path) -> list[str]:
    """The pytest command line: recorded rounds and warm-up from the case, raw rounds saved in the JSON. A suite
    without a config file of its own gets an empty one, so no pytest.ini above it (in a target, or in the source
    tree when run unpacked) changes how it runs."""
    warm = ["--benchmark-warmup=on", f"--benchmark-warmup-iterations={ctx.warmup}"] if ctx.warmup else []
    argv = [sys.executable, "-m", "pytest", *collect_targets(p, suite), "-q", "-p", "no:cacheprovider"]
    argv.append(f"--rootdir={suite}")
    if not any((suite / name).is_file() for name in CONFIG_FILES):
        ini = ctx.scratch_dir / "benchbed-pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        argv += ["-c", str(ini)]
    argv += ["--benchmark-only", f"--benchmark-json={json_out}", "--benchmark-save-data"]
    argv += [f"--benchmark-min-rounds={ctx.repetitions}", "--benchmark-max-time=0"]
    argv += warm or ["--benchmark-warmup=off"]
    if p.select:
        argv += ["-k", p.select]
    return argv + shlex.split(p.args)


def _tail(text: str) -> str:
    """What a user needs from pytest's output: its error lines (`E ...`, `FAILED ...`, `ERROR ...`) and its final
    summary line — or, where there are none, the last lines (the benchmark table would otherwise hide the cause)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E ", "FAILED ", "ERROR "))]
    totals = [line for line in lines if SUMMARY.search(line)] or lines[-1:]
    picked = [*errors[-TAIL_LINES:], totals[-1]] if errors else lines[-TAIL_LINES:]
    return "\n".join(picked)[-3000:]


def _child_timeout(ctx: Context, started: float) -> float | None:
    """What is left of the case's limit, less a margin: pytest is stopped (and its tail reported) before the
    controller kills the whole agent."""
    if not ctx.timeout_s:
        return None
    return max(1.0, ctx.timeout_s * (1 - TIMEOUT_MARGIN) - (time.monotonic() - started))


@workload("pytest", params=PytestBench, needs=("pytest", "pytest_benchmark"), tags={"pytest", "interop"})
def pytest_bench(p: PytestBench, ctx: Context) -> Iterator[Sample]:
    """A pytest-benchmark suite (directory shipped in the agent); one sample per recorded round, in seconds."""
    started = time.monotonic()
    for mod, pkg in (("pytest", "python3-pytest"), ("pytest_benchmark", "python3-pytest-benchmark")):
        if importlib.util.find_spec(mod) is None:
            raise Skipped(f"{mod} is not installed for {sys.executable} in this target (install {pkg} or pip {mod})")
    suite = _extract(split_path(p.path)[0], ctx.scratch_dir / "suite")
    json_out = ctx.scratch_dir / "pytest-benchmark.json"
    argv = command(p, ctx, suite, json_out)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    timeout = _child_timeout(ctx, started)
    try:
        res = subprocess.run(
            argv, cwd=ctx.scratch_dir, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        raise PytestFailed(f"pytest did not finish within {timeout:.0f} s; its output ends:\n{_tail(out)}") from err
    if res.returncode != 0:
        if res.returncode == 5:
            raise PytestFailed(f"pytest selected no tests: {collection_note(p, suite)}")
        raise PytestFailed(f"pytest exited {res.returncode}; its output ends:\n{_tail(res.stdout + res.stderr)}")
    if not json_out.is_file():
        raise PytestFailed(f"pytest wrote no benchmark JSON; its output ends:\n{_tail(res.stdout + res.stderr)}")
    doc = json.loads(json_out.read_text(encoding="utf-8"))
    samples = list(samples_from_json(doc))
    if not samples:
        raise PytestFailed("pytest passed but recorded no benchmark (do the tests use the `benchmark` fixture?)")
    yield from samples


# ── pytest-benchmark JSON → samples (also used by `benchbed import`) ─────────────────────────────────────────────
SUMMARY_REASON = "summary only: pytest-benchmark's median of {rounds} rounds (JSON saved without --benchmark-save-data)"


def _benchmarks(doc: Any) -> list[dict[str, Any]]:
    """Check the shape of a pytest-benchmark document; ValueError names the first thing that is wrong."""
    if not isinstance(doc, dict):
        raise ValueError(f"top level is {type(doc).__name__}, expected an object with a 'benchmarks' list")
    benches = doc.get("benchmarks")
    if not isinstance(benches, list):
        raise ValueError("no 'benchmarks' list: not a pytest-benchmark JSON (--benchmark-json) file")
    for i, bench in enumerate(benches):
        if not isinstance(bench, dict) or not isinstance(bench.get("name"), str):
            raise ValueError(f"benchmarks[{i}]: missing 'name'")
        stats = bench.get("stats")
        if not isinstance(stats, dict):
            raise ValueError(f"benchmarks[{i}] ({bench['name']}): missing 'stats'")
        data = stats.get("data")
        if data is not None and not (isinstance(data, list) and all(_is_number(v) for v in data)):
            raise ValueError(f"benchmarks[{i}] ({bench['name']}): stats.data is not a list of numbers")
        if data is None and not _is_number(stats.get("median")):
            raise ValueError(f"benchmarks[{i}] ({bench['name']}): neither stats.data nor a numeric stats.median")
    return benches


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def short_data(doc: Any) -> list[str]:
    """Benchmarks whose raw `data` holds fewer values than their `rounds` (a trimmed file): "name: 4 of 38523"."""
    out = []
    for bench, metric in zip(_benchmarks(doc), metric_names(_benchmarks(doc)), strict=True):
        stats = bench["stats"]
        data, rounds = stats.get("data"), stats.get("rounds")
        if isinstance(data, list) and _is_number(rounds) and len(data) < rounds:
            out.append(f"{metric}: {len(data)} of {rounds:g}")
    return out


def metric_names(benches: list[dict[str, Any]]) -> list[str]:
    """A benchmark's `name` (test_sort[100]); its `fullname` where two files share a name."""
    names = [str(b["name"]) for b in benches]
    return [str(b.get("fullname") or n) if names.count(n) > 1 else n for b, n in zip(benches, names, strict=True)]


def samples_from_json(doc: Any) -> Iterator[Sample]:
    """pytest-benchmark JSON ▸ samples. Raw rounds (`stats.data`, from --benchmark-save-data) become one sample
    each; without them one sample per benchmark carries pytest-benchmark's median, marked in `reason` and labels,
    because inventing rounds from summary statistics would fake the distribution."""
    benches = _benchmarks(doc)
    version = str(doc.get("version", ""))
    for bench, metric in zip(benches, metric_names(benches), strict=True):
        stats = bench["stats"]
        labels: dict[str, Any] = {"fullname": bench.get("fullname"), "group": bench.get("group")}
        labels.update(iterations=stats.get("iterations", 1), pytest_benchmark=version)
        for key in ("params", "param", "extra_info", "options"):  # kept for a faithful export
            if bench.get(key):
                labels[key] = bench[key]
        data = stats.get("data")
        if data is not None:
            for i, value in enumerate(data):
                yield Sample(metric, float(value), "s", "lower", "measure", i, labels=labels)
        else:
            rounds = stats.get("rounds", "?")
            reason = SUMMARY_REASON.format(rounds=rounds)
            summary = {**labels, "summary": "median", "rounds": rounds}
            yield Sample(metric, float(stats["median"]), "s", "lower", "measure", 0, reason=reason, labels=summary)
