"""A stack image as an OCI bundle for Slurm's container support (`srun --container=BUNDLE`, oci.conf on the nodes).

The bundle is the stack's rootfs (benchbed.stacks.rootfs: the image's flattened filesystem, unpacked once per host
and cached by image id: its cache directory is the bundle) plus a config.json written there: read-only root, fresh
pid/ipc/uts/mount namespaces, the image's environment, and bind mounts of the directories the agent needs from the
node (the instance workdir's parent, the scratch directory). slurmstepd replaces the process's argv, environment
and user with the step's, then hands the bundle to the runtime oci.conf names (runc here). The nodes must see the
bundle at the same path (one machine here; a shared filesystem, or the same cache on every node, on a cluster).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchbed.fileio import write_atomic
from benchbed.stacks.rootfs import Rootfs, ensure_rootfs


def config(rootfs: Rootfs, binds: Sequence[str]) -> dict[str, Any]:
    """The OCI runtime config of the bundle (runtime-spec 1.0): what `runc run -b BUNDLE` needs."""
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755"]},
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": ["rbind", "ro"]},
    ]
    mounts += [{"destination": b, "type": "bind", "source": b, "options": ["rbind", "rw"]} for b in binds]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sh"],
            "env": list(rootfs.env) or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},  # slurmstepd runs BUNDLE/rootfs whatever the config says
        "hostname": "benchbed",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def ensure_bundle(rootfs: Rootfs, binds: Sequence[str]) -> Path:
    """The bundle of this rootfs: the stack's cache directory itself (slurmstepd hands runc BUNDLE/rootfs, and
    runc refuses a linked rootfs), its config.json binding these directories plus those earlier runs bound."""
    bundle = rootfs.path.parent
    path = bundle / "config.json"
    try:
        known = [m["source"] for m in json.loads(path.read_text())["mounts"] if m.get("type") == "bind"]
    except (OSError, ValueError, KeyError, TypeError):
        known = []
    wanted = list(dict.fromkeys([*known, *binds]))
    body = json.dumps(config(rootfs, [b for b in wanted if b != "/etc/resolv.conf"]), indent=1)
    if not path.is_file() or path.read_text() != body:
        write_atomic(path, body)
    return bundle


def stack_bundle(image: str, binds: Sequence[str], where: str) -> tuple[Path, dict[str, str], float]:
    """The stack `image` as a bundle: its path, the `stack_image` record for the fingerprint, the unpack's seconds."""
    from benchbed.stacks import chroot

    chroot.require_root(where)
    rootfs = ensure_rootfs(image)
    record = {"name": rootfs.image, "id": rootfs.image_id, "boundary": "slurm-oci"}
    return ensure_bundle(rootfs, binds), record, rootfs.unpack_s
