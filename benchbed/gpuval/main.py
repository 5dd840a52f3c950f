"""Entry point of `scripts/gpu-validate` (python -m benchbed.gpuval.main): set up, run the checks, write the page.

Exit status: 0 when every check that ran agreed (skips included: a dry run exits 0), 1 when a check disagreed
or failed, 2 for bad arguments or an unwritable output (one line, no traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchbed.fmt import md
from benchbed.gpuval.base import Env, Result, run_checks
from benchbed.gpuval.checks import CHECKS
from benchbed.workloads import gpudevice, peaks, telemetry

BUDGET_S = 570.0  # the whole run, checks included, stays under 10 minutes
# read before and after the run: the script must leave every one of them as it found it
INVARIANTS = {
    "persistence_mode": ("nvmlDeviceGetPersistenceMode", ()),
    "mig_mode": ("nvmlDeviceGetMigMode", ()),
    "applications_sm_clock_mhz": ("nvmlDeviceGetApplicationsClock", (1,)),
    "applications_mem_clock_mhz": ("nvmlDeviceGetApplicationsClock", (2,)),
    "power_limit_w": ("nvmlDeviceGetPowerManagementLimit", ()),
}


def _invariants(env: Env) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (fn, args) in INVARIANTS.items():
        try:
            out[key] = getattr(env.nvml, fn)(env.handle, *args) if env.handle is not None else None
        except Exception:
            out[key] = None
    return out


def _problem(dry: bool, device: int) -> tuple[str | None, Any]:
    """(why no GPU check can run, torch)."""
    if dry:
        return "dry run (--dry): no GPU work was attempted", None
    fast = gpudevice.no_device_nodes()
    if fast:
        return fast, None
    torch, err = gpudevice.optional("torch")
    if torch is None:
        return f"the checks need torch: {err}", None
    problem = gpudevice.torch_cuda_problem(torch, device)
    if problem:
        return problem, None
    torch.cuda.set_device(device)
    return None, torch


@contextlib.contextmanager
def environment(dry: bool, device: int, budget_s: float) -> Iterator[Env]:
    problem, torch = _problem(dry, device)
    env = Env(device, time.monotonic() + budget_s, problem, torch)
    if problem:
        env.telemetry_how = "not started: no GPU check runs"
        yield env
        return
    props = torch.cuda.get_device_properties(device)
    bus = f"{getattr(props, 'pci_domain_id', 0):04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    with telemetry.watch(bus, device, interval_s=0.05) as (sampler, how):
        env.sampler, env.telemetry_how = sampler, how
        if sampler is not None:
            env.nvml, env.handle = sampler.device.nvml, sampler.device.h
        yield env


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return md("" if value is None else value)


def render(results: list[Result], header: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = [
        "# GPU validation",
        "",
        "Written by `scripts/gpu-validate`; what the checks are for: docs/methodology.md.",
        "",
    ]
    lines += [f"- {md(k)}: {_cell(v)}" for k, v in header.items()]
    if all(r.status == "skipped" for r in results):
        lines += ["", "> Every check was skipped (reasons below): this page shows what a run on a GPU fills in."]
    if any(v is not None for v in before.values()):
        same = before == after
        lines.append(
            f"- clocks, persistence and MIG {'unchanged' if same else '**CHANGED**'} by this run: {_cell(str(after))}"
        )
    lines += ["", "| check | status | result | s |", "|---|---|---|---:|"]
    for r in results:
        lines.append(f"| {md(r.title)} | {md(r.status)} | {md(r.summary)} | {r.seconds:.1f} |")
    for r in results:
        lines += ["", f"## {md(r.title)}", "", f"**{md(r.status)}** — {md(r.summary)}"]
        if r.rows:
            keys = list(dict.fromkeys(k for row in r.rows for k in row))
            lines += ["", "| " + " | ".join(md(k) for k in keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_cell(row.get(k)) for k in keys) + " |" for row in r.rows]
        if r.telemetry:
            lines += ["", "Telemetry while it ran: " + ", ".join(f"{md(k)}={_cell(v)}" for k, v in r.telemetry.items())]
    return "\n".join(lines + _table_arithmetic()) + "\n"


def _table_arithmetic() -> list[str]:
    """The peaks table against its own hardware facts (no GPU needed): the clock each figure implies."""
    lines = ["", "## Datasheet table arithmetic (no GPU needed)", ""]
    lines += ["| model | source | SMs | max SM MHz | implied MHz fp32 / tf32 / bf16 | memory GB/s (bus × clock) |"]
    lines += ["|---|---|---:|---:|---|---|"]
    for p in peaks.table():
        implied = " / ".join(f"{p.implied_mhz(d) or 0:.0f}" for d in ("fp32", "tf32", "bf16"))
        derived = p.derived_memory_gbs()
        mem = f"{p.memory_gbs:g} ({derived:.0f})" if p.memory_gbs and derived else "?"
        lines.append(f"| {md(p.label)} | {md(p.source)} | {p.sms} | {p.max_sm_mhz} | {implied} | {mem} |")
    return lines


def _at_least(low: float, kind: type[Any]) -> Callable[[str], Any]:
    """An argparse type: a number of `kind`, not below `low` (argparse turns the ValueError into exit 2)."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below {low:g}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu-validate", description=__doc__)
    ap.add_argument("--dry", action="store_true", help="touch no GPU: every check reports skipped with its reason")
    ap.add_argument("--device", type=_at_least(0, int), default=0)
    ap.add_argument("--out", help="the page to write (default docs/gpu-validation.md; '-' for stdout)")
    ap.add_argument(
        "--budget-s", type=_at_least(1, float), default=BUDGET_S, help="stop starting checks after this long"
    )
    args = ap.parse_args(argv)
    out = args.out or str(Path(__file__).resolve().parents[2] / "docs" / "gpu-validation.md")
    where = Path(out).resolve().parent
    if out != "-" and not (where.is_dir() and os.access(where, os.W_OK)):  # say so before minutes of GPU work
        print(f"gpu-validate: cannot write {out}: {where} is not a writable directory", file=sys.stderr)
        return 2
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with environment(args.dry, args.device, args.budget_s) as env:
        before = _invariants(env)
        results = run_checks(env, CHECKS)
        after = _invariants(env)
        name = env.torch.cuda.get_device_name(args.device) if env.torch is not None else None
        header = {
            "started": started,
            "host": platform.node(),
            "device": f"{args.device}: {name}" if name else f"{args.device} (not opened)",
            "torch": getattr(env.torch, "__version__", "not imported"),
            "telemetry": env.telemetry_how,
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        page = render(results, header, before, after)
    try:
        if out == "-":
            sys.stdout.write(page)
        else:
            Path(out).write_text(page, encoding="utf-8")
    except OSError as err:
        print(f"gpu-validate: cannot write {out}: {err}", file=sys.stderr)
        return 2
    bad = [r for r in results if r.status in ("mismatch", "error")]
    for r in results:
        print(f"{r.status:9} {r.name:13} {r.summary}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
