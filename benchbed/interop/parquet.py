"""Samples as Parquet, for notebooks: one row per sample, the columns of samples.jsonl (params as canonical JSON)."""

from __future__ import annotations

import importlib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from benchbed.errors import MissingExtra
from benchbed.fileio import write_atomic
from benchbed.results import load_run
from benchbed.stats import canonical_params


def samples_frame(run_dir: Path) -> pd.DataFrame:
    """The run's samples with Parquet-friendly types: params and labels (a dict per row) as canonical JSON text."""
    df = load_run(run_dir).samples.copy()
    df["params"] = df["params"].map(canonical_params)
    df["labels"] = df["labels"].map(canonical_params)  # free-form dicts: JSON text, as params
    df["valid"] = df["valid"].map(lambda v: v is True or v is np.True_)
    df.insert(0, "run_id", run_dir.name)
    return df


def export_parquet(run_dir: Path, dest: Path) -> tuple[Path, int]:
    """Write the samples to `dest` (atomically); returns the path and the number of rows."""
    try:
        importlib.import_module("pyarrow")
    except ImportError as err:
        hint = "pip install 'benchbed[parquet]'"
        raise MissingExtra("Parquet export needs pyarrow, which is not installed", hint=hint) from err
    df = samples_frame(run_dir)
    buf = io.BytesIO()
    df.to_parquet(buf, engine="pyarrow", index=False)
    return write_atomic(dest, buf.getvalue()), len(df)
