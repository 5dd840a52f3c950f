"""`benchbed import` / `benchbed export`: registered on the main Typer app by `register` (kept out of cli.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the interop commands to `app`."""
