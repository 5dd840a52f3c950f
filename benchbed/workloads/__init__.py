"""Built-in workloads. Importing this package registers them all (stdlib-only at import time)."""

from benchbed.workloads import base
from benchbed.workloads.base import REGISTRY, Context, Sample, Skipped, workload

BUILTIN_MODULES = ("cpu", "io", "startup", "gpu", "model", "util", "pytest_bench", "serve")
# workload names whose module is not their prefix (`pytest` lives in pytest_bench.py: a module named pytest.py
# would shadow the real pytest for anything run from this package's directory)
MODULE_OF = {"pytest": "pytest_bench"}
# parameters that name a directory next to the suite file: the controller resolves and validates it and ships its
# files inside the agent zipapp (see agent/build.py), so every target runs the same bytes
DIR_PARAMS: dict[str, tuple[str, ...]] = {"pytest": ("path",)}


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

    prefix = MODULE_OF.get(name, name.split(".", 1)[0])
    if prefix in BUILTIN_MODULES:
        importlib.import_module(f"benchbed.workloads.{prefix}")
    return REGISTRY


__all__ = ["DIR_PARAMS", "REGISTRY", "Context", "Sample", "Skipped", "load_builtins", "load_for", "workload"]
