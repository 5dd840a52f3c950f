"""Builds the agent zipapp deterministically: same sources → same bytes → same sha256 on every target.

Besides benchbed's own modules and the suite's custom modules it can carry *bundles*: directories a workload needs
inside the target (a pytest-benchmark suite), stored under their archive folder name with sorted entries and fixed
timestamps, so the agent's sha256 covers them too.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import benchbed

PKG_ROOT = Path(benchbed.__file__).resolve().parent
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
MAIN = "from benchbed.agent.main import main\nraise SystemExit(main())\n"
MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # the agent is copied into every instance: a data set does not belong in it
SKIP_DIRS = frozenset({"__pycache__"})
SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Agent:
    path: Path
    sha256: str
    size: int


def bundle_files(directory: Path) -> list[tuple[str, Path]]:
    """(relative POSIX name, file) for every file to ship from `directory`, sorted; skips __pycache__, bytecode and
    dotfiles (.git, .pytest_cache, editor state). ValueError when the total is over MAX_BUNDLE_BYTES."""
    out: list[tuple[str, Path]] = []
    total = 0
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") or part in SKIP_DIRS for part in rel.parts) or path.suffix in SKIP_SUFFIXES:
            continue
        if not path.is_file():
            continue
        total += path.stat().st_size
        if total > MAX_BUNDLE_BYTES:
            raise ValueError(
                f"{directory} holds more than {MAX_BUNDLE_BYTES // 2**20} MiB of files (at {rel.as_posix()}); it is "
                "shipped inside the agent to every instance: keep only the benchmark code there"
            )
        out.append((rel.as_posix(), path))
    return out


def _sources(user_modules: Sequence[Path], bundles: Mapping[str, Path]) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = [("__main__.py", MAIN.encode())]
    for top in ("__init__.py", "protocol.py"):
        files.append((f"benchbed/{top}", (PKG_ROOT / top).read_bytes()))
    for sub in ("agent", "workloads"):
        for path in sorted((PKG_ROOT / sub).glob("*.py")):
            files.append((f"benchbed/{sub}/{path.name}", path.read_bytes()))
    names = []
    for mod in user_modules:
        names.append(mod.stem)
        files.append((f"benchbed_user/{mod.stem}.py", mod.read_bytes()))
    init = f"MODULES = {tuple(names)!r}\n"
    files.append(("benchbed_user/__init__.py", init.encode()))
    for folder, directory in bundles.items():
        files.extend((f"{folder}/{rel}", path.read_bytes()) for rel, path in bundle_files(directory))
    return sorted(files)


def build_agent(out_dir: Path, user_modules: Sequence[Path] = (), bundles: Mapping[str, Path] | None = None) -> Agent:
    """Write agent.pyz into out_dir. Zip entries get a fixed timestamp so the hash depends on content alone.
    `bundles` maps an archive folder (workloads' `bundle_name`) to the directory whose files go there."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in _sources(user_modules, bundles or {}):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    payload = b"#!/usr/bin/env python3\n" + buf.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "agent.pyz"
    path.write_bytes(payload)
    return Agent(path, hashlib.sha256(payload).hexdigest(), len(payload))
