"""Builds the agent zipapp deterministically: same sources → same bytes → same sha256 on every target."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import benchbed

PKG_ROOT = Path(benchbed.__file__).resolve().parent
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
MAIN = "from benchbed.agent.main import main\nraise SystemExit(main())\n"


@dataclass(frozen=True)
class Agent:
    path: Path
    sha256: str
    size: int


def _sources(user_modules: Sequence[Path]) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = [("__main__.py", MAIN.encode())]
    files.append(("benchbed/__init__.py", (PKG_ROOT / "__init__.py").read_bytes()))
    for sub in ("agent", "workloads"):
        for path in sorted((PKG_ROOT / sub).glob("*.py")):
            files.append((f"benchbed/{sub}/{path.name}", path.read_bytes()))
    names = []
    for mod in user_modules:
        names.append(mod.stem)
        files.append((f"benchbed_user/{mod.stem}.py", mod.read_bytes()))
    init = f"MODULES = {tuple(names)!r}\n"
    files.append(("benchbed_user/__init__.py", init.encode()))
    return sorted(files)


def build_agent(out_dir: Path, user_modules: Sequence[Path] = ()) -> Agent:
    """Write agent.pyz into out_dir. Zip entries get a fixed timestamp so the hash depends on content alone."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in _sources(user_modules):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    payload = b"#!/usr/bin/env python3\n" + buf.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "agent.pyz"
    path.write_bytes(payload)
    return Agent(path, hashlib.sha256(payload).hexdigest(), len(payload))
