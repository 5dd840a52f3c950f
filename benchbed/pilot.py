"""`instances: auto`: how many instances a case needs, from a short pilot of real baseline instances.

The pilot measures the *between-instance* noise of every metric (sd of log instance medians, "CV"); N per case is
the most any of its metrics needs for the Welch-t MDE at that noise to reach the metric class's threshold
(`verdict.instances_needed`), clamped to [min_instances, max_instances]. A pilot of k instances underestimates the
noise more often than not (its sd has k − 1 degrees of freedom), so N is planned on the one-sided 80 % upper
confidence limit of the pilot's sd (Browne 1995, "On the use of a pilot sample for sample size determination").
A case whose noise would need more than max_instances is capped, and says so: "MDE x% > threshold".
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from benchbed.plan import case_key
from benchbed.schema import Suite
from benchbed.stats import instance_medians
from benchbed.verdict import instances_needed, mde_from_sd, threshold_for

UPPER_CONFIDENCE = 0.80  # plan on the 80 % UCL of the pilot sd, not its point estimate


@dataclass(frozen=True)
class MetricNoise:
    cv_pct: float  # sd of log instance medians in the pilot, × 100
    cv_planned_pct: float  # its upper confidence limit: what N is planned on
    threshold: float
    needed: int  # instances per side this metric alone asks for (uncapped)
    mde_pct: float  # MDE at the chosen N and the planned noise


@dataclass(frozen=True)
class PilotCase:
    key: str
    pilot_instances: int
    instances: int  # chosen N per target (the pilot's instances count towards the baseline's)
    needed: int  # what the noisiest metric asked for, before clamping
    capped: bool
    metrics: dict[str, MetricNoise] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def upper_sd(sd: float, k: int, confidence: float = UPPER_CONFIDENCE) -> float:
    """One-sided upper confidence limit of a normal sd estimated from k values."""
    if k < 2 or not math.isfinite(sd):
        return math.nan
    return sd * math.sqrt((k - 1) / float(sps.chi2.ppf(1 - confidence, k - 1)))


def assess(pilot_samples: pd.DataFrame, suite: Suite, keys: list[str] | None = None) -> dict[str, PilotCase]:
    """Per case key: the pilot's noise per metric and the chosen N. `keys` (the pilot's case keys) makes sure a
    case whose pilot produced no samples (skipped, failed) still gets an N: the minimum, with a note."""
    d = suite.defaults
    low, high = max(d.min_instances, d.pilot_instances), max(d.max_instances, d.min_instances, d.pilot_instances)
    inst = instance_medians(pilot_samples)
    out: dict[str, PilotCase] = {}
    for (workload, params), group in inst.groupby(["workload", "params"], sort=False):
        key = case_key(str(workload), json.loads(str(params)))
        k = int(group["instance"].nunique())
        per: dict[str, tuple[float, float, float, int]] = {}
        for metric, g in group.groupby("metric", sort=False):
            values = g["median"].to_numpy(float)
            thr = threshold_for(str(workload), str(metric), suite.thresholds)
            if len(values) < 2 or not np.all(values > 0):
                per[str(metric)] = (math.nan, math.nan, thr, low)
                continue
            sd = float(np.std(np.log(values), ddof=1))
            planned = upper_sd(sd, len(values))
            per[str(metric)] = (sd, planned, thr, _needed(planned, thr))
        needed = max((p[3] for p in per.values()), default=low)
        n = min(high, max(low, needed))
        metrics = {
            m: MetricNoise(sd * 100, planned * 100, thr, need, _mde(planned, n))
            for m, (sd, planned, thr, need) in per.items()
        }
        out[key] = PilotCase(key, k, n, needed, needed > high, metrics, _note(needed > high, metrics))
    for key in keys or []:
        out.setdefault(key, PilotCase(key, 0, low, low, False, {}, "pilot gave no samples: minimum instances"))
    return out


def _needed(sd: float, threshold: float) -> int:
    return instances_needed(sd, threshold, cap=10**6)  # uncapped: the caller clamps and reports the overshoot


def _mde(sd: float, n: int) -> float:
    return mde_from_sd(sd, n, sd, n) * 100 if math.isfinite(sd) else math.nan


def _note(capped: bool, metrics: dict[str, MetricNoise]) -> str:
    if not capped:
        return ""
    worst = max(metrics.items(), key=lambda kv: kv[1].needed)
    return f"capped: MDE {worst[1].mde_pct:.1f}% > threshold {worst[1].threshold:.0%} ({worst[0]})"
