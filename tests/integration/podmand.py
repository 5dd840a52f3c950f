"""Access to podman and gVisor's runsc for tests: the CI test image in podman's store, the labelled containers
podman holds, and whether dockerd has runsc registered.

`.ci/run` installs both (scripts/setup-runtimes, called by scripts/ci-setup); locally, tests skip when either is
missing — and fail when BENCHBED_REQUIRE includes `podman` or `runsc`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def labelled_containers(run: str | None = None) -> list[str]:
    """benchbed's containers in podman's store: all, or one run's (other runs may share the machine)."""
    label = "benchbed.run" if run is None else f"benchbed.run={run}"
    out = _podman("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}")
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


NOBODY = 65534
STORAGE_CONF = '[storage]\ndriver = "vfs"\n[storage.options]\nignore_chown_errors = "true"\n'


class Rootless:
    """An unprivileged user's own podman (user `nobody`, a private HOME, runtime and config directory): vfs storage
    with podman's single-UID mapping, so it needs no uidmap package or /etc/subuid range. Root only."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.env = {
            "HOME": str(base / "home"),
            "XDG_RUNTIME_DIR": str(base / "run"),
            "XDG_CONFIG_HOME": str(base / "home" / ".config"),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        conf = base / "home" / ".config" / "containers"
        conf.mkdir(parents=True)
        (conf / "storage.conf").write_text(STORAGE_CONF)
        (base / "run").mkdir(mode=0o700)
        base.chmod(0o755)
        for path in [base, *base.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)

    def argv(self, *args: str, env: dict[str, str] | None = None) -> list[str]:
        pairs = [f"{k}={v}" for k, v in {**self.env, **(env or {})}.items()]
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "env", "-i", *pairs, *args]

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args, env=env), capture_output=True, text=True, timeout=timeout, check=False)

    def load(self, tag: str) -> None:
        """Copy an image from dockerd into this user's store (a `docker save` archive, as podman load takes)."""
        archive = self.base / "image.tar"
        done = subprocess.run(["docker", "save", tag, "-o", str(archive)], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        os.chown(archive, NOBODY, NOBODY)
        loaded = self.run("podman", "load", "-q", "-i", str(archive))
        assert loaded.returncode == 0, loaded.stderr
        archive.unlink()

    def containers(self) -> list[str]:
        out = self.run("podman", "ps", "-a", "--filter", "label=benchbed.run", "--format", "{{.Names}}")
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    def python(self) -> str | None:
        """An interpreter the user may run with this one's version (a venv under /root is not theirs to run)."""
        want = f"{sys.version_info[0]}.{sys.version_info[1]}"
        for candidate in (sys.executable, "/usr/bin/python3", f"/usr/bin/python{want}"):
            got = self.run(candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])", timeout=60)
            if got.returncode == 0 and got.stdout.strip() == want:
                return candidate
        return None


def small_image() -> str:
    """The smallest image with python3 that dockerd has: the fresh-machine rehearsal's bookworm when it was built
    (vfs copies the whole image per container), else the test image."""
    with dockerd.engine() as client:
        fresh = [tag for image in client.images.list("benchbed/fresh-debian") for tag in image.tags]
    return sorted(fresh)[0] if fresh else dockerd.test_image()
