"""Finding and removing what dead runs left behind (containers, VMs and their overlays, namespace workdirs).

Every object benchbed creates carries the run id and its harness's host:pid. A sweep removes those whose harness
is gone — at the start of every run, and on demand with `benchbed cleanup`. A live run's objects are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from benchbed.config import AnyTarget
from benchbed.errors import BenchbedError
from benchbed.targets.base import install_hint

log = logging.getLogger(__name__)


def docker_engines(specs: Iterable[AnyTarget]) -> list[str | None]:
    """Distinct engines the targets use (None = the local default)."""
    seen: list[str | None] = []
    for spec in specs:
        if spec.kind == "docker" and spec.docker_host not in seen:
            seen.append(spec.docker_host)
    return seen


def sweep(specs: Iterable[AnyTarget], *, everything: bool = False, strict: bool = False) -> list[str]:
    """Remove leftovers on every engine the targets use. Unreachable engines are skipped unless strict."""
    specs = list(specs)  # walked once per kind: a generator would reach only the first
    removed: list[str] = []
    for url in docker_engines(specs):
        try:
            from benchbed.targets.docker import sweep as docker_sweep

            removed += docker_sweep(url, everything=everything)
        except ImportError as err:
            if strict:
                raise BenchbedError("cleanup needs the docker package", hint=install_hint("docker")) from err
        except BenchbedError as err:
            if strict:
                raise
            log.info("sweep skipped: %s", err)
    for uri, overlays in libvirt_hosts(specs):
        try:
            from benchbed.targets.libvirt import sweep as libvirt_sweep

            removed += libvirt_sweep(uri, overlays, everything=everything)
        except ImportError as err:
            from benchbed.targets.vmspec import sweep_overlays

            removed += sweep_overlays(overlays, everything=everything)  # the files, at least
            if strict:
                raise BenchbedError("cleanup needs libvirt-python", hint=install_hint("libvirt")) from err
        except BenchbedError as err:
            if strict:
                raise
            log.info("sweep skipped: %s", err)
    if any(spec.kind == "ns" for spec in specs):
        from benchbed.targets.ns import sweep as ns_sweep

        removed += ns_sweep(everything=everything)
    return removed


def libvirt_hosts(specs: Iterable[AnyTarget]) -> list[tuple[str, Path]]:
    """Distinct (libvirt URI, overlay directory) pairs the targets use."""
    from benchbed.targets.vmspec import overlay_dir

    seen: list[tuple[str, Path]] = []
    for spec in specs:
        if spec.kind == "libvirt" and (spec.uri, overlay_dir(spec)) not in seen:
            seen.append((spec.uri, overlay_dir(spec)))
    return seen
