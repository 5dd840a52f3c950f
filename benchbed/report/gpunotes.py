"""GPU notes for the report: what the agent marked on samples and what a fingerprint says about placement.

A throttled or suspicious sample still counts (it is real); a reader must see how many there were and why, next
to the number, before trusting a boundary cost. Empty for runs without GPU samples, so a CPU report is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from benchbed.fmt import params_label

# label on a sample → what the report says about it
SAMPLE_FLAGS = (
    ("throttled", "overlapped a clock-event reason"),
    ("suspicious", "implausibly low for the device"),
    ("host_gap_possible", "host submission outlasted the hold kernel"),
    ("hold_missing", "timed without a hold kernel"),
    ("health", "GPU health changed (ECC / row remap / Xid)"),
    ("other_processes", "other processes on the GPU"),
    ("placement_note", "host buffers not placed as asked"),
)


def _flag_text(key: str, values: list[Any]) -> str:
    distinct = sorted({str(v) for v in values})
    shown = "; ".join(distinct[:3]) + (f"; … {len(distinct) - 3} more" if len(distinct) > 3 else "")
    return shown if key != "suspicious" else distinct[0]


def sample_notes(samples: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per (target, workload, params, metric, flag) with how many measured samples carry the flag."""
    if samples.empty or "labels" not in samples.columns:
        return []
    measured = samples[samples["phase"] == "measure"]
    rows: list[dict[str, Any]] = []
    keys = ["target", "workload", "params", "metric"]
    for key, group in measured.groupby(keys, sort=False):
        labels = [lab for lab in group["labels"] if isinstance(lab, dict)]
        for flag, what in SAMPLE_FLAGS:
            values = [lab[flag] for lab in labels if lab.get(flag)]
            if values:
                target, workload, params, metric = (str(k) for k in key)
                rows.append(
                    {
                        "target": target,
                        "workload": workload,
                        "params": params_label(params),
                        "metric": metric,
                        "note": f"{len(values)} of {len(group)} {what}",
                        "detail": _flag_text(flag, values),
                    }
                )
    return rows


def env_notes(env: Mapping[str, Any], targets: list[str]) -> list[dict[str, str]]:
    """Per target: GPU settings that make a boundary look costlier than it is (persistence off, a small BAR1,
    a passthrough VM without NUMA pinning or hugepages)."""
    out: list[dict[str, str]] = []
    for target in targets:
        fp = env.get(target)
        if not isinstance(fp, dict):
            continue
        for g in fp.get("gpus") or []:
            if not isinstance(g, dict):
                continue
            if g.get("persistence_mode") == "disabled":
                out.append(
                    {
                        "target": target,
                        "note": f"GPU {g.get('index', '?')}: persistence mode off — the first CUDA use pays "
                        "driver initialisation (1–3 s), so context init is not comparable with a host that keeps it on",
                    }
                )
            if g.get("bar1_note"):
                out.append({"target": target, "note": f"GPU {g.get('index', '?')}: {g['bar1_note']}"})
        vm = fp.get("libvirt")
        placement = vm.get("placement") if isinstance(vm, dict) else None
        if isinstance(placement, dict):
            for line in placement.get("notes") or []:
                out.append({"target": target, "note": str(line)})
    return out
