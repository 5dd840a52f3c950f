"""A target whose Python binding is not installed: one line naming what to install, exit 2, before any case runs.

The libvirt binding is an sdist compiled against libvirt, so a plain `pip install benchbed` (or `make demo` on a
machine without libvirt-dev) leaves it out; the line must name the system packages too, not only the extra.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# what an environment without the module looks like to `import` (the binding may well be installed here)
CLI = (
    "import sys; sys.modules[{module!r}] = None\n"
    "from benchbed.cli import main; sys.argv = ['benchbed'] + sys.argv[1:]; main()"
)


@pytest.mark.parametrize(
    ("kind", "module", "spec", "needs"),
    [
        ("libvirt", "libvirt", "{kind: libvirt, image: /none.raw}", "apt-get install libvirt-dev pkg-config gcc"),
        ("docker", "docker", "{kind: docker, image: nonexistent}", "pip install 'benchbed[docker]'"),
    ],
)
def test_missing_binding_is_one_line_exit_2(tmp_path: Path, kind: str, module: str, spec: str, needs: str) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text(f"targets:\n  local: {{kind: local}}\n  box: {spec}\n")
    args = ["run", "--targets", str(targets), "--only", "util.noop", "--out", str(tmp_path / "results"), "--no-report"]
    proc = subprocess.run(
        [sys.executable, "-c", CLI.format(module=module), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"target 'box' (kind {kind}) unavailable: Python module {module!r} is not installed" in line
    assert needs in line
    assert f"pip install 'benchbed[{kind}]'" in line
    assert not (tmp_path / "results").exists()  # refused before the run began: not even the baseline ran
