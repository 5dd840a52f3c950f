"""Small file helpers shared by import and export: all-or-nothing writes, readable targets' names."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from benchbed.config import NAME_PATTERN
from benchbed.errors import ConfigError, ResultsFormatError


def write_atomic(dest: Path, data: bytes) -> Path:
    """Write `dest` through a temp file in the same directory and a rename: readers (and a Ctrl-C) never see a
    half-written file, and a failure leaves nothing behind."""
    parent = dest.parent
    if not parent.is_dir():
        raise ResultsFormatError(f"{dest}: directory {parent} does not exist", hint="create it or pick another path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise ResultsFormatError(f"{dest}: cannot write here ({err.strerror or err})") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(dest)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise ResultsFormatError(f"{dest}: cannot write ({err.strerror or err})") from err
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    return dest


def check_target_name(name: str, option: str = "--target") -> str:
    if not re.match(NAME_PATTERN, name):
        raise ConfigError(f"{option} {name!r}: not a valid target name (letters, digits, '_', '.', '-')")
    return name


def safe_name(text: str, fallback: str) -> str:
    """A target name made from free text (a host name in a foreign file)."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", text).strip("._-")[:63]
    return name if name and re.match(NAME_PATTERN, name) else fallback
