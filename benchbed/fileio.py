"""The one atomic writer: results, reports, interop files and `compare` outputs all go through it.

A temp file in the destination's directory, fsync, then rename: a reader (or a Ctrl-C, or a crash) sees the old file
or the new one, never half of one, and a failure leaves no temp file behind. Errors are one line (exit code 2).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from benchbed.errors import ResultsFormatError, StoreError

FULL = (errno.ENOSPC, errno.EDQUOT)


def store_error(path: Path, err: OSError, what: str = "results store") -> StoreError:
    """One line for a write the file system refused: full, read-only, or anything else it says."""
    why = err.strerror or str(err)
    if err.errno in FULL:
        return StoreError(f"{what} full: {path}: {why}", hint="free space or pick another --out")
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"{what} not writable: {path}: {why}", hint="pick another --out")
    return StoreError(f"{path}: cannot write here ({why})")


def write_atomic(
    dest: Path, data: bytes | str, *, make_parents: bool = False, append: bool = False, what: str = "disk"
) -> Path:
    """Replace `dest` with `data` all at once. `make_parents`: create missing directories (reports) instead of
    refusing (an export's destination is named by the user: a typo'd directory is an error). `append`: the new
    content is the old file's plus `data` (a Markdown summary file collecting several steps), still all at once."""
    payload = data.encode() if isinstance(data, str) else data
    parent = dest.parent
    if make_parents:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ResultsFormatError(f"{dest}: cannot create {parent} ({err.strerror or err})") from err
    elif not parent.is_dir():
        raise ResultsFormatError(f"{dest}: directory {parent} does not exist", hint="create it or pick another path")
    if append:
        try:
            payload = dest.read_bytes() + payload
        except FileNotFoundError:
            pass
        except OSError as err:
            raise ResultsFormatError(f"{dest}: cannot read it to append ({err.strerror or err})") from err
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise store_error(dest, err, what) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        mode = dest.stat().st_mode & 0o7777 if dest.exists() else 0o666 & ~current_umask()  # mkstemp makes 0600
        Path(tmp).chmod(mode)
        Path(tmp).replace(dest)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise store_error(dest, err, what) from err
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    return dest


def _read_umask() -> int:
    """The process umask, read once at import (reading it means setting it: not something to do while lanes
    create files in threads)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def current_umask() -> int:
    """The umask now: Linux shows it in /proc/self/status without changing it; elsewhere, the one read at import."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return UMASK


def write_json(dest: Path, data: Any, *, what: str = "disk") -> Path:
    """JSON the way every benchbed file is written: indented, sorted keys, one trailing newline."""
    return write_atomic(dest, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", what=what)
