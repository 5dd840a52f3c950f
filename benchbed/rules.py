"""The rules a run is judged by — thresholds and comparability — resolved once, when it runs, and kept in run.json.

A verdict must not change because benchbed's defaults changed after the run, nor because the suite file moved:
the runner writes `rules` (the suite's `thresholds:` as validated, the default thresholds, and the fingerprint
field globs that decide what is volatile, what a software upgrade may change, and what hardware must match).
`benchbed compare` and the report both read them here. A run.json written before this carries no `rules`: its
thresholds are then read from the recorded suite text and the rest are today's defaults, as they always were.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchbed.fmt import flatten, thresholds_from_text
from benchbed.thresholds import DEFAULT_THRESHOLDS, ThresholdRules

RULES_VERSION = 1

# Fields that change between any two runs and say nothing about comparability.
VOLATILE = (
    "hostname",
    "memory.MemAvailable",
    "python.executable",
    "*pid*",
    "*time*",
    "*started*",
    "*finished*",
    "gpus.*.sm_clock_mhz",
    "gpus.*.mem_clock_mhz",
    # the current PCIe link trains down while idle (gen1 at rest on many hosts): never a real difference; the
    # max link is hardware and the link while busy is in every GPU sample's telemetry (pcie_busy)
    "gpus.*.pcie_gen",
    "gpus.*.pcie_width",
    "gpus.*.pcie.link.gen.current",
    "gpus.*.pcie.link.width.current",
    "gpus.*.clocks.sm",
    "gpus.*.clocks.mem",
    "*container_id*",
    "*container_name*",
    "slurm.job_id",
    "stacks.*",  # per-file stack records: judged per workload by stacks.parity, not field by field
)
# Where a record came from, not what was measured: never a reason to doubt a comparison (an imported file's path,
# the commit of the code that was benchmarked — which is the point of comparing two commits).
PROVENANCE = ("source", "commit_info", "commit_info.*")
# Fields that follow from another: when the first is under test, a difference in the second is part of the same
# change (Python 3.12 → 3.13 changes every machine_info.python_* field pytest-benchmark records).
DERIVED = (
    ("python.version", "machine_info.python_*"),
    ("python.implementation", "machine_info.python_implementation*"),
    ("kernel", "machine_info.release"),
    ("kernel", "machine_info.version"),
    ("os.*", "machine_info.system"),
    ("libraries.pytest_benchmark", "version"),
)
# Run vs run: what a software upgrade is expected to change. Anything else that differs is a warning.
UNDER_TEST_RUNS = (
    "gpus.*.driver*",
    "gpus.*.cuda_driver",
    "kernel",
    "libraries.*",
    "os.*",
    "python.version",
    "*image*",
    "*runtime*",
)
# Target vs target: the hardware must be the same; everything else is the boundary under test.
HARDWARE = (
    "cpu.model",
    "cpu.machine",
    "cpu.logical_cpus",
    "memory.MemTotal",
    "gpus.*.name",
    "gpus.*.uuid",
    "gpus.*.memory_total_bytes",
    "gpus.*.pcie_*_max",
)


@dataclass(frozen=True)
class EnvChange:
    key: str
    base: str | None
    new: str | None


@dataclass(frozen=True)
class Rules:
    thresholds: dict[str, float] = field(default_factory=dict)  # the suite's globs: first match wins, before defaults
    default_thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    volatile: tuple[str, ...] = VOLATILE
    under_test_runs: tuple[str, ...] = UNDER_TEST_RUNS
    hardware: tuple[str, ...] = HARDWARE

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RULES_VERSION,
            "thresholds": dict(self.thresholds),
            "default_thresholds": dict(self.default_thresholds),
            "volatile": list(self.volatile),
            "under_test_runs": list(self.under_test_runs),
            "hardware": list(self.hardware),
        }

    def threshold_rules(
        self, suite: Mapping[str, float] | None = None, cli: Mapping[str, float] | None = None
    ) -> ThresholdRules:
        """The layers that pick each metric's threshold and name its source: `cli` (--threshold), the suites'
        (default: this run's own), then the built-in classes recorded with the run."""
        chosen = self.thresholds if suite is None else suite
        return ThresholdRules(suite=dict(chosen), cli=dict(cli or {}), builtin=dict(self.default_thresholds))

    def env_diff(
        self, base: Mapping[str, Any], new: Mapping[str, Any], *, under_test: Sequence[str] | None
    ) -> tuple[list[EnvChange], list[EnvChange]]:
        """(changes under test, warnings) between two fingerprints; volatile and provenance fields are ignored, and
        a field that follows from one under test (`DERIVED`) is under test with it.

        With `under_test` given, a differing field is under test iff it matches it; otherwise (target vs target)
        it is under test unless it is hardware.
        """
        fa, fb = flatten(dict(base)), flatten(dict(new))
        tested: list[EnvChange] = []
        warned: list[EnvChange] = []
        for key in sorted(set(fa) | set(fb)):
            a, b = fa.get(key), fb.get(key)
            if a == b or _match(key, self.volatile) or _match(key, PROVENANCE):
                continue
            is_tested = _match(key, under_test) if under_test is not None else not _match(key, self.hardware)
            (tested if is_tested else warned).append(EnvChange(key, a, b))
        changed = [e.key for e in tested]
        follows = {p for source, p in DERIVED if any(fnmatch.fnmatchcase(k, source) for k in changed)}
        moved = [e for e in warned if _match(e.key, tuple(follows))]
        return sorted(tested + moved, key=lambda e: e.key), [e for e in warned if e not in moved]


def _match(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def resolve(suite_thresholds: Mapping[str, float]) -> Rules:
    """At run time: the suite's thresholds and today's defaults, for run.json."""
    return Rules(thresholds=dict(suite_thresholds))


def rules_of(meta: Mapping[str, Any]) -> Rules:
    """The rules a run was made with (run.json), or, for a run.json older than `rules`, today's way."""
    raw = meta.get("rules")
    if not isinstance(raw, dict):
        suite = meta.get("suite")
        return Rules(thresholds=thresholds_from_text(suite.get("text") if isinstance(suite, dict) else None))
    return Rules(
        thresholds=_floats(raw.get("thresholds")),
        default_thresholds=_floats(raw.get("default_thresholds")) or dict(DEFAULT_THRESHOLDS),
        volatile=_strings(raw.get("volatile"), VOLATILE),
        under_test_runs=_strings(raw.get("under_test_runs"), UNDER_TEST_RUNS),
        hardware=_strings(raw.get("hardware"), HARDWARE),
    )


def merged_thresholds(rule_sets: Iterable[Rules]) -> dict[str, float]:
    """The suites' thresholds of several runs; where two disagree on a glob, the later one's value wins."""
    out: dict[str, float] = {}
    for rules in rule_sets:
        out.update(rules.thresholds)
    return out


def _floats(raw: object) -> dict[str, float]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _strings(raw: object, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(v) for v in raw) if isinstance(raw, list) else default
