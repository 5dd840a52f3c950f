"""Stack digest: proof of which userland bytes a workload actually ran on.

A ratio between two targets measures the boundary only if both ran the same interpreter and libraries. Rather
than trust an image name, the agent hashes what its own process has mapped *after* the workload ran:
the interpreter executable and every file-backed mapping in /proc/self/maps — libpython, numpy's BLAS, torch's
shared objects, whatever the workload pulled in. GPU driver libraries (libcuda, libnvidia-*) come from the host
in a container and from the guest in a VM, so they are listed apart as the driver and kept out of the digest.

Hashing hundreds of MB per instance would dominate a cheap instance, so an optional cache file maps
(device, inode, size, mtime, ctime) to a file's sha256; a changed file gets a new key and is hashed again.
Stdlib only: this runs inside the target.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# user-space parts of the GPU driver: they follow the host (container) or the guest (VM), not the stack
DRIVER_PREFIXES = ("libcuda.", "libcudadebugger.", "libnvidia-", "libnvcuvid.", "libnvoptix.", "libnvrtc-builtins")
CHUNK = 1 << 20
# derived indexes, not code: ldconfig rewrites the loader cache when a driver is injected (chroot, nvidia runtime)
NOT_STACK = frozenset({"/etc/ld.so.cache"})


def mapped_files(maps_text: str, exclude: Iterable[str] = ()) -> list[str]:
    """Distinct regular files mapped into the process, in order of first appearance.

    Pseudo-mappings ([heap], [vdso]), anonymous memory, deleted files, device nodes and anything under an
    `exclude` prefix (the agent's own workdir and scratch dir, whose names differ per instance) are left out.
    """
    skip = tuple(p.rstrip("/") + "/" for p in exclude if p)
    seen: dict[str, None] = {}
    for line in maps_text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6:
            continue
        path = fields[5]
        if not path.startswith("/") or path.endswith(" (deleted)") or path.startswith(("/dev/", "/memfd:")):
            continue
        if path in NOT_STACK or (skip and path.startswith(skip)):
            continue
        seen.setdefault(path, None)
    return list(seen)


def is_driver(path: str) -> bool:
    return Path(path).name.startswith(DRIVER_PREFIXES)


class HashCache:
    """sha256 per file, keyed by (device, inode, size, mtime, ctime): a stale entry can never match a changed file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, str] = {}
        self.dirty = False
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self.entries = {str(k): str(v) for k, v in loaded.items()}

    def sha256(self, file: str) -> str | None:
        try:
            st = Path(file).stat()
        except OSError:
            return None
        key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        hit = self.entries.get(key)
        if hit is not None:
            return hit
        h = hashlib.sha256()
        try:
            with Path(file).open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
        except OSError:
            return None
        self.entries[key] = h.hexdigest()
        self.dirty = True
        return self.entries[key]

    def save(self) -> None:
        """Best effort, written whole (temp + rename): a cache that cannot be written only costs time."""
        if self.path is None or not self.dirty:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.entries), encoding="utf-8")
            tmp.replace(self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()


def combine(files: dict[str, str]) -> str:
    """One digest over (path, sha256) pairs, independent of mapping order."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(f"{files[path]}  {path}\n".encode())
    return h.hexdigest()


def stack_digest(
    maps_text: str | None = None, exclude: Iterable[str] = (), cache: Path | None = None
) -> dict[str, Any]:
    """The `stack` record: digest, the hashed files, the driver files apart, and what could not be read."""
    if maps_text is None:
        try:
            maps_text = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            return {"digest": None, "reason": f"cannot read /proc/self/maps: {err.strerror}"}
    hashes = HashCache(cache)
    interpreter = os.path.realpath(sys.executable)
    candidates = [interpreter, *(f for f in mapped_files(maps_text, exclude) if f != interpreter)]
    files: dict[str, str] = {}
    driver: dict[str, str] = {}
    unreadable: list[str] = []
    for path in candidates:
        sha = hashes.sha256(path)
        if sha is None:
            unreadable.append(path)
        elif is_driver(path):
            driver[path] = sha
        else:
            files[path] = sha
    hashes.save()
    return {
        "digest": combine(files),
        "interpreter": interpreter,
        "files": files,
        "driver": driver,
        "unreadable": unreadable,
    }
