"""scripts/gpu-validate without a GPU: every check is listed as skipped with its reason, the page is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchbed.gpuval import main as gv
from benchbed.gpuval.checks import CHECKS
from tests.conftest import REPO

TITLES = [title for _, title, _ in CHECKS]


def test_dry_run_lists_every_check_skipped_with_its_reason(tmp_path: Path) -> None:
    out = tmp_path / "v.md"
    proc = subprocess.run(
        [str(REPO / "scripts" / "gpu-validate"), "--dry", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if line.startswith("| ") and " | skipped | " in line]
    assert len(rows) == len(CHECKS) == 10
    for title in TITLES:
        assert any(row.startswith(f"| {gv.md(title)} | skipped | dry run \\(--dry\\)") for row in rows), title
    assert "## Datasheet table arithmetic (no GPU needed)" in page
    assert "| H100 SXM |" in page
    assert "Traceback" not in proc.stderr


def test_without_a_device_the_reason_is_the_real_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gv.gpudevice, "no_device_nodes", lambda: "no CUDA device visible in this target (test)")
    assert gv.main(["--out", str(tmp_path / "v.md")]) == 0
    page = (tmp_path / "v.md").read_text(encoding="utf-8")
    assert page.count("| skipped | no CUDA device visible in this target \\(test\\) |") == len(CHECKS)


def test_an_unwritable_page_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gv.main(["--dry", "--out", str(tmp_path / "missing" / "v.md")]) == 2
    assert capsys.readouterr().err.splitlines()[0].startswith("gpu-validate: cannot write")
