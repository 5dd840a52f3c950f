"""`benchbed run --resume results/<run-id>`: continue an incomplete run in its own directory.

A run may be resumed only with what made it: the suite file (its text is in run.json), the same targets (each
target's recorded spec must match the one given now; the first difference is named), the same plan (re-planned
from the recorded seed and options, compared case by case) and the same agent bytes (rebuilt and hashed).
Instances with a case record (ok, skipped or failed) are kept; every other planned instance is run again as a
new *attempt*: its samples carry `attempt`, so what an unfinished try wrote before it died stays on disk and out of
the statistics (`results.finished_samples`). run.json lists each resumption under `resumed`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchbed.agent.build import build_agent
from benchbed.config import LoadedSuite
from benchbed.errors import ConfigError
from benchbed.plan import Case, Plan, make_plan
from benchbed.results import load_run, read_records
from benchbed.schema import AnyTarget


@dataclass(frozen=True)
class ResumePoint:
    """What a resumed run needs: the run's plan, the instances still to run, and the number of this attempt."""

    run_dir: Path
    plan: Plan
    todo: list[Case]
    attempt: int
    done: list[dict[str, Any]]  # case records kept (counted again at the end)
    entry: dict[str, Any]  # what run.json's `resumed` list gets for this resumption


def refuse(run_dir: Path, why: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"cannot resume {run_dir}: {why}", hint=hint)


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first key path where two JSON values differ (`image`, `env.MODE`), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if a == b else (path or "(whole value)")


def check_targets(run_dir: Path, recorded: dict[str, Any], specs: dict[str, AnyTarget]) -> None:
    for name, was in recorded.items():
        if name not in specs:
            raise refuse(run_dir, f"target {name!r} of the run is not in the targets given", "pass the same --targets")
        now = specs[name].recorded()
        where = _first_difference(was, now)
        if where:
            raise refuse(
                run_dir,
                f"target {name!r} differs from the run's at {where!r} "
                f"(run: {json.dumps(_at(was, where))}, now: {json.dumps(_at(now, where))})",
                "pass the targets file the run was started with",
            )


def _at(value: Any, path: str) -> Any:
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def prepare(run_dir: Path, loaded: LoadedSuite, specs: dict[str, AnyTarget]) -> ResumePoint:
    """Check that the run can be resumed with this suite and these targets; say what is left to run."""
    run = load_run(run_dir)
    meta = run.meta
    if meta.get("status") == "complete":
        raise refuse(run_dir, "the run is complete; there is nothing to resume")
    if meta.get("status") == "running":
        raise refuse(run_dir, "its harness is still running", "stop it first (Ctrl-C), or wait for it")
    was = (meta.get("suite") or {}).get("text")
    if loaded.source_text != was:
        where = _suite_difference(str(was or ""), loaded.source_text)
        raise refuse(run_dir, f"the suite {loaded.path} is not the text the run was started with ({where})")
    check_targets(run_dir, dict(meta.get("targets") or {}), specs)
    options = meta.get("options") or {}
    fresh = make_plan(
        loaded.suite, list(specs), seed=meta.get("seed"), only=options.get("only"), instances=options.get("repeat")
    )
    planned = [Case(**c) for c in meta.get("plan") or []]
    if [c.to_json() for c in fresh.cases] != [c.to_json() for c in planned[: len(fresh.cases)]]:
        raise refuse(run_dir, "the suite and targets now plan other instances than the run's plan")
    if fresh.pilot and "pilot" not in meta:
        raise refuse(run_dir, "it stopped during the pilot of `instances: auto`", "start the run again")
    _check_agent(run_dir, loaded, str((meta.get("agent") or {}).get("sha256")))
    records = read_records(run_dir / "cases.jsonl")
    attempt = len(meta.get("resumed") or []) + 1
    finished = {int(r["case"]) for r in records}
    todo = [c for c in planned if c.index not in finished]
    plan = Plan(planned, int(meta["seed"]), list(meta.get("targets") or fresh.targets), str(meta["baseline"]))
    entry = {
        "at": datetime.now(UTC).isoformat(),
        "attempt": attempt,
        "kept": len(finished),
        "rerun": [c.index for c in todo],
        "after_status": meta.get("status"),
    }
    return ResumePoint(run_dir, plan, todo, attempt, records, entry)


def _check_agent(run_dir: Path, loaded: LoadedSuite, sha: str) -> None:
    """The agent is rebuilt from the suite's modules now: its bytes must be the ones the run shipped."""
    staging = run_dir / ".agent-check"
    try:
        built = build_agent(staging, loaded.module_paths, loaded.bundles)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        shipped = hashlib.sha256((run_dir / "agent.pyz").read_bytes()).hexdigest()
    except OSError as err:
        raise refuse(run_dir, f"its agent.pyz cannot be read ({err.strerror or err})", "start a new run") from err
    if shipped != sha:
        raise refuse(run_dir, "its agent.pyz is not the agent the run recorded (sha256 differs)")
    if built.sha256 != sha:
        raise refuse(
            run_dir,
            f"the agent built now (sha256 {built.sha256[:12]}…) is not the run's ({sha[:12]}…)",
            "benchbed or the suite's modules changed since the run; start a new run",
        )


def check_options(run_dir: Path, meta: dict[str, Any], given: dict[str, Any]) -> None:
    """Options given with --resume (--repeat, --only, --seed) must be the run's own: a resumed run keeps its plan,
    so another value would be silently ignored."""
    recorded = {**(meta.get("options") or {}), "seed": meta.get("seed")}
    for name, value in given.items():
        if value is not None and value != recorded.get(name):
            raise refuse(
                run_dir,
                f"--{name} {value} is not the run's ({'none' if recorded.get(name) is None else recorded[name]})",
                f"a resumed run keeps its plan: leave out --{name}",
            )


def _suite_difference(was: str, now: str) -> str:
    """Where the suite text differs from the run's, as `line N: run '…', now '…'`."""
    old, new = was.splitlines(), now.splitlines()
    for i in range(max(len(old), len(new))):
        a, b = (old[i] if i < len(old) else None), (new[i] if i < len(new) else None)
        if a != b:
            return f"line {i + 1}: run {json.dumps(a)}, now {json.dumps(b)}"
    return "line endings"


def from_cli(
    run_dir: Path, suite: str | None, targets: Path | None, options: dict[str, Any] | None = None
) -> tuple[LoadedSuite, dict[str, AnyTarget], ResumePoint]:
    """`run --resume`: the suite (given, else the run's own file), the targets (given, else the defaults), checked;
    `options` given on the command line must be the run's."""
    from benchbed.config import load_suite, load_targets, resolve_suite_path
    from benchbed.schema import DEFAULT_TARGETS

    meta = load_run(run_dir).meta
    check_options(run_dir, meta, options or {})
    path = resolve_suite_path(suite) if suite else Path(str((meta.get("suite") or {}).get("path")))
    loaded = load_suite(path)
    specs: dict[str, AnyTarget] = load_targets(targets) if targets else DEFAULT_TARGETS.expanded()
    return loaded, specs, prepare(run_dir, loaded, specs)
