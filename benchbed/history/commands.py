"""`benchbed publish`, `accept`, `history`: registered on the main Typer app by `register` (kept out of cli.py).
`run --publish` and `compare --against last-good` call `publish_after` and `open_for_compare` from cli.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from benchbed.console import fail, out
from benchbed.errors import BenchbedError, MissingExtra
from benchbed.history.masking import mask_argv

if TYPE_CHECKING:
    from benchbed.history.engine import Database

_fail = fail
Db = Annotated[
    str | None,
    typer.Option("--db", help="Results database URL (postgresql://… or sqlite:///PATH); default $BENCHBED_DB, else "
                 "a SQLite file in your data directory", show_default=False),
]  # fmt: skip


def _echo(line: str) -> None:
    out.print(line, markup=False, soft_wrap=True)


def connect(url: str | None) -> Database:
    """Open (and migrate) the results database; a missing `history` extra is one line too."""
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        raise MissingExtra("the results database needs SQLAlchemy", hint="pip install 'benchbed[history]'") from None
    from benchbed.history.engine import open_db

    return open_db(url)


def publish_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(help="results/<run-id> directories")],
    db_url: Db = None,
    raw: Annotated[
        bool, typer.Option("--raw/--no-raw", help="Keep every raw sample (--no-raw: per-instance medians only)")
    ] = True,
) -> None:
    """Publish runs to the results database: one transaction each; a run already there adds nothing."""
    from benchbed.history.publish import publish

    try:
        db = connect(db_url)
        try:
            for run_dir in run_dirs:
                _echo(publish(db, run_dir, raw=raw).line(db))
        finally:
            db.close()
    except BenchbedError as err:
        _fail(err)


def publish_after(run_dir: Path, db_url: str) -> None:
    """`benchbed run --publish URL`: the run is on disk whatever happens here; a fault is one line and exit 2."""
    from benchbed.history.publish import publish

    try:
        db = connect(None if db_url == "default" else db_url)
        try:
            _echo(publish(db, run_dir).line(db))
        finally:
            db.close()
    except BenchbedError as err:
        out.print(f"the run is kept in {run_dir}; publish it later with `benchbed publish {run_dir}`", markup=False)
        _fail(err)


PublishOpt = Annotated[
    str | None,
    typer.Option("--publish", help="Then publish the run to this results database URL ('default': $BENCHBED_DB)"),
]
AgainstOpt = Annotated[
    str | None, typer.Option("--against", help="last-good: judge BASE against the last accepted run (--db)")
]


def before_run(db_url: str) -> None:
    """Before a run with --publish: run.json records the argv, so the password is masked there first; and a
    database that cannot be reached fails now, not after an hour of running."""
    import sys

    sys.argv = mask_argv(sys.argv)
    try:
        connect(None if db_url == "default" else db_url).close()
    except BenchbedError as err:
        _fail(err)


def accept_cmd(
    run: Annotated[str, typer.Argument(help="A run directory (published first if needed) or a published run id")],
    db_url: Db = None,
    revoke: Annotated[bool, typer.Option("--revoke", help="Withdraw the mark")] = False,
) -> None:
    """Mark a run known-good: `benchbed compare RUN --against last-good` judges later runs against it."""
    from benchbed.history.publish import publish
    from benchbed.history.query import set_accepted

    try:
        db = connect(db_url)
        try:
            run_id = run
            if Path(run).is_dir():
                done = publish(db, Path(run))
                run_id = done.run_id
                if done.added:
                    _echo(done.line(db))
            set_accepted(db, run_id, not revoke)
        finally:
            db.close()
    except BenchbedError as err:
        _fail(err)
    _echo(f"{run_id}: {'no longer accepted' if revoke else 'accepted (a last-good run)'}")


def history_cmd(
    target: Annotated[
        str, typer.Option("--target", "-t", help="Target name, glob ('gpu-*') or list (a,b); a group with --targets")
    ],
    workload: Annotated[str, typer.Option("--workload", "-w", help="Workload name, e.g. gpu.gemm")],
    metric: Annotated[str | None, typer.Option("--metric", "-m", help="Metric (needed when several)")] = None,
    params: Annotated[str | None, typer.Option("--params", help="Only this parameter set (JSON)")] = None,
    last: Annotated[int | None, typer.Option("--last", min=2, help="Only the last N runs of each series")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML page")] = None,
    db_url: Db = None,
    targets_file: Annotated[
        Path | None, typer.Option("--targets", help="Targets file: a group name in -t stands for its hosts")
    ] = None,
) -> None:
    """A metric's trend over runs: a table, environment changes marked, level shifts found (ruptures PELT)."""
    from benchbed.fileio import write_atomic
    from benchbed.history.query import trend
    from benchbed.history.table import HEADERS, table_rows

    try:
        if targets_file is not None:
            target = _expand_groups(target, targets_file)
        db = connect(db_url)
        try:
            tr = trend(db, target, workload, metric, params=params, last=last)
        finally:
            db.close()
        written = None
        if html is not None:
            from benchbed.history.page import render

            written = write_atomic(html, render(tr))
    except BenchbedError as err:
        _fail(err)
    table = Table(*HEADERS, title=f"{tr.workload} {tr.metric} [{tr.unit}, {tr.better} is better]")
    for row in table_rows(tr):
        table.add_row(*row, style="bold red" if row[-1] else None)
    out.print(table)
    for s in tr.series:
        for sh in s.shifts:
            near = s.coincides(sh)
            run_id = s.points["run_id"].iloc[sh.index]
            why = f"coincides with {near.text()}" if near else "no environment change there"
            _echo(f"level shift on {s.target}: {sh.change_pct:+.1f}% at run {run_id} ({why})")
        if not s.shifts:
            _echo(f"no level shift on {s.target} over {len(s.points)} runs ({tr.threshold_label} or more)")
    if written is not None:
        _echo(f"history: {written}")


def _expand_groups(target: str, path: Path) -> str:
    """`-t rack3 --targets lab.yaml`: a group of the targets file stands for its members (the names results use)."""
    from benchbed.config import load_targets
    from benchbed.yamlsrc import load_yaml

    load_targets(path)  # a bad file is its one located line
    groups = (load_yaml(path).data or {}).get("groups") or {}
    out = []
    for part in (p.strip() for p in target.split(",")):
        out += [str(h) for h in groups[part]["hosts"]] if part in groups else [part]
    return ",".join(out)


def register(app: typer.Typer) -> None:
    app.command("publish")(publish_cmd)
    app.command("accept")(accept_cmd)
    app.command("history")(history_cmd)


@contextmanager
def against_run(against: str, run_dir: Path, new: Path | None, db_url: str | None) -> Iterator[Path]:
    """`compare RUN --against last-good`: the base side as a temporary run directory (see `lastgood`)."""
    from benchbed.errors import ConfigError
    from benchbed.history.lastgood import AGAINST, last_good

    if against not in AGAINST:
        raise ConfigError(f"--against {against!r}: unknown", hint=f"one of {', '.join(AGAINST)}")
    if new is not None:
        raise ConfigError("--against takes one run: the run to judge", hint=f"benchbed compare {run_dir} --against")
    db = connect(db_url)
    try:
        with last_good(db, run_dir) as good:
            _echo(f"against: {good.name} (the last accepted run in {db.shown})")
            yield good
    finally:
        db.close()
