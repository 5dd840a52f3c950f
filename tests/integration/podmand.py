"""Access to podman and gVisor's runsc for tests: the CI test image in podman's store, the labelled containers
podman holds, and whether dockerd has runsc registered.

`.ci/run` installs both (scripts/setup-runtimes, called by scripts/ci-setup); locally, tests skip when either is
missing — and fail when BENCHBED_REQUIRE includes `podman` or `runsc`.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from tests.integration import dockerd


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120, check=False)


def required_image() -> str:
    """The CI test image's tag in podman's store (copied from dockerd when podman lacks it), or skip / fail."""
    from tests.conftest import need

    if shutil.which("podman") is None:
        need("podman", "podman is not installed (scripts/setup-runtimes)")
    tag = dockerd.test_image()
    want = _podman("image", "inspect", "--format", "{{.Id}}", tag)
    if want.returncode == 0:
        return tag
    why = dockerd.missing_reason()
    if why or not dockerd.image_present(tag):
        need("podman", f"test image {tag} is neither in podman nor in dockerd ({why or 'not built'})")
    load = subprocess.run(
        f"docker save {tag} | podman load -q", shell=True, capture_output=True, text=True, timeout=600, check=False
    )
    if load.returncode != 0:
        need("podman", f"cannot copy {tag} from dockerd into podman: {load.stderr.strip()[-200:]}")
    return tag


def labelled_containers() -> list[str]:
    out = _podman("ps", "-a", "--filter", "label=benchbed.run", "--format", "{{.Names}}")
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def require_runsc() -> None:
    """Skip (fail under BENCHBED_REQUIRE=runsc) unless dockerd has gVisor's runtime registered."""
    from tests.conftest import need

    why = dockerd.missing_reason()
    if why:
        need("runsc", why)
    with dockerd.engine() as client:
        runtimes = client.info().get("Runtimes") or {}
    if "runsc" not in runtimes:
        need(
            "runsc",
            f"dockerd has no runtime 'runsc' (registered: {json.dumps(sorted(runtimes))}); run scripts/setup-runtimes",
        )
