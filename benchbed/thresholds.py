"""Which threshold judges a metric, and where it came from.

A threshold is the smallest relative change that matters; TOST calls a change "equivalent" inside it, so a
threshold wider than the change you care about hides that change. It is therefore a visible decision: every verdict
row carries its threshold *and* its source, and the report and `benchbed compare` show both.

Resolution, first match wins:
  1. `--threshold GLOB=F` of `benchbed compare`           source "--threshold GLOB"
  2. the suite's `thresholds:` globs                       source "suite GLOB"
  3. the built-in metric classes (`DEFAULT_THRESHOLDS`)    source "built-in GLOB"
  4. `default` in --threshold, then in the suite            source "--threshold default" / "suite default"
  5. `FALLBACK_THRESHOLD`                                  source "fallback"
Globs match the workload name or "workload:metric". The key `default` is not a glob: it is what a suite says for
every metric that no glob and no built-in class names (e.g. pytest-benchmark microbenchmarks, custom workloads);
`"*": F` instead overrides the built-in classes too.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_KEY = "default"

# Metric-class thresholds: the smallest relative change that matters per class of workload.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "*:lat*": 0.05,
    "*:*latency*": 0.05,
    "gpu.gemm": 0.01,
    "cpu.gemm": 0.01,
    "gpu.d2d_bandwidth": 0.01,
    "gpu.h2d_bandwidth": 0.03,
    "gpu.d2h_bandwidth": 0.03,
    "cpu.stream": 0.03,
    "model.*": 0.03,
    "io.*": 0.03,
    "util.*": 0.03,
    "gpu.launch_latency": 0.05,
    "startup.*": 0.10,
    "gpu.context_init": 0.10,
}
FALLBACK_THRESHOLD = 0.05


@dataclass(frozen=True)
class Threshold:
    value: float
    source: str  # "suite io.*", "built-in cpu.gemm", "suite default", "fallback", …

    @property
    def label(self) -> str:
        return f"±{self.value * 100:g}% ({self.source})"


@dataclass(frozen=True)
class ThresholdRules:
    """The threshold layers of one comparison (see the module docstring for the order)."""

    suite: dict[str, float] = field(default_factory=dict)
    cli: dict[str, float] = field(default_factory=dict)
    builtin: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))

    def pick(self, workload: str, metric: str) -> Threshold:
        names = (workload, f"{workload}:{metric}")
        for source, table in (("--threshold", self.cli), ("suite", self.suite), ("built-in", self.builtin)):
            for pattern, value in table.items():
                if pattern != DEFAULT_KEY and any(fnmatch.fnmatchcase(n, pattern) for n in names):
                    return Threshold(float(value), f"{source} {pattern}")
        for source, table in (("--threshold", self.cli), ("suite", self.suite)):
            if DEFAULT_KEY in table:
                return Threshold(float(table[DEFAULT_KEY]), f"{source} default")
        return Threshold(FALLBACK_THRESHOLD, "fallback")


def threshold_for(workload: str, metric: str, overrides: Mapping[str, float] | None = None) -> float:
    """The threshold of a metric with the suite's `overrides` (globs and `default`) before the built-in classes."""
    return ThresholdRules(suite=dict(overrides or {})).pick(workload, metric).value
