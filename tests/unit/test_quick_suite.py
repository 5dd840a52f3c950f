"""The quick suite is the README's demo: it must cover every built-in workload."""

from __future__ import annotations

from benchbed.config import DATA_DIR, load_suite
from benchbed.workloads import load_builtins


def test_quick_suite_covers_every_builtin_workload() -> None:
    suite = load_suite(DATA_DIR / "quick.yaml").suite
    covered = {entry.name for entry in suite.workloads}
    builtins = {name for name, info in load_builtins().items() if info.fn.__module__.startswith("benchbed.workloads.")}
    assert covered == builtins  # (custom modules other tests import register here too: not built-ins)
