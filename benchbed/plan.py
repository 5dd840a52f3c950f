"""Suite ▸ ordered list of cases. The order is seeded and recorded so a run can be replayed exactly."""

from __future__ import annotations

import fnmatch
import json
import random
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from benchbed.errors import ConfigError
from benchbed.schema import Suite
from benchbed.targets.spec import VARIANT_SEP


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
    settle_s: float = 0.0  # the agent's settle gate (agent/settle.py): longest wait for a quiet machine; 0 = none
    hold_s: float = 0.0  # how long the agent may hold sample lines (agent/emit.py); 0 = each goes at once

    @property
    def key(self) -> str:
        """Stable identity of the case across instances and targets: workload + params."""
        return case_key(self.workload, self.params)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def case_key(workload: str, params: dict[str, Any]) -> str:
    return f"{workload} {json.dumps(params, sort_keys=True)}"


@dataclass(frozen=True)
class Plan:
    cases: list[Case]
    seed: int
    targets: list[str]
    baseline: str
    pilot: list[str] = field(default_factory=list)  # case keys still on `instances: auto`: these cases are a pilot
    only: str | None = None


def make_plan(
    suite: Suite,
    available: list[str],
    *,
    seed: int | None = None,
    only: str | None = None,
    instances: int | None = None,
    instances_per_key: dict[str, int] | None = None,
    done: dict[str, int] | None = None,
    first_index: int = 0,
) -> Plan:
    """Interleave targets in a seeded random order per case and instance, so machine drift hits all alike.

    Cases on `instances: auto` (not in `instances_per_key`) need a pilot first: the plan is then only the pilot —
    `pilot_instances` of each such case on the baseline, listed in `Plan.pilot` — and the runner plans the rest
    with `instances_per_key` (from `benchbed.pilot.assess`) and `done` (baseline instances the pilot
    already ran per case key: they count, so the baseline skips those rounds). `first_index` continues the case
    numbering of the pilot.
    """
    names = select(suite.targets, available) if suite.targets else available
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
    chosen = instances_per_key or {}
    units: list[tuple[str, dict[str, Any], int, int, int, float, dict[str, int]]] = []
    pilot: list[str] = []
    for entry in suite.workloads:
        if only and not fnmatch.fnmatchcase(entry.name, only):
            continue
        for point in entry.grid():
            n: int | str = instances or entry.instances or d.instances
            if n == "auto":
                n = chosen.get(case_key(entry.name, point), "auto")
            if n == "auto":
                pilot.append(case_key(entry.name, point))
            units.append(
                (
                    entry.name,
                    point,
                    n if isinstance(n, int) else 0,
                    entry.repetitions or d.repetitions,
                    entry.warmup if entry.warmup is not None else d.warmup,
                    entry.timeout_s or d.timeout_s,
                    _caps(suite, entry.target_instances, names, available),
                )
            )
    if not units:
        raise ConfigError(f"--only {only!r} matches no workload in suite {suite.name!r}")
    blocks = _blocks(suite, names, available)
    if pilot:  # phase 1: only the pilot cases, on the baseline alone; the rest is planned once N is known
        units = [(*u[:2], d.pilot_instances, *u[3:]) for u in units if case_key(u[0], u[1]) in pilot]
        blocks = [[suite.baseline]]
    skip = done or {}
    cases: list[Case] = []
    rounds = max(u[2] for u in units)
    for inst in range(rounds):
        if len(blocks) > 1:  # one block at a time; which goes first is seeded per round (drift hits all alike)
            rng.shuffle(blocks)
        for block in blocks:
            for name, point, n_inst, reps, warm, tmo, caps in units:
                if inst >= n_inst:
                    continue
                order = list(block)
                rng.shuffle(order)
                for target in order:
                    if target == suite.baseline and inst < skip.get(case_key(name, point), 0):
                        continue
                    if inst >= caps.get(target, n_inst):
                        continue
                    cases.append(
                        Case(first_index + len(cases), target, name, point, inst, reps, warm, tmo, d.settle_s, d.hold_s)
                    )
    return Plan(cases, seed, list(names), suite.baseline, pilot, only)


def _caps(suite: Suite, own: dict[str, int], names: list[str], available: list[str]) -> dict[str, int]:
    """Most instances per case by target: the suite's target_instances, a workload's own over them."""
    caps = {t: n for src in (suite.target_instances, own) for name, n in src.items() for t in select([name], available)}
    unknown = sorted(set(caps) - set(names))
    if unknown and suite.targets:  # a shipped suite may cap a target (vm) that this run's targets file lacks
        raise ConfigError(f"suite {suite.name!r}: target_instances names target(s) {unknown}, not among {names}")
    return caps


def select(names: list[str], available: list[str]) -> list[str]:
    """Names as a suite writes them: `box` also stands for every `box@<runtime>` a runtime axis made of it."""
    out: list[str] = []
    for name in names:
        if name in available:
            out.append(name)
            continue
        variants = [t for t in available if t.startswith(name + VARIANT_SEP)]
        out += variants or [name]  # an unknown name stays, to be reported by the caller
    return list(dict.fromkeys(out))


def _blocks(suite: Suite, names: list[str], available: list[str]) -> list[list[str]]:
    """The suite's `blocks` restricted to the targets of this run, plus one block of every unlisted target."""
    seen: dict[str, int] = {}
    for i, block in enumerate(suite.blocks):
        for target in select(block, available):
            if target in seen:
                raise ConfigError(f"suite {suite.name!r}: target {target!r} is in more than one block")
            if target not in names:
                raise ConfigError(f"suite {suite.name!r}: block names target {target!r}, not among {names}")
            seen[target] = i
    out = [[t for t in names if seen.get(t) == i] for i in range(len(suite.blocks))]
    out.append([t for t in names if t not in seen])
    return [b for b in out if b]
