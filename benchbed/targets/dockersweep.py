"""Leftovers of dead runs in a Docker-API engine (dockerd, or podman's compatible service): the containers
benchbed labelled whose harness is gone. Apart from dockerengine so the per-instance code stays small."""

from __future__ import annotations

from contextlib import suppress

import docker

from benchbed.owner import owner_alive
from benchbed.targets.dockerargs import LABEL_OWNER, LABEL_RUN, LABEL_TARGET
from benchbed.targets.dockerengine import client_for


def sweep(url: str | None = None, *, everything: bool = False) -> list[str]:
    """Remove benchbed-labelled containers whose harness is gone (or all of them). Returns what was removed."""
    client = client_for(url, "cleanup")
    try:
        return sweep_with(client, everything)
    finally:
        client.close()


def sweep_with(client: docker.DockerClient, everything: bool) -> list[str]:
    removed = []
    # the low-level list carries the labels already: no per-container inspect that races with a teardown
    for row in client.api.containers(all=True, filters={"label": LABEL_RUN}):
        labels = row.get("Labels") or {}
        if everything or not owner_alive(labels.get(LABEL_OWNER, "")):
            name = (row.get("Names") or [row["Id"][:12]])[0].lstrip("/")
            with suppress(docker.errors.NotFound):
                client.api.remove_container(row["Id"], force=True)
                removed.append(f"container {name} (run {labels.get(LABEL_RUN)}, target {labels.get(LABEL_TARGET)})")
    return removed
