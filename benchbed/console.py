"""The CLI's two consoles and its one error format, shared by every command module (cli, interop.commands)."""

from __future__ import annotations

import os
from typing import NoReturn

import typer
from rich.console import Console

from benchbed.errors import BenchbedError

PIPED_WIDTH = 10_000  # "no wrapping": a table is only as wide as its cells


def _console(*, stderr: bool = False) -> Console:
    """rich fits a terminal's width. Piped (a CI log, a file) it would wrap at 80 columns and cut every table cell
    into pieces, so there nothing wraps (unless COLUMNS says how wide): the table reads as in a terminal."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").strip().isdigit():
        console.width = PIPED_WIDTH
    return console


out = _console()
err_console = _console(stderr=True)


def fail(err: BenchbedError) -> NoReturn:
    """One line on stderr, exit code 2: how every BenchbedError ends a command (never a traceback)."""
    err_console.print(f"benchbed: error: {err}", markup=False, soft_wrap=True)
    raise typer.Exit(2)
