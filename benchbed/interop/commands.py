"""`benchbed import` / `benchbed export`: registered on the main Typer app by `register` (kept out of cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchbed.console import fail, out
from benchbed.errors import BenchbedError, ConfigError

_fail = fail


def _echo(line: str) -> None:
    out.print(line, markup=False, soft_wrap=True)


def import_cmd(
    files: Annotated[
        list[Path], typer.Argument(help="pytest-benchmark JSON files (pytest --benchmark-json=FILE), one per instance")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Results directory the run is written into")] = Path("results"),
    target: Annotated[
        str | None, typer.Option("--target", help="Target name for these numbers (default: the file's host name)")
    ] = None,
) -> None:
    """Read pytest-benchmark JSON files into a new run (workload `pytest`, one instance per file), for `benchbed
    report` / `compare`."""
    from benchbed.interop.pbjson import import_run

    try:
        run_dir = import_run(files, out_dir, target)
    except BenchbedError as err:
        _fail(err)
    _echo(f"imported {len(files)} file(s) → {run_dir}")
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    for line in meta.get("imported", {}).get("warnings", []):
        _echo(f"warning: {line}")


def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="results/<run-id> directory")],
    parquet: Annotated[Path | None, typer.Option("--parquet", help="Write every sample to this Parquet file")] = None,
    pytest_benchmark: Annotated[
        Path | None,
        typer.Option("--pytest-benchmark", help="Write a pytest-benchmark JSON (time metrics of one target)"),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="--pytest-benchmark: which target (default: the baseline)")
    ] = None,
) -> None:
    """Export a run: samples as Parquet (notebooks) and/or a file `pytest-benchmark compare` reads."""
    try:
        if parquet is None and pytest_benchmark is None:
            raise ConfigError("nothing to export", hint="pass --parquet FILE and/or --pytest-benchmark FILE")
        if parquet is not None:
            from benchbed.interop.parquet import export_parquet

            path, rows = export_parquet(run_dir, parquet)
            _echo(f"parquet: {path} ({rows} samples)")
        if pytest_benchmark is not None:
            from benchbed.interop.pbjson import export_run

            path, doc = export_run(run_dir, pytest_benchmark, target)
            info = doc["benchbed"]
            _echo(f"pytest-benchmark: {path} ({len(doc['benchmarks'])} benchmarks of target {info['target']!r})")
            if info["skipped"]:
                _echo(f"  left out (not a time unit): {', '.join(info['skipped'])}")
    except BenchbedError as err:
        _fail(err)


def register(app: typer.Typer) -> None:
    """Add the interop commands to `app`."""
    app.command("import")(import_cmd)
    app.command("export")(export_cmd)
