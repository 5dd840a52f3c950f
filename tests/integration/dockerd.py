"""Access to the real Docker engine and the CI test image, for tests and benchmarks.

`.ci/run` starts dockerd and builds the image (scripts/build-test-image); locally, tests skip when either is
missing — and fail when BENCHBED_REQUIRE includes `docker`.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SOCKET = Path("/var/run/docker.sock")


@contextlib.contextmanager
def engine() -> Iterator[Any]:
    """A client that is always closed: -W error turns a leaked socket into a test failure."""
    import docker

    client = docker.from_env()
    try:
        yield client
    finally:
        client.close()


def missing_reason() -> str | None:
    try:
        import docker  # noqa: F401
    except ImportError:
        return "the docker package is not installed (pip install 'benchbed[docker]')"
    if not SOCKET.exists():
        return f"no Docker engine socket at {SOCKET} (start dockerd)"
    try:
        with engine() as client:
            client.ping()
    except Exception as err:
        return f"Docker engine not answering: {err}"
    return None


def test_image() -> str:
    """The tag scripts/build-test-image produces for the current recipe (built by .ci/run)."""
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-test-image"), "--print-tag"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def image_present(tag: str) -> bool:
    import docker.errors

    with engine() as client:
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
    return True


def runs_under(out: Path) -> set[str]:
    """The run ids whose result directories sit in `out`: a test's own runs, not those of whoever else shares the
    engine (a developer's run, a second checkout's tests)."""
    return {p.name for p in out.iterdir() if p.is_dir()} if out.is_dir() else set()


def labelled_containers(scope: str | Path | None = None) -> list[str]:
    """benchbed's containers on this engine: of one run (a run id), of the runs whose results go to a directory, or
    all of them. Tests scope: other test runs and developers may share the engine."""
    runs = runs_under(scope) if isinstance(scope, Path) else {scope} if scope else None
    assert runs != set(), f"no run directory under {scope}: the check would pass vacuously"
    with engine() as client:  # low-level list: no per-container inspect that races with a concurrent removal
        rows = client.api.containers(all=True, filters={"label": "benchbed.run"})
    mine = [row for row in rows if runs is None or (row.get("Labels") or {}).get("benchbed.run") in runs]
    return [name.lstrip("/") for row in mine for name in row.get("Names", [])[:1]]


def required_image() -> str:
    """The CI test image's tag, or skip (fail under BENCHBED_REQUIRE=docker) when the engine or the image is absent.
    One body for every test module's `image` fixture."""
    from tests.conftest import need

    why = missing_reason()
    if why:
        need("docker", why)
    tag = test_image()
    if not image_present(tag):
        need("docker", f"test image {tag} not built (run scripts/build-test-image)")
    return tag
