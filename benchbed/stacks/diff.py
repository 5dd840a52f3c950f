"""Are two targets' stacks the same bytes? Pure functions over the agent's `stack` records (agent/stack.py).

A ratio between targets is a boundary cost only when both ran the same userland. These functions turn the
per-target records into what a reader needs: one line for the report header, and for a pair of targets either
"same" or the files that differ — so a number is never shown as a plain boundary cost when it is not one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

SHOW_FILES = 6  # a header names the first few differing files, not hundreds of torch libraries


@dataclass(frozen=True)
class StackDiff:
    """Files that make two stacks differ, keyed by path (a file moved between paths counts on both sides)."""

    only_a: tuple[str, ...] = ()
    only_b: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unknown: bool = False  # one side recorded no digest (an old run, or the agent could not read its maps)

    @property
    def same(self) -> bool:
        return not (self.only_a or self.only_b or self.changed or self.unknown)

    def summary(self, a: str, b: str) -> str:
        if self.unknown:
            return f"stack of {a} or {b} not recorded"
        if self.same:
            return f"stack identical in {a} and {b}"
        parts = []
        if self.changed:
            parts.append(f"{len(self.changed)} differ ({_names(self.changed)})")
        if self.only_a:
            parts.append(f"{len(self.only_a)} only in {a} ({_names(self.only_a)})")
        if self.only_b:
            parts.append(f"{len(self.only_b)} only in {b} ({_names(self.only_b)})")
        return f"stack differs between {a} and {b}: " + "; ".join(parts)


def _names(paths: tuple[str, ...]) -> str:
    shown = [PurePosixPath(p).name for p in paths[:SHOW_FILES]]
    more = len(paths) - len(shown)
    return ", ".join(shown) + (f", +{more} more" if more > 0 else "")


def diff(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> StackDiff:
    if not a or not b or not a.get("digest") or not b.get("digest"):
        return StackDiff(unknown=True)
    if a["digest"] == b["digest"]:
        return StackDiff()
    fa: Mapping[str, str] = a.get("files") or {}
    fb: Mapping[str, str] = b.get("files") or {}
    return StackDiff(
        only_a=tuple(sorted(set(fa) - set(fb))),
        only_b=tuple(sorted(set(fb) - set(fa))),
        changed=tuple(sorted(p for p in set(fa) & set(fb) if fa[p] != fb[p])),
    )


@dataclass(frozen=True)
class StackSummary:
    """The report header's view: one digest per target (None where not recorded)."""

    digests: dict[str, str | None] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        values = set(self.digests.values())
        return len(values) == 1 and None not in values

    def headline(self) -> str:
        if not self.digests:
            return "stack not recorded"
        names = ", ".join(self.digests)
        if self.identical:
            digest = next(iter(self.digests.values()))
            return f"stack identical across {names} (digest {str(digest)[:12]}…)"
        groups: dict[str | None, list[str]] = {}
        for target, digest in self.digests.items():
            groups.setdefault(digest, []).append(target)
        return "stacks differ: " + "; ".join(
            f"{', '.join(ts)}: {d[:12] + '…' if d else 'not recorded'}" for d, ts in groups.items()
        )
