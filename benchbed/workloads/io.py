"""Storage workloads: sequential/random reads, sequential writes, fsync latency. Stdlib-only; runs in targets.

Sizes follow fio: `file_size_mb` is MiB (2^20 bytes) and `block_kb` is KiB (2^10 bytes), so `bs=1M size=64M`
means the same thing in both. Throughput is reported in MB/s = 1e6 bytes/s (fio's "MB/s", not "MiB/s").

O_DIRECT is used where the filesystem accepts it, so a sample measures the device and the isolation boundary,
not the page cache. Where it does not (tmpfs, some overlayfs, non-Linux) the file is read buffered after
`fsync` + `posix_fadvise(DONTNEED)`, and that drop is checked with mincore(2). Every sample's `io_mode` label says
which of these really happened: "direct", "buffered-fadvise-dontneed" (cache drop done and verified, or not
verifiable — then `cache_resident_pct` is absent), or "buffered" (the data may come from memory). `fs_type` names
the filesystem, because O_DIRECT on tmpfs (Linux ≥ 6.6) opens fine yet is memory I/O all the same.

Only Python ≥ 3.9 stdlib here: targets run these with their own python3.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import random
import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbed.workloads.base import Context, Sample, Skipped, workload

KiB = 1024
MiB = 1024 * KiB
MB = 1_000_000
FILL_CHUNK = 4 * MiB
MEMORY_FS = frozenset({"tmpfs", "ramfs", "hugetlbfs"})
DIRECT, DROPPED, BUFFERED = "direct", "buffered-fadvise-dontneed", "buffered"
RESIDENT_LIMIT_PCT = 1.0  # more than this still cached after DONTNEED: the drop did not work, say "buffered"


@dataclass(frozen=True)
class SeqIO:
    """file_size_mb in MiB, block_kb in KiB (fio's M and k)."""

    file_size_mb: int = 64
    block_kb: int = 1024
    direct: bool = True


@dataclass(frozen=True)
class RandRead:
    """file_size_mb in MiB, block_kb in KiB; `ops` reads per sample at distinct block-aligned offsets."""

    file_size_mb: int = 64
    block_kb: int = 4
    ops: int = 2000
    direct: bool = True
    seed: int = 0


@dataclass(frozen=True)
class Fsync:
    """block_kb in KiB appended per op; each op is write + fsync."""

    block_kb: int = 4
    ops: int = 200


# --- helpers -------------------------------------------------------------------------------------------------


def _positive(**values: int) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")


def _geometry(file_size_mb: int, block_kb: int) -> tuple[int, int]:
    """(file bytes, block bytes); whole blocks only, so every O_DIRECT offset stays aligned."""
    _positive(file_size_mb=file_size_mb, block_kb=block_kb)
    size, block = file_size_mb * MiB, block_kb * KiB
    if size % block:
        raise ValueError(f"file_size_mb={file_size_mb} MiB is not a whole number of block_kb={block_kb} KiB blocks")
    return size, block


def fs_type(path: Path) -> str | None:
    """Filesystem type of `path` from /proc/self/mountinfo (longest mount point wins); None off Linux."""
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, found = -1, None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # "\040" is a space
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > best:
            best, found = len(mount), right.split()[0]
    return found


def _check_space(scratch: Path, need: int) -> None:
    st = os.statvfs(scratch)
    free = st.f_bavail * st.f_frsize
    if free < need + 16 * MiB:
        raise Skipped(f"scratch dir {scratch} has {free / MiB:.0f} MiB free, this workload needs {need / MiB:.0f} MiB")


def _need_vectored_io() -> None:
    if not (hasattr(os, "preadv") and hasattr(os, "pwritev")):
        raise Skipped("os.preadv/os.pwritev are not available on this platform (needed for aligned O_DIRECT I/O)")


def _fill(path: Path, size: int) -> None:
    """Create the file with incompressible data and make it durable; not timed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = size
        while left:
            chunk = os.urandom(min(FILL_CHUNK, left))
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            left -= len(chunk)
        os.fsync(fd)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # leave the memory to the workload
    finally:
        os.close(fd)


def _aligned(size: int, random_fill: bool = False) -> mmap.mmap:
    """Anonymous mmap: page-aligned, as O_DIRECT requires. Read buffers stay untouched until first read, as fio's."""
    buf = mmap.mmap(-1, size)
    if random_fill:
        buf[:] = os.urandom(size)
    return buf


def resident_pct(fd: int, size: int) -> float | None:
    """Percent of the file's pages in the page cache, via mincore(2) on a mapping never touched; None if unknowable."""
    if size == 0:
        return 0.0
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            return None
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vec = ctypes.create_string_buffer(pages)
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            resident = sum(b & 1 for b in vec.raw[:pages])
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    except (ImportError, OSError, AttributeError):
        return None
    return 100.0 * resident / pages


class _File:
    """A scratch file opened O_DIRECT when allowed, and the honest label of how each sample accessed it."""

    def __init__(self, path: Path, size: int, block: int, want_direct: bool, access: int) -> None:
        self.path, self.size, self.block = path, size, block
        self.fs = fs_type(path.parent)
        self.fd, self.mode = self._open(want_direct, access)

    def _open(self, want_direct: bool, access: int) -> tuple[int, str]:
        o_direct = getattr(os, "O_DIRECT", 0)
        if want_direct and o_direct and self.fs not in MEMORY_FS:
            try:
                fd = os.open(self.path, access | o_direct)
            except OSError as err:
                if err.errno != errno.EINVAL:
                    raise
            else:
                probe = _aligned(self.block)
                try:
                    os.preadv(fd, [probe], 0)  # alignment rules bite at the first I/O, not at open
                    return fd, DIRECT
                except OSError as err:
                    os.close(fd)
                    if err.errno != errno.EINVAL:
                        raise
                finally:
                    probe.close()
        fd = os.open(self.path, access)
        can_drop = hasattr(os, "posix_fadvise") and self.fs not in MEMORY_FS
        return fd, DROPPED if can_drop else BUFFERED

    def before_sample(self) -> dict[str, Any]:
        """Labels for the next sample; in fallback mode, first push the file out of the page cache."""
        labels: dict[str, Any] = {"io_mode": self.mode, "fs_type": self.fs}
        if self.mode != DROPPED:
            return labels
        os.fsync(self.fd)  # DONTNEED skips dirty pages
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        pct = resident_pct(self.fd, self.size)
        if pct is not None:
            labels["cache_resident_pct"] = round(pct, 2)
            if pct > RESIDENT_LIMIT_PCT:
                labels["io_mode"] = BUFFERED
        return labels

    def close(self) -> None:
        os.close(self.fd)


@contextlib.contextmanager
def _scratch_file(
    ctx: Context, name: str, size: int, block: int, want_direct: bool, access: int = os.O_RDONLY
) -> Iterator[_File]:
    """Create, open (read-only unless `access` says otherwise, as fio does) and always remove one data file."""
    _need_vectored_io()
    _check_space(ctx.scratch_dir, size)
    path = ctx.scratch_dir / name
    try:
        _fill(path, size)
        f = _File(path, size, block, want_direct, access)
        try:
            yield f
        finally:
            f.close()
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _percentiles_us(lat_ns: list[int]) -> tuple[float, float]:
    """(p50, p99) in µs, linear interpolation between order statistics (numpy's default method)."""
    if len(lat_ns) < 2:
        raise ValueError("need at least 2 ops for latency percentiles")
    q = statistics.quantiles(lat_ns, n=100, method="inclusive")
    return q[49] / 1e3, q[98] / 1e3


# --- workloads -----------------------------------------------------------------------------------------------


@workload("io.seq_read", params=SeqIO, tags={"io"})
def seq_read(p: SeqIO, ctx: Context) -> Iterator[Sample]:
    """Sequential read of a whole file, block by block (psync, queue depth 1); MB/s = 1e6 bytes/s."""
    size, block = _geometry(p.file_size_mb, p.block_kb)
    buf = _aligned(block)
    try:
        with _scratch_file(ctx, "seq_read.dat", size, block, p.direct) as f:
            bufs, fd, preadv, clock = [buf], f.fd, os.preadv, time.perf_counter_ns
            offsets = range(0, size, block)
            for phase, rep in ctx.schedule():
                labels = f.before_sample()
                t0 = clock()
                for off in offsets:
                    if preadv(fd, bufs, off) != block:
                        raise RuntimeError(f"short read at offset {off} of {f.path}")
                dt = (clock() - t0) / 1e9
                yield Sample("throughput", size / dt / MB, "MB/s", "higher", phase, rep, labels=labels)
    finally:
        buf.close()


@workload("io.seq_write", params=SeqIO, tags={"io"})
def seq_write(p: SeqIO, ctx: Context) -> Iterator[Sample]:
    """Sequential overwrite of a whole preallocated file, then one fsync, all timed; MB/s = 1e6 bytes/s.

    The file is written once before timing so samples measure steady overwrite, not block allocation; the
    closing fsync is inside the timing because without it a buffered write measures memory, not storage.
    """
    size, block = _geometry(p.file_size_mb, p.block_kb)
    buf = _aligned(block, random_fill=True)
    try:
        with _scratch_file(ctx, "seq_write.dat", size, block, p.direct, os.O_RDWR) as f:
            bufs, fd, pwritev, clock = [buf], f.fd, os.pwritev, time.perf_counter_ns
            offsets = range(0, size, block)
            for phase, rep in ctx.schedule():
                labels = f.before_sample()
                labels["fsync"] = "end-of-sample"
                t0 = clock()
                for off in offsets:
                    if pwritev(fd, bufs, off) != block:
                        raise RuntimeError(f"short write at offset {off} of {f.path}")
                os.fsync(fd)
                dt = (clock() - t0) / 1e9
                yield Sample("throughput", size / dt / MB, "MB/s", "higher", phase, rep, labels=labels)
    finally:
        buf.close()


def _random_offsets(rng: random.Random, blocks: int, block: int, ops: int) -> list[int]:
    """Distinct blocks within each pass over the file (fio's random map), so no read is served twice."""
    out: list[int] = []
    while len(out) < ops:
        out.extend(b * block for b in rng.sample(range(blocks), min(blocks, ops - len(out))))
    return out


@workload("io.rand_read", params=RandRead, tags={"io"})
def rand_read(p: RandRead, ctx: Context) -> Iterator[Sample]:
    """Random block-aligned reads (psync, queue depth 1): IOPS and per-read latency p50/p99 in µs."""
    size, block = _geometry(p.file_size_mb, p.block_kb)
    if p.ops < 2:
        raise ValueError("ops must be >= 2 for latency percentiles")
    rng = random.Random(p.seed)
    buf = _aligned(block)
    try:
        with _scratch_file(ctx, "rand_read.dat", size, block, p.direct) as f:
            if f.mode != DIRECT and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(f.fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: one read, one device I/O
            bufs, fd, preadv, clock = [buf], f.fd, os.preadv, time.perf_counter_ns
            lat = [0] * p.ops
            for phase, rep in ctx.schedule():
                offsets = _random_offsets(rng, size // block, block, p.ops)
                labels = f.before_sample()
                # Latency brackets the read call alone (as fio's clat does); IOPS counts the whole loop's time.
                start = clock()
                for i, off in enumerate(offsets):
                    t0 = clock()
                    n = preadv(fd, bufs, off)
                    lat[i] = clock() - t0
                    if n != block:
                        raise RuntimeError(f"short read at offset {off} of {f.path}")
                iops = p.ops / ((clock() - start) / 1e9)
                p50, p99 = _percentiles_us(lat)
                yield Sample("iops", iops, "IO/s", "higher", phase, rep, labels=dict(labels))
                yield Sample("lat_p50_us", p50, "us", "lower", phase, rep, labels=dict(labels))
                yield Sample("lat_p99_us", p99, "us", "lower", phase, rep, labels=dict(labels))
    finally:
        buf.close()


@workload("io.fsync", params=Fsync, tags={"io"})
def fsync_latency(p: Fsync, ctx: Context) -> Iterator[Sample]:
    """Append block_kb then fsync, `ops` times (a write-ahead log's pattern); latency of write+fsync in µs.

    Buffered writes (as logs do), so io_mode is "buffered"; the fsync makes each op reach stable storage.
    The file is truncated before each sample (not timed) so every sample appends to the same state.
    """
    _positive(block_kb=p.block_kb)
    if p.ops < 2:
        raise ValueError("ops must be >= 2 for latency percentiles")
    block = p.block_kb * KiB
    _check_space(ctx.scratch_dir, block * p.ops)
    data = os.urandom(block)
    path = ctx.scratch_dir / "fsync.dat"
    labels: dict[str, Any] = {"io_mode": BUFFERED, "fs_type": fs_type(ctx.scratch_dir), "fsync": "every-op"}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write, fsync, clock = os.write, os.fsync, time.perf_counter_ns
        for phase, rep in ctx.schedule():
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.fsync(fd)
            lat: list[int] = []
            for _ in range(p.ops):
                t0 = clock()
                if write(fd, data) != block:
                    raise RuntimeError(f"short write to {path}")
                fsync(fd)
                lat.append(clock() - t0)
            p50, p99 = _percentiles_us(lat)
            mean = statistics.fmean(lat) / 1e3
            yield Sample("lat_p50_us", p50, "us", "lower", phase, rep, labels=dict(labels))
            yield Sample("lat_p99_us", p99, "us", "lower", phase, rep, labels=dict(labels))
            yield Sample("lat_mean_us", mean, "us", "lower", phase, rep, labels=dict(labels))
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
