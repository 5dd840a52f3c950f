"""The CLI's two consoles and its one error format, shared by every command module (cli, interop.commands)."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from benchbed.errors import BenchbedError

out = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(err: BenchbedError) -> NoReturn:
    """One line on stderr, exit code 2: how every BenchbedError ends a command (never a traceback)."""
    err_console.print(f"benchbed: error: {err}", markup=False, soft_wrap=True)
    raise typer.Exit(2)
