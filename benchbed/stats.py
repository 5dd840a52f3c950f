"""Summary statistics of a run: medians, bootstrap CIs and ratios to the baseline target.

The *instance* (a fresh process / container / VM) is the unit of replication: samples inside one instance share
its placement, caches and clocks, so they are not independent. Hence the centre is the median of per-instance
medians and its CI resamples instances. With one instance there is nothing else to resample, so the CI falls back
to the samples (and says so in `ci_method`) — it then describes that one instance, not the target.

`ci_method` / `ratio_ci_method` values:
  "bca-instances", "percentile-instances"   bootstrap over per-instance medians (BCa where it works)
  "bca-samples", "percentile-samples"       one instance only: bootstrap over its samples
  "bca-mixed", "percentile-mixed"           ratio whose two sides resample different units
  "constant"                                every resampled value is equal: the CI is that value
  "baseline"                                the baseline's ratio to itself (exactly 1)
  "none"                                    fewer than 2 values to resample, or no baseline: CI is NaN

Everything is deterministic: each row's bootstrap draws from a generator seeded by (seed, row key), so a row's
CI does not change when other rows are added. Rank tests, multiple-testing correction and equivalence verdicts
are meant to build on `instance_medians()` rather than on the summary table.
"""

from __future__ import annotations

import json
import math
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

Array = npt.NDArray[np.float64]
Statistic = Callable[..., Any]

DEFAULT_SEED = 20240601
DEFAULT_RESAMPLES = 4999
DEFAULT_CONFIDENCE = 0.95
BCA_MAX_N = 1000  # BCa's jackknife costs n² statistic evaluations; past this size percentile is as good and cheap
BATCH_ELEMENTS = 2_000_000  # bounds bootstrap memory: resamples per batch × values per resample
KEYS = ["workload", "params", "metric"]
ROW_KEYS = [*KEYS, "target"]
SUMMARY_COLUMNS = [
    *ROW_KEYS,
    "unit",
    "better",
    "is_baseline",
    "n_instances",
    "n_samples",
    "n_invalid",
    "median",
    "ci_low",
    "ci_high",
    "ci_method",
    "q1",
    "q3",
    "iqr",
    "p95",
    "p99",
    "min",
    "max",
    "cold",
    "n_cold",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "ratio_ci_method",
    "change_pct",
    "better_ratio",
    "better_ratio_ci_low",
    "better_ratio_ci_high",
]
INSTANCE_COLUMNS = [*ROW_KEYS, "instance", "median", "n"]
PHASE_COLUMNS = ["target", "phase", "median_s", "n"]
NAN = math.nan


def canonical_params(params: object) -> str:
    """Params as one stable string (sorted keys, no spaces) so that dicts can be grouped and compared."""
    if isinstance(params, str):
        return params
    if params is None or (isinstance(params, float) and math.isnan(params)):
        params = {}
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def _prepared(samples: pd.DataFrame) -> pd.DataFrame:
    df = samples.copy()
    df["params"] = df["params"].map(canonical_params)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    # Anything but an explicit True is invalid: a sample of unknown validity must not enter a statistic.
    df["valid"] = df["valid"].map(lambda v: v is True or v is np.True_)
    return df


def _usable(df: pd.DataFrame, phase: str) -> pd.DataFrame:
    finite = np.isfinite(df["value"].to_numpy(dtype=float, na_value=np.nan))
    usable: pd.DataFrame = df.loc[(df["phase"] == phase) & df["valid"] & finite]
    return usable


def measured(samples: pd.DataFrame) -> pd.DataFrame:
    """The samples that enter statistics: phase "measure", valid, finite value; params as canonical strings."""
    return _usable(_prepared(samples), "measure")


def instance_medians(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per (workload, params, metric, target, instance): the median of its measured samples and n.

    This is the replication-level data that every comparison (bootstrap, rank tests, equivalence) should use.
    """
    m = measured(samples)
    if m.empty:
        return pd.DataFrame(columns=INSTANCE_COLUMNS)
    g = m.groupby([*ROW_KEYS, "instance"], sort=False)["value"]
    out = g.agg(["median", "size"]).reset_index().rename(columns={"size": "n"})
    return out[INSTANCE_COLUMNS]


UNFINISHED_CASE_COLUMNS = ["target", "workload", "params", "instances", "samples"]


def unfinished_by_case(unfinished: pd.DataFrame) -> pd.DataFrame:
    """Per (target, workload, params), in file order: how many instances did not finish and how many of their
    samples are on disk but out of every statistic (`results.RunData.unfinished`); params canonical."""
    if unfinished.empty:
        return pd.DataFrame(columns=UNFINISHED_CASE_COLUMNS)
    df = unfinished.assign(params=unfinished["params"].map(canonical_params))
    g = df.groupby(["target", "workload", "params"], sort=False)["samples"]
    out = g.agg(instances="size", samples="sum").reset_index()
    return out[UNFINISHED_CASE_COLUMNS]


def startup_phases(cases: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per startup phase per target, over every case that recorded the phase (any status)."""
    if cases.empty or "phases" not in cases.columns:
        return pd.DataFrame(columns=PHASE_COLUMNS)
    rows = [
        {"target": str(target), "phase": str(phase), "seconds": float(sec)}
        for target, phases in zip(cases["target"], cases["phases"], strict=True)
        if isinstance(phases, dict)
        for phase, sec in phases.items()
        if isinstance(sec, int | float) and math.isfinite(sec)
    ]
    if not rows:
        return pd.DataFrame(columns=PHASE_COLUMNS)
    g = pd.DataFrame(rows).groupby(["target", "phase"], sort=False)["seconds"]
    out = g.agg(["median", "size"]).reset_index().rename(columns={"median": "median_s", "size": "n"})
    return out[PHASE_COLUMNS]


# ── bootstrap ──────────────────────────────────────────────────────────────────────────────────────────────
def _median(x: Array, axis: int = -1) -> Any:
    return np.median(x, axis=axis)


def _median_ratio(a: Array, b: Array, axis: int = -1) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.median(a, axis=axis) / np.median(b, axis=axis)


def bootstrap_ci(
    data: tuple[Array, ...],
    statistic: Statistic,
    *,
    rng: np.random.Generator,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> tuple[float, float, str]:
    """(low, high, method) of a vectorized statistic; BCa, else percentile where BCa degenerates (ties, tiny n)
    or would be slow (more than BCA_MAX_N values).

    Independent resampling per array (paired=False). Returns NaNs and "none" if any array has < 2 values.
    """
    if any(len(d) < 2 for d in data):
        return NAN, NAN, "none"
    if all(np.all(d == d[0]) for d in data):
        point = float(statistic(*data))
        return point, point, "constant"
    largest = max(len(d) for d in data)
    for method in ("BCa", "percentile") if largest <= BCA_MAX_N else ("percentile",):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = sps.bootstrap(
                data,
                statistic,
                n_resamples=n_resamples,
                batch=max(1, BATCH_ELEMENTS // largest),
                vectorized=True,
                paired=False,
                confidence_level=confidence,
                method=method,
                rng=rng,
            )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        degenerate = any(issubclass(w.category, sps.DegenerateDataWarning) for w in caught)
        if math.isfinite(low) and math.isfinite(high) and not (method == "BCa" and degenerate):
            return low, high, method.lower()
    return NAN, NAN, "none"


# ── summary ────────────────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class _Cell:
    """The measured data of one (workload, params, metric, target)."""

    values: Array
    inst: Array

    @property
    def unit(self) -> tuple[Array, str]:
        """What to resample: instances when there are ≥ 2, else the lone instance's samples."""
        return (self.inst, "instances") if len(self.inst) >= 2 else (self.values, "samples")

    @property
    def median(self) -> float:
        return float(np.median(self.inst)) if len(self.inst) else NAN


def _rng(seed: int, key: tuple[str, ...]) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(key).encode())])


def _pct(values: Array, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else NAN


def _describe(cell: _Cell, rng: np.random.Generator, confidence: float, n_resamples: int) -> dict[str, Any]:
    v = cell.values
    data, unit = cell.unit
    low, high, method = bootstrap_ci((data,), _median, rng=rng, confidence=confidence, n_resamples=n_resamples)
    if method in ("bca", "percentile"):
        method = f"{method}-{unit}"
    q1, q3 = _pct(v, 25), _pct(v, 75)
    return {
        "n_instances": len(cell.inst),
        "n_samples": len(v),
        "median": cell.median,
        "ci_low": low,
        "ci_high": high,
        "ci_method": method,
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "p95": _pct(v, 95),
        "p99": _pct(v, 99),
        "min": float(v.min()) if len(v) else NAN,
        "max": float(v.max()) if len(v) else NAN,
    }


def _inverse(x: float) -> float:
    return 1.0 / x if x != 0 else NAN


def _compare(
    cell: _Cell, base: _Cell | None, better: str, rng: np.random.Generator, confidence: float, n_resamples: int
) -> dict[str, Any]:
    """Ratio target/baseline with a two-sample bootstrap CI, plus the same ratio oriented so > 1 is better."""
    ratio, low, high, method = NAN, NAN, NAN, "none"
    if base is not None and len(cell.inst) and len(base.inst) and base.median != 0:
        ratio = cell.median / base.median
        (a, ua), (b, ub) = cell.unit, base.unit
        low, high, method = bootstrap_ci((a, b), _median_ratio, rng=rng, confidence=confidence, n_resamples=n_resamples)
        if method in ("bca", "percentile"):
            method = f"{method}-{ua if ua == ub else 'mixed'}"
    if better == "higher":
        flipped = (ratio, low, high)
    elif better == "lower":
        flipped = (_inverse(ratio), _inverse(high), _inverse(low))
    else:
        flipped = (NAN, NAN, NAN)
    return {
        "ratio": ratio,
        "ratio_ci_low": low,
        "ratio_ci_high": high,
        "ratio_ci_method": method,
        "change_pct": (ratio - 1.0) * 100.0,
        "better_ratio": flipped[0],
        "better_ratio_ci_low": flipped[1],
        "better_ratio_ci_high": flipped[2],
    }


def summarize(
    samples: pd.DataFrame,
    baseline: str,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """One row per (workload, params, metric, target); columns `SUMMARY_COLUMNS` (see module docstring).

    Rows keep the run's order (suite order), with the baseline target first within each comparison group.
    `change_pct` is the raw change of the median vs the baseline (+ = larger number); `better_ratio` > 1 always
    means the target did better than the baseline, whatever the metric's direction. Cold-start samples are not
    part of any statistic; `cold` is their median and `n_cold` their count.
    """
    df = _prepared(samples)
    if df.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)

    def arrays(frame: pd.DataFrame, column: str = "value") -> dict[tuple[str, ...], Array]:
        if frame.empty:
            return {}
        groups = frame.groupby(ROW_KEYS, sort=False)[column]
        return {tuple(str(k) for k in key): g.to_numpy(dtype=float) for key, g in groups}

    values, colds = arrays(_usable(df, "measure")), arrays(_usable(df, "cold"))
    inst = arrays(instance_medians(df), "median")
    first = df.drop_duplicates(ROW_KEYS)
    invalid = df[(df["phase"] == "measure") & ~df["valid"]].groupby(ROW_KEYS, sort=False).size()
    empty: Array = np.array([], dtype=float)
    cells: dict[tuple[str, ...], _Cell] = {}
    info: dict[tuple[str, ...], tuple[str, str]] = {}
    for rec in first[[*ROW_KEYS, "unit", "better"]].itertuples(index=False):
        key: tuple[str, ...] = tuple(str(x) for x in rec[:4])
        cells[key] = _Cell(values.get(key, empty), inst.get(key, empty))
        info[key] = (str(rec[4]), str(rec[5]))
    group_order = list(dict.fromkeys(k[:3] for k in cells))
    targets = list(dict.fromkeys(k[3] for k in cells))
    targets.sort(key=lambda t: t != baseline)  # stable: baseline first, others in order of appearance

    rows: list[dict[str, Any]] = []
    for group in group_order:
        base = cells.get((*group, baseline))
        for target in targets:
            key = (*group, target)
            if key not in cells:
                continue
            cell, (unit, better) = cells[key], info[key]
            rng = _rng(seed, key)
            row: dict[str, Any] = dict(zip(ROW_KEYS, key, strict=True))
            row.update(unit=unit, better=better, is_baseline=target == baseline)
            row["n_invalid"] = int(invalid.get(key, 0))
            row.update(_describe(cell, rng, confidence, n_resamples))
            c = colds.get(key, empty)
            row.update(cold=float(np.median(c)) if len(c) else NAN, n_cold=len(c))
            if target == baseline:
                has = 1.0 if len(cell.inst) else NAN
                row.update(
                    ratio=has,
                    ratio_ci_low=has,
                    ratio_ci_high=has,
                    ratio_ci_method="baseline",
                    change_pct=(has - 1.0) * 100.0,
                    better_ratio=has,
                    better_ratio_ci_low=has,
                    better_ratio_ci_high=has,
                )
            else:
                row.update(_compare(cell, base, better, rng, confidence, n_resamples))
            rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
