"""Suite ▸ ordered list of cases. The order is seeded and recorded so a run can be replayed exactly."""

from __future__ import annotations

import fnmatch
import json
import random
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from benchbed.config import Suite
from benchbed.errors import ConfigError


@dataclass(frozen=True)
class Case:
    """One instance (fresh process / container / VM) of one workload × params on one target."""

    index: int
    target: str
    workload: str
    params: dict[str, Any]
    instance: int
    repetitions: int
    warmup: int
    timeout_s: float

    @property
    def key(self) -> str:
        """Stable identity of the case across instances and targets: workload + params."""
        return f"{self.workload} {json.dumps(self.params, sort_keys=True)}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    cases: list[Case]
    seed: int
    targets: list[str]
    baseline: str


def make_plan(
    suite: Suite,
    available: list[str],
    *,
    seed: int | None = None,
    only: str | None = None,
    instances: int | None = None,
) -> Plan:
    """Interleave targets in a seeded random order per case and instance, so machine drift hits all alike."""
    names = suite.targets or available
    missing = [t for t in names if t not in available]
    if missing:
        raise ConfigError(f"suite {suite.name!r} names unknown target(s) {missing}", hint=f"known: {available}")
    if suite.baseline not in names:
        raise ConfigError(
            f"suite {suite.name!r}: baseline target {suite.baseline!r} is not among the targets {names}",
            hint="set `baseline:` in the suite to one of them",
        )
    seed = seed if seed is not None else (suite.seed if suite.seed is not None else secrets.randbelow(2**31))
    rng = random.Random(seed)
    d = suite.defaults
    units: list[tuple[str, dict[str, Any], int, int, int, float]] = []
    for entry in suite.workloads:
        if only and not fnmatch.fnmatchcase(entry.name, only):
            continue
        for point in entry.grid():
            units.append(
                (
                    entry.name,
                    point,
                    instances or entry.instances or d.instances,
                    entry.repetitions or d.repetitions,
                    entry.warmup if entry.warmup is not None else d.warmup,
                    entry.timeout_s or d.timeout_s,
                )
            )
    if not units:
        raise ConfigError(f"--only {only!r} matches no workload in suite {suite.name!r}")
    blocks = _blocks(suite, names)
    cases: list[Case] = []
    rounds = max(u[2] for u in units)
    for inst in range(rounds):
        if len(blocks) > 1:  # one block at a time; which goes first is seeded per round (drift hits all alike)
            rng.shuffle(blocks)
        for block in blocks:
            for name, point, n_inst, reps, warm, tmo in units:
                if inst >= n_inst:
                    continue
                order = list(block)
                rng.shuffle(order)
                for target in order:
                    cases.append(Case(len(cases), target, name, point, inst, reps, warm, tmo))
    return Plan(cases, seed, list(names), suite.baseline)


def _blocks(suite: Suite, names: list[str]) -> list[list[str]]:
    """The suite's `blocks` restricted to the targets of this run, plus one block of every unlisted target."""
    seen: dict[str, int] = {}
    for i, block in enumerate(suite.blocks):
        for target in block:
            if target in seen:
                raise ConfigError(f"suite {suite.name!r}: target {target!r} is in more than one block")
            if target not in names:
                raise ConfigError(f"suite {suite.name!r}: block names target {target!r}, not among {names}")
            seen[target] = i
    out = [[t for t in names if seen.get(t) == i] for i in range(len(suite.blocks))]
    out.append([t for t in names if t not in seen])
    return [b for b in out if b]
