"""The `benchbed` command. The only module that prints; BenchbedError ▸ one line on stderr, exit code 2."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from benchbed.console import err_console, fail, out
from benchbed.errors import BenchbedError
from benchbed.history import commands as history  # light: SQLAlchemy is imported only when a command needs it
from benchbed.progress import Progress as _Progress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="What does this isolation boundary cost my GPU workload?",
)
workloads_app = typer.Typer(no_args_is_help=True, help="Built-in and custom workloads.")
targets_app = typer.Typer(no_args_is_help=True, help="Target inventories.")
app.add_typer(workloads_app, name="workloads")
app.add_typer(targets_app, name="targets")
_fail = fail


Parallel = Annotated[
    int,
    typer.Option(
        "--parallel",
        "-j",
        min=1,
        help="Run up to N machines at once (SSH hosts; controller-hosted targets count as one machine)",
    ),
]
OutDir = Annotated[Path, typer.Option("--out", help="Results store")]
Repeat = Annotated[int | None, typer.Option("--repeat", min=1, help="Instances per target and case")]
Only = Annotated[str | None, typer.Option("--only", help="Glob on workload names, e.g. 'cpu.*'")]
Seed = Annotated[int | None, typer.Option("--seed", help="Interleaving seed")]
ReportFlag = Annotated[bool, typer.Option("--report/--no-report", help="Render the HTML report at the end")]


@app.command()
def run(
    suite: Annotated[str | None, typer.Argument(help="Suite file or shipped suite name (default: quick)")] = None,
    targets: Annotated[Path | None, typer.Option("--targets", "-t", help="Targets file")] = None,
    out_dir: OutDir = Path("results"),
    repeat: Repeat = None,
    only: Only = None,
    seed: Seed = None,
    report: ReportFlag = True,
    parallel: Parallel = 1,
    publish: history.PublishOpt = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue an incomplete run (results/<run-id>): same suite, targets")
    ] = None,
) -> None:
    """Run a suite on its targets and write results/<run-id>/ (or, with --resume, finish an incomplete one).
    Exit 0: every case ok or skipped, 1: a case failed (results, report and any publish are still done), 2: bad
    input, 130: interrupted."""
    if publish is not None:
        history.before_run(publish)  # masks the password in the argv run.json records; an unreachable db fails now
    run_dir, failed = _execute(
        suite, targets, None, out_dir=out_dir, repeat=repeat, only=only, seed=seed, report=report, parallel=parallel,
        resume=resume,
    )  # fmt: skip
    if publish is not None:
        history.publish_after(run_dir, publish)
    _exit_if_failed(failed)


@app.command()
def demo(
    out_dir: OutDir = Path("results"),
    repeat: Repeat = None,
    only: Only = None,
    seed: Seed = None,
    report: ReportFlag = True,
    container: Annotated[
        bool, typer.Option("--container/--no-container", help="Add a container when Docker and the test image are up")
    ] = True,
) -> None:
    """The shipped `demo` suite on this host: the plain process (baseline) against the same process in fresh Linux
    namespaces, plus a container when a Docker engine and the test image are there. Ends with the report path."""
    from benchbed.demo import SUITE, demo_targets

    found = demo_targets(container=container)
    for note in found.notes:
        out.print(f"demo: {note}", markup=False, soft_wrap=True)
    _, failed = _execute(SUITE, None, found.specs, out_dir=out_dir, repeat=repeat, only=only, seed=seed, report=report)
    _exit_if_failed(failed)


def _exit_if_failed(failed: int) -> None:
    if failed:  # CI must not go green on a run whose cases failed; skips are not failures (README: exit codes)
        raise typer.Exit(1)


def _execute(
    suite: str | None,
    targets: Path | None,
    given: dict[str, Any] | None,
    *,
    out_dir: Path,
    repeat: int | None,
    only: str | None,
    seed: int | None,
    report: bool,
    parallel: int = 1,
    resume: Path | None = None,
) -> tuple[Path, int]:
    """Load, plan, sweep, run, then print the results line and (unless --no-report) `report: PATH`; returns the run
    directory and how many cases failed."""
    from benchbed.config import load_suite, load_targets, resolve_suite_path
    from benchbed.plan import make_plan
    from benchbed.results import check_store, new_run_id
    from benchbed.runner import Runner
    from benchbed.schema import DEFAULT_TARGETS

    progress = _Progress()
    runner: Runner | None = None
    try:
        options = {"only": only, "repeat": repeat}
        if resume is not None:
            from benchbed.resume import from_cli

            loaded, specs, point = from_cli(resume, suite, targets, {**options, "seed": seed})
            progress.done = len(point.done)
            runner = Runner(loaded, specs, point.plan, resume.parent, resume.name, progress, parallel, resume=point)
        else:
            loaded = load_suite(resolve_suite_path(suite))
            specs = given if given is not None else (load_targets(targets) if targets else DEFAULT_TARGETS.expanded())
            plan = make_plan(loaded.suite, list(specs), seed=seed, only=only, instances=repeat)
            run_id = new_run_id(loaded.suite.name)
            runner = Runner(loaded, specs, plan, out_dir, run_id, progress, parallel, options=options)
        plan = runner.plan
        check_store(runner.run_dir.parent)  # refused before anything is swept or started
        from benchbed.cleanup import sweep

        for line in sweep(specs[name] for name in plan.targets):
            out.print(f"removed leftover {line}", markup=False)
        try:
            runner.execute()
        finally:
            progress.stop()
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):  # torn down already: a second one must not cut this exit short
            signal.signal(sig, signal.SIG_IGN)
        err_console.print(
            "benchbed: interrupted; finished samples are kept and the run is marked incomplete"
            + (f"; continue it with: benchbed run --resume {runner.run_dir}" if runner is not None else ""),
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    except BenchbedError as err:
        _fail(err)
    c = runner.counts
    out.print(f"results: {runner.run_dir}  ({c['ok']} ok, {c['skipped']} skipped, {c['failed']} failed)", markup=False)
    for name, why in runner.failed_targets.items():
        out.print(f"  failed on {name}: {why}", markup=False, soft_wrap=True)
    if report:
        _render(runner.run_dir, Path("reports") / f"{runner.run_dir.name}.html")
    return Path(runner.run_dir), c["failed"]


def _render(run_dirs: Path | list[Path], dest: Path | None, *, fmt: str = "html", plotly: str = "inline") -> None:
    """Render run(s) to `dest` (default reports/<run-id>.html; Markdown and JSON go to stdout)."""
    from benchbed.report.merge import combine, load_runs
    from benchbed.report.render import check_options, default_path, paused_gc, render, write_text

    paths = [run_dirs] if isinstance(run_dirs, Path) else run_dirs
    try:
        check_options(fmt, plotly)
        with paused_gc():
            text = render(combine(load_runs(paths)), fmt, plotly=plotly)
        if dest is None and fmt in ("md", "json"):
            sys.stdout.write(text)
            return
        path = write_text(text, dest or default_path([p.name for p in paths], fmt))
    except BenchbedError as err:
        _fail(err)
    out.print(f"report: {path}", markup=False)


@app.command()
def cleanup(
    targets: Annotated[
        Path | None, typer.Option("--targets", "-t", help="Sweep the engines and SSH hosts these targets use")
    ] = None,
    docker_host: Annotated[str | None, typer.Option("--docker-host", help="Docker engine URL")] = None,
    libvirt_uri: Annotated[str | None, typer.Option("--libvirt-uri", help="libvirt URI (VMs and overlays)")] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Also remove objects of runs that still look alive")
    ] = False,
) -> None:
    """Remove containers, VMs, overlays and workdirs (here and on SSH hosts) left by runs whose harness is gone."""
    from benchbed.cleanup import cleanup_specs, sweep
    from benchbed.config import load_targets

    try:
        specs = list(load_targets(targets).values()) if targets else []
        endpoints = {"docker": docker_host, "libvirt": libvirt_uri}
        specs += cleanup_specs(endpoints, targets_given=targets is not None)
        removed = sweep(specs, everything=everything, strict=True)
    except BenchbedError as err:
        _fail(err)
    for line in removed:
        out.print(f"removed {line}", markup=False)
    out.print(f"cleanup: {len(removed)} object(s) removed", markup=False)


@app.command()
def report(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="results/<run-id> directories; several are merged into one report")
    ],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File to write (default: reports/<run-id>.html; md/json: stdout)"),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="html, md (Markdown) or json (the summary table)")
    ] = "html",
    plotly: Annotated[
        str, typer.Option("--plotly", help="inline: embed plotly.js (offline); cdn: load it from cdn.plot.ly")
    ] = "inline",
) -> None:
    """Render a report of one run, or of several runs merged: one self-contained HTML page, Markdown or JSON."""
    _render(run_dirs, output, fmt=fmt, plotly=plotly)


@workloads_app.command("list")
def workloads_list() -> None:
    """List the built-in workloads and their parameters."""
    import dataclasses

    from benchbed.workloads import load_builtins

    table = Table("workload", "parameters (defaults)", "about")
    for name, info in sorted(load_builtins().items()):
        params = ", ".join(
            f"{f.name}=(required)" if f.default is dataclasses.MISSING else f"{f.name}={f.default!r}"
            for f in dataclasses.fields(info.params)
        )
        table.add_row(name, params, info.doc)
    out.print(table)


@targets_app.command("check")
def targets_check(file: Annotated[Path, typer.Argument(help="Targets YAML file")]) -> None:
    """Validate a targets file and list what it defines."""
    from benchbed.config import load_targets
    from benchbed.targets.base import CONTROLLER
    from benchbed.targets.registry import lane_of

    try:
        specs = load_targets(file)
    except BenchbedError as err:
        _fail(err)
    for name, spec in specs.items():
        lane = lane_of(spec)
        where = f" {lane}" if lane != CONTROLLER else ""
        out.print(f"{name}: {spec.kind}{where}", markup=False)
    out.print(f"{file}: {len(specs)} target(s) OK", markup=False)


def _parse_thresholds(items: list[str]) -> dict[str, float]:
    from benchbed.errors import ConfigError

    parsed: dict[str, float] = {}
    for item in items:
        pattern, sep, value = item.rpartition("=")
        try:
            parsed[pattern] = float(value)
        except ValueError:
            pattern = ""
        if not sep or not pattern or not 0 < parsed[pattern] < 1:
            raise ConfigError(f"--threshold {item!r}: expected GLOB=FRACTION, e.g. 'io.*=0.03'")
    return parsed


@app.command()
def compare(
    base: Annotated[Path, typer.Argument(help="Baseline run directory (results/<run-id>)")],
    new: Annotated[Path | None, typer.Argument(help="Run to judge; omit to compare two targets of BASE")] = None,
    base_target: Annotated[str | None, typer.Option("--base-target", help="Target on the base side")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Target on the new side")] = None,
    threshold: Annotated[
        list[str] | None, typer.Option("--threshold", help="GLOB=FRACTION on workload or workload:metric (repeatable)")
    ] = None,
    under_test: Annotated[
        list[str] | None, typer.Option("--under-test", help="Env fields expected to differ, globs (repeatable)")
    ] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Append Markdown ($GITHUB_STEP_SUMMARY)")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (regression = failure)")] = None,
    gab_json: Annotated[
        Path | None, typer.Option("--gab-json", help="Write PREFIX-bigger.json / PREFIX-smaller.json")
    ] = None,
    against: history.AgainstOpt = None,
    db: history.Db = None,
) -> None:
    """Judge NEW against BASE (or two targets of one run). Exit 0: no regression, 1: regression, 2: bad input."""
    from contextlib import ExitStack

    from benchbed.compare import HEADERS, summary_line, table_rows, write_outputs
    from benchbed.compare import compare as run_compare

    stack = ExitStack()  # --against: the last good run, rebuilt in a temporary directory while it is judged
    try:
        if against is not None:
            base, new = stack.enter_context(history.against_run(against, base, new, db)), base
        result = run_compare(
            base,
            new,
            base_target=base_target,
            target=target,
            thresholds=_parse_thresholds(threshold or []),
            under_test=under_test or None,
        )
        written = write_outputs(result, markdown=markdown, junit=junit, gab_prefix=gab_json)
    except BenchbedError as err:
        _fail(err)
    finally:
        stack.close()
    for label, changes in result.under_test.items():
        out.print(f"env {label}", markup=False)
        for e in changes:
            out.print(f"  {e.key}: {e.base} → {e.new}", markup=False)
        for e in result.warnings[label]:
            out.print(f"  [yellow]warning: not comparable: {e.key} differs ({e.base} → {e.new})[/]", soft_wrap=True)
    for note in result.notes:
        out.print(f"[yellow]warning: {note}[/]")
    for note in result.stack_notes:
        out.print(f"warning: not a boundary cost alone: {note}", markup=False, style="yellow")
    for note in result.expected:
        out.print(f"note: expected difference: {note}", markup=False, soft_wrap=True)
    for note in result.unfinished:
        out.print(f"note: unfinished: {note}", markup=False, soft_wrap=True)
    styles = {"regression": "bold red", "improvement": "green", "equivalent": "dim"}
    table = Table(*HEADERS)
    for verdict, cells in zip(result.verdicts["verdict"], table_rows(result), strict=True):
        table.add_row(*cells, style=styles.get(str(verdict)))
    out.print(table)
    out.print(summary_line(result), markup=False, style="bold red" if result.exit_code else "bold")
    for path in written:
        out.print(f"wrote {path}", markup=False)
    raise typer.Exit(result.exit_code)


@app.command()
def schema() -> None:
    """Print the JSON Schema of suite and targets files."""
    from benchbed.schema import json_schemas

    sys.stdout.write(json.dumps(json_schemas(), indent=2) + "\n")


def _register_extra_commands() -> None:
    from benchbed.interop.commands import register
    from benchbed.stackcli import register as register_stack

    register(app)
    register_stack(app)
    history.register(app)


_register_extra_commands()


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (CI runners, systemd, `timeout`) tears down like Ctrl-C: nothing provisioned is leaked."""
    raise KeyboardInterrupt


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()
