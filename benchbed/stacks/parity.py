"""Stack parity of a comparison: did both sides of a ratio run the same userland bytes?

Read by `benchbed compare` and by the report, from what every run records: each case's `stack_digest` (cases.jsonl)
and each distinct stack's file list (env/<target>.json, `stacks`). The digest covers what the workload loaded, so
parity is judged per (workload, params): `util.noop` may be same where `cpu.gemm` differs by its BLAS.
A row is `same`, `differs` (with the files), `unknown` (a side recorded no digest: an older run, a failed agent),
or `under test` (`--under-test stack`: the difference is the point of the run, e.g. a library upgrade).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from benchbed.fmt import params_label
from benchbed.stacks.diff import StackSummary, diff
from benchbed.stats import canonical_params

SAME, DIFFERS, UNKNOWN, UNDER_TEST = "same", "differs", "unknown", "under test"


@dataclass(frozen=True)
class SideStacks:
    """One target of one run: its digests per (workload, params) and its stack records by digest."""

    digests: dict[tuple[str, str], set[str]]
    records: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, cases: pd.DataFrame, env: Mapping[str, Any], target: str) -> SideStacks:
        digests: dict[tuple[str, str], set[str]] = {}
        if "stack_digest" in cases.columns and not cases.empty:
            mine = cases[(cases["target"] == target) & cases["stack_digest"].notna()]
            for w, p, d in zip(mine["workload"], mine["params"], mine["stack_digest"], strict=True):
                digests.setdefault((str(w), canonical_params(p)), set()).add(str(d))
        records = env.get(target, {}).get("stacks") or {}
        return cls(digests, {str(k): dict(v) for k, v in records.items() if isinstance(v, dict)})

    def one(self, key: tuple[str, str]) -> str | None:
        """The digest of this case, when every instance agreed on one."""
        found = self.digests.get(key, set())
        return next(iter(found)) if len(found) == 1 else None


def judge(a: SideStacks, b: SideStacks, key: tuple[str, str], a_name: str, b_name: str) -> tuple[str, str]:
    """(state, note) for one (workload, params) between two sides."""
    da, db = a.digests.get(key, set()), b.digests.get(key, set())
    if not da or not db:
        return UNKNOWN, f"stack of {a_name if not da else b_name} not recorded"
    if da == db and len(da) == 1:
        return SAME, ""
    if len(da) > 1 or len(db) > 1:
        which = a_name if len(da) > 1 else b_name
        return DIFFERS, f"stack differs between instances of {which}"
    (ka,), (kb,) = da, db
    return DIFFERS, diff(a.records.get(ka, {"digest": ka}), b.records.get(kb, {"digest": kb})).summary(a_name, b_name)


def annotate(
    verdicts: pd.DataFrame, sides: Mapping[tuple[str, str], tuple[SideStacks, SideStacks]], *, accepted: bool
) -> pd.DataFrame:
    """`verdicts` with `stack` and `stack_note` columns; `sides` maps (base, target) labels to their stacks."""
    states, notes = [], []
    for r in verdicts.to_dict("records"):
        pair = sides.get((str(r["base"]), str(r["target"])))
        if pair is None:
            state, note = UNKNOWN, ""
        else:
            key = (str(r["workload"]), canonical_params(r["params"]))
            state, note = judge(pair[0], pair[1], key, str(r["base"]), str(r["target"]))
        if state == DIFFERS and accepted:
            state = UNDER_TEST
        states.append(state)
        notes.append(note)
    out = verdicts.copy()
    out["stack"] = states
    out["stack_note"] = notes
    return out


def summary(cases: pd.DataFrame, targets: Iterable[str]) -> str:
    """The report header's line: identical across the targets for every workload, or where they differ."""
    if "stack_digest" not in cases.columns or cases["stack_digest"].dropna().empty:
        return "stack not recorded (a run from before stack digests, or no instance finished)"
    names = [t for t in targets if t in set(cases["target"])]
    differing: list[str] = []
    shared: set[str] = set()
    mine = cases[cases["target"].isin(names)]
    for (w, p), g in mine.groupby([mine["workload"], mine["params"].map(canonical_params)]):
        per = {str(t): _only(g[g["target"] == t]["stack_digest"]) for t in names if t in set(g["target"])}
        s = StackSummary(per)
        if s.identical:
            shared.update(d for d in per.values() if d)
        elif len(per) > 1:
            differing.append(f"{w} {params_label(p)}: {s.headline()}")
    if not differing:
        digests = ", ".join(sorted(d[:12] + "…" for d in shared))
        return f"stack identical across {', '.join(names)} for every workload (digests {digests})"
    return "; ".join(differing)


def expected_differences(env: Mapping[str, Any], targets: Iterable[str]) -> list[str]:
    """What differs by design whatever the digests say: inside a VM the GPU driver is necessarily the guest's own
    (a container or a chroot borrows the host's). Driver libraries are outside the stack digest, so this is named
    here rather than flagged."""
    vms = [t for t in targets if ((env.get(t) or {}).get("stack_image") or {}).get("boundary") == "vm"]
    if not vms:
        return []
    return [
        f"GPU driver: the guest's own in {', '.join(vms)} (a VM cannot use the host's); outside the stack digest, "
        "it is the one expected difference"
    ]


def _only(digests: pd.Series) -> str | None:
    found = set(digests.dropna().astype(str))
    return next(iter(found)) if len(found) == 1 else None
