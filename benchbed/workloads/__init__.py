"""Built-in workloads. Importing this package registers them all (stdlib-only at import time)."""

from benchbed.workloads import base
from benchbed.workloads.base import REGISTRY, Context, Sample, Skipped, workload

BUILTIN_MODULES = ("cpu", "io", "startup", "gpu", "model", "util")


def load_builtins() -> dict[str, base.WorkloadInfo]:
    """Import every built-in workload module once; returns the registry."""
    import importlib

    for mod in BUILTIN_MODULES:
        importlib.import_module(f"benchbed.workloads.{mod}")
    return REGISTRY


def load_for(name: str) -> dict[str, base.WorkloadInfo]:
    """Import only the built-in module that holds `name` (`io.seq_read` → workloads/io.py): every instance
    is a fresh process, so importing all modules would add their compile time to each start."""
    import importlib

    prefix = name.split(".", 1)[0]
    if prefix in BUILTIN_MODULES:
        importlib.import_module(f"benchbed.workloads.{prefix}")
    return REGISTRY


__all__ = ["REGISTRY", "Context", "Sample", "Skipped", "load_builtins", "load_for", "workload"]
