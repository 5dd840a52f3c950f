"""Finding and removing what dead runs left behind (containers, VMs and their overlays, workdirs here and on SSH
hosts).

Every object benchbed creates carries the run id and its harness's host:pid. A sweep removes those whose harness
is gone — at the start of every run, and on demand with `benchbed cleanup`. A live run's objects are left alone.
Each kind sweeps its own objects (`Kind.sweep`); this module only groups the specs by kind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from benchbed.errors import BenchbedError
from benchbed.schema import AnyTarget
from benchbed.targets.registry import kind, kinds

log = logging.getLogger(__name__)


def sweep(specs: Iterable[AnyTarget], *, everything: bool = False, strict: bool = False) -> list[str]:
    """Remove leftovers on every engine the targets use. Unreachable engines are skipped unless strict."""
    by_kind: dict[str, list[AnyTarget]] = {}
    for spec in specs:
        by_kind.setdefault(spec.kind, []).append(spec)
    removed: list[str] = []
    for name, group in by_kind.items():
        try:
            removed += kind(name).sweep(group, everything=everything)
        except BenchbedError as err:
            if strict:
                raise
            log.info("sweep skipped: %s", err)
    return removed


def cleanup_specs(endpoints: dict[str, str | None], *, targets_given: bool) -> list[AnyTarget]:
    """What `benchbed cleanup` sweeps besides a targets file: each kind's default (the local Docker engine, the
    system libvirt if used here), or the endpoint given for it on the command line."""
    found = (kind(name).cleanup_spec(endpoints.get(name), targets_given=targets_given) for name in kinds())
    return [spec for spec in found if spec is not None]
