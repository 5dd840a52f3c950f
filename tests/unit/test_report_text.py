"""Pure text functions of the report: the CSV writer (held to pandas' to_csv) and Markdown escaping."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from benchbed.fmt import md
from benchbed.report.csvtext import to_csv
from benchbed.results import SCALAR_COLUMNS

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "</script>", "a,b", 'say "hi"', "x\ny", "\r"]


def frame(texts: list[str] = HOSTILE) -> pd.DataFrame:
    rows = []
    for i, text in enumerate(["local", *texts, " lead", "", "ünï"]):
        rows.append(
            {
                "target": text,
                "workload": "cpu.gemm",
                "params": '{"label":"' + text.replace('"', '\\"') + '","n":64}',
                "metric": "lat",
                "unit": "ms",
                "better": "lower",
                "value": [1.0, 0.1 + 0.2, 1e-300, 12345678.9, math.nan, -0.0, math.inf, 1 / 3][i % 8],
                "instance": i,
                "repetition": i % 3,
                "phase": ["measure", "cold", "warmup"][i % 3],
                "valid": [True, False, None][i % 3],
                "reason": None if i % 2 else text,
                "case": i,
            }
        )
    return pd.DataFrame(rows, columns=SCALAR_COLUMNS)


def test_csv_is_what_pandas_writes() -> None:
    # A lone CR: Python's csv writer (under pandas) leaves it unquoted on some versions, which breaks readers;
    # to_csv always quotes it (see the round trip below).
    df = frame([t for t in HOSTILE if t != "\r"])
    assert to_csv(df, SCALAR_COLUMNS) == df.to_csv(index=False, lineterminator="\n")


def test_csv_keeps_types_apart_and_handles_missing_columns() -> None:
    df = pd.DataFrame({"valid": [True, 1, 1.0, None, np.True_], "value": [1.5, 2.0, math.nan, 4.0, 5.0]}, dtype=object)
    df["value"] = df["value"].astype(float)
    want = df.reindex(columns=["value", "valid", "reason"]).to_csv(index=False, lineterminator="\n")
    assert to_csv(df, ["value", "valid", "reason"]) == want
    assert want.splitlines()[1:3] == ["1.5,True,", "2.0,1,"]


def test_csv_of_no_rows_is_the_header() -> None:
    empty = pd.DataFrame(columns=SCALAR_COLUMNS)
    assert to_csv(empty, SCALAR_COLUMNS) == empty.to_csv(index=False, lineterminator="\n")


def test_csv_round_trips_values_exactly() -> None:
    df = frame()
    back = pd.read_csv(io.StringIO(to_csv(df, SCALAR_COLUMNS)), keep_default_na=False, dtype=str)
    assert list(back["target"]) == list(df["target"])
    assert [float(v) if v else math.nan for v in back["value"]] == pytest.approx(list(df["value"]), nan_ok=True)


@pytest.mark.parametrize("text", [*HOSTILE, "a|b", "`code`", "*bold* _it_", "[x](javascript:alert(1))", "# h"])
def test_markdown_text_is_inert(text: str) -> None:
    out = md(text)
    assert "<" not in out
    assert "\n" not in out
    assert "|" not in out.replace("\\|", "")
    assert "`" not in out.replace("\\`", "")
    assert "[" not in out.replace("\\[", "")
    assert "*" not in out.replace("\\*", "")
