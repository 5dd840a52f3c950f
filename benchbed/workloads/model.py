"""model.load: how long a torch checkpoint takes to load, from a dropped and from a warm page cache.

Loading weights is where storage, the page cache and (for CUDA) host-to-device copies meet, and each of them
can sit behind a different layer in a container (overlayfs) or a VM (virtio-blk, the host's own page cache).
Stdlib-only at import; torch is imported inside the workload.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbed.workloads.base import Context, Sample, Skipped, require_module, workload
from benchbed.workloads.gpudevice import torch_cuda_problem

MiB = 1 << 20
STILL_CACHED = 0.05  # a "dropped" cache that still holds more than this share of the file did not drop


@dataclass(frozen=True)
class ModelLoad:
    size_mb: float = 64  # MiB of float32 weights in total
    device: str = "auto"  # cpu | cuda | auto (cpu always, plus cuda when torch can use it)
    tensors: int = 4

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"model.load: device {self.device!r} is not one of cpu, cuda, auto")
        if self.size_mb <= 0 or self.tensors < 1:
            raise ValueError("model.load: size_mb must be > 0 and tensors ≥ 1")


def resident_fraction(path: Path) -> float | None:
    """Share of the file's pages in the page cache, by mincore(2) through ctypes; None where that is unavailable.

    A private mapping is used only to get an address: mapping faults nothing in and mincore reads nothing."""
    try:
        import ctypes
        import mmap

        mincore = ctypes.CDLL(None, use_errno=True).mincore
    except (OSError, AttributeError, TypeError):
        return None
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    mincore.restype = ctypes.c_int
    size = path.stat().st_size
    if size == 0:
        return 0.0
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
            anchor = ctypes.c_char.from_buffer(mm)
            try:
                rc = mincore(ctypes.addressof(anchor), size, vec)
            finally:
                del anchor  # the mapping cannot close while a buffer export is alive
    except (OSError, ValueError):  # a filesystem that cannot be mapped: unverifiable, not an error
        return None
    if rc != 0:
        return None
    return sum(b & 1 for b in vec) / pages


def drop_page_cache(path: Path) -> tuple[str, str | None, float | None]:
    """Evict `path` from the page cache: fsync (dirty pages are never dropped), then POSIX_FADV_DONTNEED.

    Returns (page_cache label, problem or None, resident share after the drop or None if unverifiable).
    tmpfs, some overlay setups and gVisor keep the pages; mincore then shows it and the caller marks the sample."""
    if not hasattr(os, "posix_fadvise"):
        return "not-dropped", "os.posix_fadvise is unavailable on this platform, so 'cold' read from the cache", None
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError as err:
        return "not-dropped", f"posix_fadvise(DONTNEED) failed ({err}), so 'cold' read from the cache", None
    finally:
        os.close(fd)
    resident = resident_fraction(path)
    if resident is not None and resident > STILL_CACHED:
        problem = (
            f"after posix_fadvise(DONTNEED) mincore still shows {resident:.0%} of the checkpoint in the page "
            f"cache (tmpfs? a filesystem that ignores the hint?), so 'cold' is not cold"
        )
        return "not-dropped", problem, resident
    return "dropped-fadvise", None, resident


def _write_checkpoint(torch: Any, path: Path, p: ModelLoad) -> int:
    per_tensor = max(1, int(p.size_mb * MiB) // 4 // p.tensors)
    gen = torch.Generator().manual_seed(0)
    state = {f"layer{i}.weight": torch.randn(per_tensor, generator=gen) for i in range(p.tensors)}
    torch.save(state, str(path))
    return path.stat().st_size


def _load_s(torch: Any, path: Path, device: str) -> float:
    t0 = time.perf_counter_ns()
    state = torch.load(str(path), map_location=device, weights_only=True)
    state = {k: v.to(device) for k, v in state.items()}
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter_ns() - t0) / 1e9
    del state
    return seconds


@workload("model.load", params=ModelLoad, needs=("torch",), tags={"model", "io"})
def model_load(p: ModelLoad, ctx: Context) -> Iterator[Sample]:
    """torch.load of a float32 state_dict (weights_only) into cpu/cuda, page cache dropped vs warm; ms and MB/s.

    Metrics are `<device>_<cache>` (ms) and `<device>_<cache>_throughput` (MB/s = 1e6 bytes/s of file read), so
    statistics never mix cache states or devices. The checkpoint is written (untimed) and removed by the workload."""
    torch = require_module("torch", "model.load saves and loads a torch checkpoint")
    devices = ["cpu"] if p.device != "cuda" else []
    if p.device in ("cuda", "auto"):
        problem = torch_cuda_problem(torch)
        if problem is None:
            devices.append("cuda")
        elif p.device == "cuda":
            raise Skipped(problem)
    ctx.scratch_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.scratch_dir / f"benchbed-model-load-{os.getpid()}.pt"
    try:
        size = _write_checkpoint(torch, path, p)
        for phase, rep in ctx.schedule():
            for device in devices:
                page_cache, problem, resident = drop_page_cache(path)
                cold_s = _load_s(torch, path, device)
                warm_s = _load_s(torch, path, device)  # the cold load just read every page
                cold = {"device": device, "page_cache": page_cache, "bytes": size, "resident_after_drop": resident}
                warm = {"device": device, "page_cache": "warm", "bytes": size}
                for cache, seconds, labels, valid in (
                    ("cold", cold_s, cold, problem is None),
                    ("warm", warm_s, warm, True),
                ):
                    reason = None if valid else problem
                    name = f"{device}_{cache}"
                    yield Sample(name, seconds * 1e3, "ms", "lower", phase, rep, valid, reason, labels)
                    mbps = size / seconds / 1e6
                    yield Sample(f"{name}_throughput", mbps, "MB/s", "higher", phase, rep, valid, reason, labels)
    finally:
        path.unlink(missing_ok=True)
