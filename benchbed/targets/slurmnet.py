"""How serve.latency's across-the-boundary path reaches a server in a Slurm job: at the compute node's own address.

A job step shares its node's network namespace (Slurm isolates CPUs, memory and devices, not the network), so the
server listens on the address slurmctld itself reaches the node at (`NodeAddr` in `scontrol show node`) and the
controller, a login node on the cluster's network, connects there: no tunnel, no port mapping. benchbed cannot know
whether that address is routable from the controller; it is used as it is (see docs/targets-slurm.md).

A step in a container (`stack`, `container`) shares the node's network too, unless the bundle's config.json gives
it a network namespace of its own: then nothing outside reaches its port and the across path is left out.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from benchbed.errors import ProvisionError
from benchbed.targets import slurmcli as cli

VIA = "node-address"
log = logging.getLogger(__name__)


def own_network(bundle: str) -> bool | None:
    """Does the OCI bundle's config.json give the container a network namespace of its own (a `network` entry
    without a `path` to join)? None when the controller cannot read it (a bundle only the nodes see)."""
    try:
        cfg = json.loads((Path(bundle) / "config.json").read_text())
        spaces = cfg.get("linux", {}).get("namespaces") or []
        return any(ns.get("type") == "network" and not ns.get("path") for ns in spaces)
    except (OSError, ValueError, AttributeError):
        return None


class NodeAddresses:
    """The address of each node a target's jobs ran on, looked up once per run (one `scontrol` call per node)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def of(self, node: str) -> str:
        with self._lock:
            if node not in self._known:
                self._known[node] = cli.node_addr(node, timeout=self.timeout)
            return self._known[node]

    def serve_net(self, node: str | None, bundle: str | None, port: int = 0) -> dict[str, Any]:
        """`Session.serve_net` of a step on `node` (in `bundle`, if any): bind the node's address and `port` (0: any);
        or no port, with why (the agent's skip reason when `path: across` is asked for alone)."""
        unreachable = {"bind": "127.0.0.1", "port": None}
        if bundle and own_network(bundle):
            return {**unreachable, "why": f"the container bundle {bundle} has its own network namespace"}
        if not node:
            return {**unreachable, "why": "the job's node is not known"}
        try:
            return {"bind": self.of(node), "port": port}
        except ProvisionError as err:
            log.warning("serve.latency: %s; the across path is left out", err)
            return {**unreachable, "why": str(err)}
