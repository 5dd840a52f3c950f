"""The bare-metal stack boundary: the host's kernel and hardware, the image's bytes.

`wrap()` turns an agent command line into one that runs it chrooted into a cached image rootfs, inside a private
mount namespace (util-linux `unshare --mount --propagation private`), so every mount below disappears with the
instance's last process and nothing reaches the host's mount table. Per instance:
- an overlay (lower: the cached rootfs, upper/work: in the instance's workdir) so the cache is never written and
  every instance starts from the image as built, as a container does;
- `/proc`, `/sys`, `/dev` (with `/dev/shm`) bound from the host: no pid, net, ipc or uts namespace, no cgroup
  limit, no seccomp — deliberately none of what a container adds;
- the workdir (agent, scratch) bound at the same path, so the controller's paths hold inside;
- for GPUs, the host driver's user-space libraries bound in at their host paths and `ldconfig` run, the way the
  NVIDIA Container Toolkit injects them: the driver follows the host, as it does in a container;
- the environment is the image's (`env -i` + the image's Env), as `docker run` gives, not the controller's.
Needs root (mounts and chroot): without it, one line says so.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from benchbed.agent.stack import is_driver
from benchbed.errors import TargetError

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STATE = ".stack"  # per-instance overlay state inside the workdir

# $BB_ROOT: cached rootfs; $BB_STATE: overlay state dir; $BB_BINDS / $BB_LIBS: newline-separated host paths.
SCRIPT = r"""
set -eu
M=$BB_STATE/root
mkdir -p "$BB_STATE/upper" "$BB_STATE/work" "$M"
mount -t overlay benchbed-stack -o "lowerdir=$BB_ROOT,upperdir=$BB_STATE/upper,workdir=$BB_STATE/work" "$M"
for d in proc sys dev; do mkdir -p "$M/$d"; mount --rbind "/$d" "$M/$d"; done
printf '%s\n' "$BB_BINDS" | while IFS= read -r p; do
  [ -n "$p" ] || continue
  mkdir -p "$M$p"; mount --bind "$p" "$M$p"
done
if [ -n "$BB_LIBS" ]; then
  printf '%s\n' "$BB_LIBS" | while IFS= read -r p; do
    [ -n "$p" ] || continue
    real=$(readlink -f "$p")
    mkdir -p "$M$(dirname "$real")" "$M$(dirname "$p")"
    [ -e "$M$real" ] || : > "$M$real"
    mount --bind "$real" "$M$real"
    [ "$p" = "$real" ] || ln -sf "$real" "$M$p"
  done
  chroot "$M" /sbin/ldconfig
fi
exec chroot "$M" "$@"
"""


def require_root(where: str) -> None:
    if os.geteuid() != 0:
        raise TargetError(
            f"{where}: running on a stack (chroot into the image) needs root",
            hint="run benchbed as root, or set `sudo: true` on an ssh target",
        )


def host_driver_libraries(ldconfig_output: str | None = None) -> list[str]:
    """The GPU driver's user-space libraries this host's loader knows (libcuda, libnvidia-*), as ldconfig lists them."""
    if ldconfig_output is None:
        try:
            ldconfig_output = subprocess.run(
                ["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=False, timeout=10
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
    found: dict[str, None] = {}
    for line in ldconfig_output.splitlines():
        m = re.search(r"=>\s*(/\S+)$", line.strip())
        native = "x86-64" in line or "AArch64" in line  # not the i386 copies a multilib host also lists
        if m and native and is_driver(m.group(1)):
            found.setdefault(m.group(1), None)
    return list(found)


def _no_newline(paths: Iterable[str]) -> list[str]:
    out = []
    for p in paths:
        if "\n" in p or not p.startswith("/"):
            raise TargetError(f"stack: path {p!r} must be absolute and on one line")
        out.append(p)
    return out


def wrap(
    argv: Sequence[str],
    *,
    rootfs: Path | str,
    workdir: str,
    binds: Iterable[str] = (),
    image_env: Iterable[str] = (),
    driver_libs: Iterable[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) that runs `argv` chrooted into `rootfs` as described in the module docstring."""
    env_args = list(image_env) or [DEFAULT_PATH]
    if not any(e.startswith("PATH=") for e in env_args):
        env_args.insert(0, DEFAULT_PATH)
    if not any(e.startswith("HOME=") for e in env_args):
        env_args.append("HOME=/root")  # as docker sets it for root
    wrapped = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        SCRIPT,
        "benchbed-stack",
        "/usr/bin/env",
        "-i",
        *env_args,
        *argv,
    ]
    extra = {
        "BB_ROOT": str(rootfs),
        "BB_STATE": f"{workdir}/{STATE}",
        "BB_BINDS": "\n".join(_no_newline([workdir, *binds])),
        "BB_LIBS": "\n".join(_no_newline(driver_libs)),
    }
    return wrapped, extra
