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


def test_every_check_runs_end_to_end_on_a_fake_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks' own code (no GPU here to run it): against the fake torch and NVML every reference agrees with
    benchbed's figure, so each comparing check says ok; model.load needs a real torch.save and is left out."""
    from tests.unit.fakegpu import FakeNvml, FakeTorchGraphs, install

    install(monkeypatch, FakeTorchGraphs("NVIDIA H100 80GB HBM3", matmul_ms=0.5, copy_gbs=1500.0), FakeNvml())
    monkeypatch.setattr(gv, "CHECKS", [c for c in CHECKS if c[0] != "model_load"])
    out = tmp_path / "v.md"
    assert gv.main(["--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    status = {
        title: line.split(" | ")[1]
        for line in page.splitlines()
        for title in TITLES
        if line.startswith(f"| {gv.md(title)} |")
    }
    assert status == {
        "Background NVML sampler": "ok",
        "Peaks vs SMs × FLOP/clock × max clock": "ok",
        "GEMM vs CUDA-graph / do_bench timing at three sizes": "ok",
        "The tf32/fp32 switch": "ok",
        "20 s sustained GEMM vs the burst figure": "info",
        "D2D vs an nvbandwidth-style verified copy": "ok",
        "H2D/D2H pinned and pageable, local vs remote NUMA node": "info",
        "Launch-rate variants": "info",
        "Context init with the persistence state": "skipped",  # its child process sees no real torch here
    }
    assert "clocks, persistence and MIG unchanged by this run" in page
    assert "sustained/burst = 1.000" in page
    assert "copy verified: True" in page
    assert "launcher=cupy | skipped" in page


def test_a_disagreement_is_a_mismatch_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TF32 switch that changes nothing (the fp32 GEMM as fast as tf32) must not pass."""
    from tests.unit.fakegpu import FakeNvml, FakeTorch, FakeTorchGraphs, install

    fake = FakeTorchGraphs("NVIDIA H100 80GB HBM3", matmul_ms=0.5)
    fake.matmul = lambda a, b, out: FakeTorch.matmul(fake, a, b, out)  # type: ignore[method-assign]
    install(monkeypatch, fake, FakeNvml())
    monkeypatch.setattr(gv, "CHECKS", [c for c in CHECKS if c[0] == "tf32"])
    out = tmp_path / "v.md"
    assert gv.main(["--out", str(out)]) == 1
    assert "| The tf32/fp32 switch | mismatch | tf32/fp32 = 1.00" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("bad", [["--budget-s", "-3"], ["--budget-s", "0"], ["--device", "-1"], ["--budget-s", "x"]])
def test_bad_arguments_are_refused_before_any_check(bad: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        gv.main(["--dry", "--out", str(tmp_path / "v.md"), *bad])
    assert stop.value.code == 2
    assert not (tmp_path / "v.md").exists()


def test_an_unwritable_page_is_refused_before_the_checks_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[object] = []
    monkeypatch.setattr(gv, "run_checks", lambda *a: ran.append(a) or [])
    assert gv.main(["--out", str(tmp_path / "missing" / "v.md")]) == 2
    assert ran == []  # minutes of GPU time are not spent on a page that cannot be written
    assert "is not a writable directory" in capsys.readouterr().err
