"""The sweep of dead runs' libvirt leftovers: benchbed domains whose harness is gone, their overlays, save files
and claims (the files alone are `vmspec.sweep_overlays`, which needs no libvirt)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from contextlib import suppress
from pathlib import Path

import libvirt

from benchbed.owner import owner_alive
from benchbed.targets import vmspec
from benchbed.targets.libvirtvm import connect
from benchbed.targets.vmspec import METADATA_NS, PREFIX


def _metadata(dom: libvirt.virDomain) -> dict[str, str]:
    try:
        root = ET.fromstring(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))
    except (libvirt.libvirtError, ET.ParseError):
        return {}
    return {child.tag.rpartition("}")[2]: child.text or "" for child in root}


def sweep(uri: str, overlays: Path | None = None, *, everything: bool = False) -> list[str]:
    """Destroy benchbed domains whose harness is gone (or all), then remove dead runs' overlays."""
    conn = connect(uri, "cleanup")
    removed = []
    try:
        for dom in conn.listAllDomains(0):
            if not dom.name().startswith(PREFIX):
                continue
            meta = _metadata(dom)
            if not meta or not (everything or not owner_alive(meta.get("owner", ""))):
                continue
            with suppress(libvirt.libvirtError):
                persistent = dom.isPersistent()  # ask first: a transient domain is gone once destroyed
                if dom.isActive():
                    dom.destroy()
                if persistent:
                    dom.undefine()
                removed.append(f"domain {dom.name()} (run {meta.get('run')}, target {meta.get('target')})")
            overlay = Path(meta.get("overlay") or "/nonexistent")
            if overlay.exists():
                vmspec.remove_instance_files(
                    overlay.parent, overlay.name.removesuffix(".qcow2")
                )  # restored: not the domain's
                removed.append(f"overlay {overlay} (run {meta.get('run')}, target {meta.get('target')})")
    finally:
        with suppress(libvirt.libvirtError):
            conn.close()
    return removed + vmspec.sweep_overlays(overlays or vmspec.default_overlay_dir(), everything=everything)
