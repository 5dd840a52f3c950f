"""Small helpers shared by import and export: readable targets' names (writes go through `benchbed.fileio`)."""

from __future__ import annotations

import re

from benchbed.errors import ConfigError
from benchbed.schema import NAME_PATTERN


def check_target_name(name: str, option: str = "--target") -> str:
    if not re.match(NAME_PATTERN, name):
        raise ConfigError(f"{option} {name!r}: not a valid target name (letters, digits, '_', '.', '-')")
    return name


def safe_name(text: str, fallback: str) -> str:
    """A target name made from free text (a host name in a foreign file)."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", text).strip("._-")[:63]
    return name if name and re.match(NAME_PATTERN, name) else fallback
