"""A chart of one tiny sample is drawn on an axis that shows its size, not on plotly's default −1..1."""

from __future__ import annotations

import pandas as pd

from benchbed.report.charts import distribution_charts


def frame(values: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [
        {"workload": "pytest", "params": "{}", "metric": "test_x", "target": "box", "unit": "s", "better": "lower",
         "value": v, "instance": i}
        for i, v in enumerate(values)
    ]  # fmt: skip
    measured = pd.DataFrame(rows)
    inst = measured.rename(columns={"value": "median"})[["workload", "params", "metric", "target", "median"]]
    return measured, inst


def test_one_tiny_sample_gets_an_axis_from_zero_to_twice_it() -> None:
    measured, inst = frame([2.2e-7])
    ((_, chart),) = distribution_charts(measured, inst, ["box"], "box")
    assert chart.figure["layout"]["yaxis"]["range"] == [0.0, 4.4e-7]


def test_a_spread_sample_keeps_plotlys_own_range() -> None:
    measured, inst = frame([2.2e-7, 2.5e-7, 2.4e-7])
    ((_, chart),) = distribution_charts(measured, inst, ["box"], "box")
    assert "range" not in chart.figure["layout"]["yaxis"]
