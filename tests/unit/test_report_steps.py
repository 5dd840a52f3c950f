"""The start-up chart's workload-measured steps (context init, model load) come from instance medians, in seconds."""

from __future__ import annotations

import pandas as pd
import pytest

from benchbed.report.charts import phase_chart
from benchbed.report.runinfo import workload_steps
from benchbed.stats import INSTANCE_COLUMNS, canonical_params


def inst(rows: list[tuple[str, dict[str, object], str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(w, canonical_params(p), m, t, i, v, 5) for i, (w, p, m, t, v) in enumerate(rows)], columns=INSTANCE_COLUMNS
    )


def test_steps_pick_the_preferred_metric_and_median_of_instances() -> None:
    frame = inst(
        [
            ("gpu.context_init", {}, "cuda_init", "host", 300.0),
            ("gpu.context_init", {}, "cuda_init", "host", 500.0),
            ("gpu.context_init", {}, "cuda_init", "host", 400.0),
            ("gpu.context_init", {}, "import", "host", 900.0),  # not a step: the import is not the context
            ("model.load", {"size_mb": 64}, "cpu_warm", "host", 10.0),
            ("model.load", {"size_mb": 64}, "cuda_cold", "host", 80.0),
            ("model.load", {"size_mb": 64}, "cuda_cold", "vm", 120.0),
            ("model.load", {"size_mb": 256}, "cuda_cold", "vm", 999.0),  # a second params case is not mixed in
            ("cpu.gemm", {}, "throughput", "host", 1.0),
        ]
    )
    steps = workload_steps(frame)
    got = {(r.target, r.phase.split(" (")[0]): (r.median_s, r.n) for r in steps.itertuples()}
    assert got == {
        ("host", "context init"): (pytest.approx(0.4), 3),
        ("host", "model load"): (pytest.approx(0.08), 1),
        ("vm", "model load"): (pytest.approx(0.12), 1),
    }
    assert any("model.load cuda_cold, size_mb=64" in p for p in steps["phase"])


def test_no_workload_steps_without_those_workloads() -> None:
    assert workload_steps(inst([("cpu.gemm", {}, "throughput", "host", 1.0)])).empty
    assert workload_steps(pd.DataFrame(columns=INSTANCE_COLUMNS)).empty


def test_steps_stack_after_the_controller_phases() -> None:
    phases = pd.DataFrame(
        [("vm", "boot", 28.0, 2), ("vm", "ssh_ready", 1.5, 2), ("vm", "total", 40.0, 2)],
        columns=["target", "phase", "median_s", "n"],
    )
    steps = workload_steps(inst([("model.load", {}, "cpu_cold", "vm", 250.0)]))
    chart = phase_chart(pd.concat([phases, steps], ignore_index=True), ["vm"], 0)
    assert chart is not None
    names = [t["name"] for t in chart.figure["data"]]
    assert names[:2] == ["boot", "ssh_ready"]
    assert names[2].startswith("model load (model.load cpu_cold")
    assert "total" not in names
    assert chart.figure["data"][2]["x"] == [pytest.approx(0.25)]
