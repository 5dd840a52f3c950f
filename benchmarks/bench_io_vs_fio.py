"""Fidelity check: io.seq_read and io.rand_read against fio at identical settings, on the very same file.

Both sides: same file, same size, same block size, O_DIRECT, synchronous pread (fio's psync engine), queue
depth 1, one job, the same CPU. The design is paired: a worker process drives the workload generator one sample
at a time and, while it is suspended between samples, runs fio on the workload's own data file; rounds alternate
who goes first, so drift of a shared or virtual disk (which can swing 2× within seconds) hits both alike, and
every pair gives a ratio. Every round is a fresh worker process with a freshly written file, and by default gives
one pair, so each benchbed sample comes from a fresh process just as each fio run does: on a VM the guest pages a
process happens to read into can make the same read 3–4× slower for that process's whole life, and comparing
one long-lived process with sixty fresh ones compares page placement, not tools. Goal: benchbed/fio within ±5 %.

    python benchmarks/bench_io_vs_fio.py --dir /var/tmp/benchbed-fio
    python benchmarks/bench_io_vs_fio.py --dir /var/tmp/benchbed-fio --aa   # fio vs fio: the disk's noise floor
    python benchmarks/bench_io_vs_fio.py --overhead /dev/shm                # per-read harness cost, no disk

Both tools are pinned to one CPU (fio inherits the affinity): on a VM a reader on the vCPU that takes the disk's
completion interrupt sees 4 KiB reads ~25 % faster than one on another vCPU, so unpinned runs compare placements.

Use a directory on the real disk (not a tmpfs /tmp). Needs `fio` on PATH (Debian: apt-get install fio).
The workload code is exactly what the agent ships (benchbed.workloads.io); the agent adds nothing inside the timed
region, so the worker drives it in-process to allow the pairing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbed.workloads import Context, Sample, load_builtins
from benchbed.workloads.io import MEMORY_FS, fs_type

FIO_COMMON = ("--direct=1", "--ioengine=psync", "--iodepth=1", "--numjobs=1", "--output-format=json")
Values = dict[str, list[float]]  # metric -> samples


@dataclass(frozen=True)
class Case:
    workload: str
    params: dict[str, Any]
    fio_job: tuple[str, ...]  # everything but --filename and FIO_COMMON
    metrics: dict[str, str]  # benchbed metric -> key understood by fio_value()


def make_cases(seq_mb: int, seq_kb: int, rand_mb: int, ops: int) -> list[Case]:
    return [
        Case(
            "io.seq_read",
            {"file_size_mb": seq_mb, "block_kb": seq_kb, "direct": True},
            ("--name=seq_read", f"--size={seq_mb}M", f"--bs={seq_kb}k", "--rw=read"),
            {"throughput": "bw_MBps"},
        ),
        Case(
            "io.rand_read",
            {"file_size_mb": rand_mb, "block_kb": 4, "ops": ops, "direct": True},
            # --randrepeat=0: fresh offsets per run, as benchbed draws new ones per sample
            (
                "--name=rand_read",
                f"--size={rand_mb}M",
                "--bs=4k",
                "--rw=randread",
                f"--number_ios={ops}",
                "--randrepeat=0",
            ),
            {"iops": "iops", "lat_p50_us": "clat_p50", "lat_p99_us": "clat_p99"},
        ),
    ]


def fio_value(read: dict[str, Any], key: str) -> float:
    if key == "bw_MBps":
        return float(read["bw_bytes"]) / 1e6  # MB/s = 1e6 bytes/s, as benchbed
    if key == "iops":
        return float(read["iops"])
    pct = {"clat_p50": "50.000000", "clat_p99": "99.000000"}[key]
    return float(read["clat_ns"]["percentile"][pct]) / 1e3


def fio_argv(fio: str, case: Case, path: Path | str) -> list[str]:
    return [fio, *case.fio_job, f"--filename={path}", *FIO_COMMON]


def run_fio(fio: str, case: Case, path: Path) -> dict[str, float]:
    proc = subprocess.run(fio_argv(fio, case, path), capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"fio failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    read = json.loads(proc.stdout)["jobs"][0]["read"]
    return {metric: fio_value(read, key) for metric, key in case.metrics.items()}


def take_sample(gen: Iterator[Sample], n_metrics: int) -> tuple[str, dict[str, float]]:
    """One repetition = n_metrics consecutive samples; refuse anything that is not O_DIRECT."""
    values: dict[str, float] = {}
    phase = ""
    for _ in range(n_metrics):
        s = next(gen)
        if s.labels.get("io_mode") != "direct":
            raise SystemExit(f"benchbed did not get O_DIRECT here ({s.labels}); a fio comparison would be moot")
        phase, values[s.metric] = s.phase, s.value
    return phase, values


def worker(fio: str, case: Case, directory: Path, pairs: int, aa: bool, fio_first: bool) -> dict[str, Values]:
    """One round in this process: the workload's cold + warm-up samples, then `pairs` benchbed/fio pairs."""
    info = load_builtins()[case.workload]
    scratch = Path(tempfile.mkdtemp(prefix="bench-io-", dir=directory))
    gen = info.fn(info.params(**case.params), Context(repetitions=pairs, warmup=1, scratch_dir=scratch))
    n = len(case.metrics)
    out: dict[str, Values] = {"ours": {}, "ref": {}}
    try:
        take_sample(gen, n)  # cold: creates the file
        (data,) = scratch.glob("*.dat")  # the workload's own file: fio reads exactly these bytes
        take_sample(gen, n)  # warm-up

        def ours() -> dict[str, float]:
            if aa:  # control run: fio in benchbed's slot; the workload still runs, unrecorded, to keep the rhythm
                take_sample(gen, n)
                return run_fio(fio, case, data)
            phase, values = take_sample(gen, n)
            if phase != "measure":
                raise SystemExit(f"expected a measure sample from {case.workload}, got {phase}")
            return values

        for i in range(pairs):
            if (i % 2 == 1) != fio_first:
                theirs, mine = run_fio(fio, case, data), ours()
            else:
                mine, theirs = ours(), run_fio(fio, case, data)
            for metric in case.metrics:
                out["ours"].setdefault(metric, []).append(mine[metric])
                out["ref"].setdefault(metric, []).append(theirs[metric])
    finally:
        gen.close()  # the workload's finally removes its file
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def overhead(fio: str, shm: Path, ops: int, reps: int) -> None:
    """Harness cost per read with the disk taken out: 4 KiB random reads of a tmpfs file, buffered on both sides."""
    info = load_builtins()["io.rand_read"]
    scratch = Path(tempfile.mkdtemp(prefix="bench-io-", dir=shm))
    params = info.params(file_size_mb=64, block_kb=4, ops=ops, direct=False)
    job = ["--name=overhead", "--size=64M", "--bs=4k", "--rw=randread", f"--number_ios={ops}", "--randrepeat=0"]
    ours: list[float] = []
    theirs: list[float] = []
    try:
        for s in info.fn(params, Context(repetitions=reps, warmup=1, scratch_dir=scratch)):
            if s.metric != "iops" or s.phase != "measure":
                continue
            (data,) = scratch.glob("*.dat")
            argv = [fio, *job, f"--filename={data}", *FIO_COMMON, "--direct=0"]  # the later --direct wins
            proc = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
            ours.append(1e9 / s.value)
            theirs.append(1e9 / float(json.loads(proc.stdout)["jobs"][0]["read"]["iops"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"harness overhead on {fs_type(shm)} ({ops} × 4 KiB buffered random reads, {reps} pairs):")
    print(f"  benchbed {a:.0f} ns/read · fio {b:.0f} ns/read · difference {a - b:+.0f} ns/read")
    print(f"  = {100 * (a - b) / 40_000:+.1f} % of a 40 µs device read, {100 * (a - b) / 10_000:+.1f} % of a 10 µs one")


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{platform.node()} · {model} × {os.cpu_count()} · kernel {platform.release()}"


def median_ci(values: list[float], n_boot: int = 4000) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the median (fixed seed: the same data print the same interval)."""
    rng = random.Random(0)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n_boot))
    return meds[int(0.025 * n_boot)], meds[int(0.975 * n_boot) - 1]


def report(cases: list[Case], ours: dict[str, Values], ref: dict[str, Values], label: str) -> float:
    """Print medians and ratios; return the largest |paired median ratio - 1|, the headline figure.

    The paired ratio is the estimator: each pair shares the disk's state of the moment, which on a virtual disk
    swings more than the difference being measured. The ratio of the two medians is shown for reference.
    """
    header = (
        f"{'workload':<13} {'metric':<11} {label:>10} {'fio':>10} {'med/med':>8} "
        f"{'paired ratio [95% CI]':>23} {'geomean':>8}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    for case in cases:
        for metric in case.metrics:
            a, b = ours[case.workload][metric], ref[case.workload][metric]
            ma, mb = statistics.median(a), statistics.median(b)
            pairs = [x / y for x, y in zip(a, b, strict=True)]
            med = statistics.median(pairs)
            lo, hi = median_ci(pairs)
            geo = math.exp(statistics.fmean(math.log(r) for r in pairs))
            worst = max(worst, abs(med - 1))
            paired = f"{med:.3f} [{lo:.3f}, {hi:.3f}]"
            print(f"{case.workload:<13} {metric:<11} {ma:>10.1f} {mb:>10.1f} {ma / mb:>8.3f} {paired:>23} {geo:>8.3f}")
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/benchbed-fio"), help="directory on the disk under test")
    ap.add_argument("--rounds", type=int, default=40, help="fresh worker processes (and files) per workload")
    ap.add_argument("--pairs", type=int, default=1, help="benchbed/fio sample pairs per round")
    ap.add_argument("--seq-mb", type=int, default=256, help="file size (MiB) for sequential reads")
    ap.add_argument("--seq-kb", type=int, default=1024, help="block size (KiB) for sequential reads")
    ap.add_argument("--only", choices=["io.seq_read", "io.rand_read"], help="compare just this workload")
    ap.add_argument("--rand-mb", type=int, default=256, help="file size (MiB) for random reads")
    ap.add_argument("--ops", type=int, default=10000, help="random reads per sample")
    ap.add_argument("--cpu", type=int, help="CPU to pin both tools to (default: the last one allowed)")
    ap.add_argument("--aa", action="store_true", help="control: fio in benchbed's slot too (noise floor)")
    ap.add_argument("--json", type=Path, help="also write every sample here")
    ap.add_argument("--overhead", type=Path, metavar="TMPFS_DIR", help="only measure per-read harness cost there")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-round", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    fio = shutil.which("fio")
    if fio is None:
        raise SystemExit("fio is not on PATH (Debian/Ubuntu: apt-get install -y fio)")
    directory: Path = args.dir.resolve()
    cases = make_cases(args.seq_mb, args.seq_kb, args.rand_mb, args.ops)
    if args.only:
        cases = [c for c in cases if c.workload == args.only]
    if args.worker is not None:
        fio_first = args.worker_round % 2 == 1
        (case,) = (c for c in cases if c.workload == args.worker)
        json.dump(worker(fio, case, directory, args.pairs, args.aa, fio_first), sys.stdout)
        return 0

    if args.overhead is not None:
        os.sched_setaffinity(0, {args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))})
        overhead(fio, args.overhead, 200_000, 7)
        return 0

    directory.mkdir(parents=True, exist_ok=True)
    fs = fs_type(directory)
    if fs in MEMORY_FS:
        raise SystemExit(f"{directory} is on {fs}: memory, not a disk. Pass --dir on a real filesystem.")
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # workers and fio inherit it
    fio_version = subprocess.run([fio, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    label = "fio (A/A)" if args.aa else "benchbed"
    print(f"machine: {machine()}")
    print(f"dir: {directory} ({fs}) · {fio_version} · python {platform.python_version()} · pinned to CPU {cpu}")
    print(f"{args.rounds} rounds (fresh processes) × {args.pairs} pairs per workload, after benchbed's cold + warm-up")
    for case in cases:
        print(f"  benchbed {case.workload} {json.dumps(case.params)}")
        print(f"  {' '.join(fio_argv('fio', case, '<that workload data file>'))}")
    sys.stdout.flush()

    forward = ["--dir", str(directory), "--pairs", str(args.pairs), "--seq-mb", str(args.seq_mb)]
    forward += ["--seq-kb", str(args.seq_kb)]
    forward += ["--rand-mb", str(args.rand_mb), "--ops", str(args.ops), *(["--aa"] if args.aa else [])]
    ours: dict[str, Values] = {c.workload: {} for c in cases}
    ref: dict[str, Values] = {c.workload: {} for c in cases}
    t0 = time.perf_counter()
    for rnd in range(args.rounds):
        for case in cases:
            argv_w = [sys.executable, str(Path(__file__).resolve()), *forward, "--worker", case.workload]
            argv_w += ["--worker-round", str(rnd)]
            proc = subprocess.run(argv_w, capture_output=True, text=True, check=False, timeout=1800)
            if proc.returncode != 0:
                raise SystemExit(f"worker for {case.workload} failed: {proc.stderr.strip()[-2000:]}")
            got = json.loads(proc.stdout)
            for metric in case.metrics:
                ours[case.workload].setdefault(metric, []).extend(got["ours"][metric])
                ref[case.workload].setdefault(metric, []).extend(got["ref"][metric])
        print(f"round {rnd + 1}/{args.rounds} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    print()
    worst = report(cases, ours, ref, label)
    n = args.rounds * args.pairs
    took = time.perf_counter() - t0
    print(f"\n{n} pairs per metric; largest paired gap {worst * 100:.1f} % (goal ≤ 5 %); {took:.0f} s")
    if args.json:
        dump = {c.workload: {"params": c.params, label: ours[c.workload], "fio": ref[c.workload]} for c in cases}
        args.json.write_text(json.dumps(dump, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
