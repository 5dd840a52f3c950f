"""`import benchbed` (and the CLI, config and runner) must not import heavy or optional libraries."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("paramiko", "docker", "libvirt", "torch", "cupy", "pynvml")


def test_no_heavy_imports() -> None:
    code = (
        "import sys, benchbed, benchbed.cli, benchbed.config, benchbed.runner, benchbed.results\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_agent_side_is_stdlib_only() -> None:
    """Workload modules run inside targets that may have nothing but python3."""
    code = (
        "import sys; before = set(sys.modules)\n"
        "from benchbed.workloads import load_builtins; load_builtins()\n"
        "import benchbed.agent.main, benchbed.agent.fingerprint\n"
        "third = {m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names) - {'benchbed'}\n"
        "print(','.join(sorted(third)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
