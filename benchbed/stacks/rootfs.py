"""An OCI image's root filesystem on this host, unpacked once and cached by image id.

A stack is one root filesystem. To run bare-metal instances on the *same* userland as a container, the image is
exported through the Docker engine (`create` + `export`, the flattened filesystem a container would see) and
unpacked with GNU tar, numeric owners kept. The cache directory is named by the image id, so a rebuilt tag gets a
new directory and a cached one can never be stale; it is filled under a temporary name and renamed into place
only when complete, so an interrupted unpack leaves nothing that looks usable (and `sweep` removes it).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbed.errors import ProvisionError, TargetError
from benchbed.owner import pid_alive

log = logging.getLogger(__name__)

CACHE_ROOT = Path(os.environ.get("BENCHBED_STACK_CACHE", "/var/lib/benchbed/stacks"))
PARTIAL_PREFIX = ".partial-"
LABEL = "benchbed.stack-export"


@dataclass(frozen=True)
class Rootfs:
    image: str
    image_id: str  # sha256:…
    path: Path
    unpack_s: float  # 0.0 when the cache already had it
    env: tuple[str, ...] = ()  # the image's configured environment (PATH, LANG, ...), as `docker run` applies it


def cache_dir(image_id: str, root: Path = CACHE_ROOT) -> Path:
    return root / image_id.replace("sha256:", "")[:64]


def _client() -> Any:
    try:
        import docker
        import docker.errors
    except ImportError as err:
        raise TargetError(
            "stack: reading an image needs the Docker SDK", hint="pip install 'benchbed[docker]'"
        ) from err
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as err:
        raise ProvisionError(
            "stack: Docker engine not reachable, so the stack image cannot be read", hint="is dockerd running?"
        ) from err
    return client


@dataclass(frozen=True)
class Image:
    """What the controller's Docker engine says of a stack image."""

    name: str
    id: str  # sha256:…
    env: tuple[str, ...]  # its configured environment (PATH, LANG, ...), as `docker run` applies it


def inspect(image: str) -> Image:
    import docker.errors

    client = _client()
    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound as err:
        raise ProvisionError(
            f"stack: image {image!r} not found in the Docker engine", hint="build or pull it first"
        ) from err
    finally:
        client.close()
    return Image(image, str(found.id), tuple((found.attrs.get("Config") or {}).get("Env") or ()))


def image_id(image: str) -> str:
    """The engine's id (sha256:…) of `image`, which names every cache built from it."""
    return inspect(image).id


@contextmanager
def exported(image_id: str) -> Iterator[Iterator[bytes]]:
    """The image's flattened filesystem as a tar stream (`docker create` + `export`); the container is removed after."""
    client = _client()
    container = client.containers.create(image_id, command=["/bin/true"], labels={LABEL: str(os.getpid())})
    try:
        yield container.export(chunk_size=1 << 20)
    finally:
        container.remove(force=True)
        client.close()


def ensure_rootfs(image: str, root: Path = CACHE_ROOT) -> Rootfs:
    """The unpacked rootfs of `image`, unpacking it first if this host has not yet (one clear line on failure)."""
    info = inspect(image)
    final = cache_dir(info.id, root)
    if (final / "rootfs").is_dir():
        return Rootfs(image, info.id, final / "rootfs", 0.0, info.env)
    t0 = time.perf_counter()
    _unpack(info.id, final)
    return Rootfs(image, info.id, final / "rootfs", time.perf_counter() - t0, info.env)


def _unpack(image_id: str, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{os.getpid()}-", dir=final.parent))
    try:
        (partial / "rootfs").mkdir()
        log.info("stack: unpacking %s into %s", image_id, final)
        with tempfile.TemporaryFile() as errors, exported(image_id) as chunks:
            tar = subprocess.Popen(
                ["tar", "-x", "--numeric-owner", "-p", "-C", str(partial / "rootfs")],
                stdin=subprocess.PIPE,
                stderr=errors,
            )
            assert tar.stdin is not None
            try:
                for chunk in chunks:
                    tar.stdin.write(chunk)
            finally:
                tar.stdin.close()
                rc = tar.wait()
            errors.seek(0)
            last = errors.read().decode(errors="replace").strip().splitlines()[-1:]
        if rc != 0:
            raise ProvisionError(f"stack: unpacking {image_id} failed (tar exit {rc}): {' '.join(last)}")
        publish(partial, final, final / "rootfs")
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def publish(partial: Path, final: Path, proof: Path) -> None:
    """Rename a finished cache entry into place. If another harness finished the same one first (`proof` exists
    there), theirs is as good as ours and the caller removes its own copy."""
    try:
        partial.rename(final)
    except OSError:
        if not proof.exists():
            raise


def sweep(root: Path = CACHE_ROOT, prefix: str = PARTIAL_PREFIX) -> list[str]:
    """Remove half-filled `<prefix><pid>-…` directories whose harness is gone (a SIGKILL mid-unpack or mid-build)."""
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for entry in root.glob(f"{prefix}*"):
        pid = entry.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and pid_alive(int(pid)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(str(entry))
    return removed
