"""Access to the real Docker engine and the CI test image, for tests and benchmarks.

`.ci/run` starts dockerd and builds the image (scripts/build-test-image); locally, tests skip when either is
missing — and fail when BENCHBED_REQUIRE includes `docker`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOCKET = Path("/var/run/docker.sock")


def missing_reason() -> str | None:
    try:
        import docker
    except ImportError:
        return "the docker package is not installed (pip install 'benchbed[docker]')"
    if not SOCKET.exists():
        return f"no Docker engine socket at {SOCKET} (start dockerd)"
    try:
        docker.from_env().ping()
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
    import docker
    import docker.errors

    try:
        docker.from_env().images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def labelled_containers() -> list[str]:
    import docker

    return [c.name for c in docker.from_env().containers.list(all=True, filters={"label": "benchbed.run"})]
