"""The `ns` kind's spec and command lines, and the report's grouping of skips (no namespaces created here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from benchbed.config import DATA_DIR, load_suite, load_targets
from benchbed.errors import ConfigError
from benchbed.report.runinfo import group_skips
from benchbed.schema import MIN_INSTANCES
from benchbed.targets import ns
from benchbed.targets.ns import ALL_NAMESPACES, NsTarget
from tests.conftest import REPO


def spec(**kw: Any) -> NsTarget:
    return NsTarget.model_validate({"kind": "ns", **kw})


def test_default_is_all_six_namespaces_and_the_tool_is_chosen_at_run_time() -> None:
    s = spec()
    assert tuple(s.namespaces) == ALL_NAMESPACES == ("user", "mount", "pid", "net", "ipc", "uts")
    assert s.tool == "auto"
    assert s.python == "python3"  # the same interpreter from PATH as `local`


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"namespaces": ["pid", "pid"]}, "lists one twice"),
        ({"namespaces": ["cgroup"]}, "Input should be"),
        ({"namespaces": []}, "at least 1"),
        ({"tool": "bwrap", "namespaces": ["pid"]}, "bwrap always creates a mount namespace"),
        ({"tool": "podman"}, "Input should be"),
        ({"image": "x"}, "Extra inputs"),
    ],
)
def test_bad_specs_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**fields)


def test_a_targets_file_error_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("targets:\n  box:\n    kind: ns\n    namespace: [pid]\n")
    with pytest.raises(ConfigError, match=r"t\.yaml:4: targets\.box\.namespace: unknown key 'namespace'"):
        load_targets(path)
    path.write_text("targets:\n  box: {kind: ns, namespaces: [pid, net]}\n")
    assert load_targets(path)["box"].namespaces == ["pid", "net"]


def test_user_namespace_is_added_when_not_root() -> None:
    s = spec(namespaces=["net", "pid"])
    assert ns.effective_namespaces(s, euid=0) == ("pid", "net")
    assert ns.effective_namespaces(s, euid=1000) == ("user", "pid", "net")  # fixed order, whatever was written


def test_auto_takes_bwrap_only_when_installed_and_a_mount_namespace_is_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ns.shutil, "which", lambda exe: f"/usr/bin/{exe}")
    assert ns.choose_tool(spec(), ALL_NAMESPACES) == "bwrap"
    assert ns.choose_tool(spec(), ("pid", "net")) == "unshare"
    assert ns.choose_tool(spec(tool="unshare"), ALL_NAMESPACES) == "unshare"
    monkeypatch.setattr(ns.shutil, "which", lambda exe: None)
    assert ns.choose_tool(spec(), ALL_NAMESPACES) == "unshare"


def test_unshare_holder_command_line() -> None:
    argv = ns.holder_argv("unshare", ALL_NAMESPACES, "/tmp/w")
    sep = argv.index("--")
    tool, shell = argv[:sep], argv[sep + 1 :]
    assert tool[:3] == ["unshare", "--fork", "--kill-child"]
    assert set(tool[3:]) == {"--user", "--map-root-user", "--mount", "--pid", "--net", "--ipc", "--uts", "--mount-proc"}
    assert shell[:2] == ["sh", "-c"]
    assert shell[3:] == [ns.LABEL, "/tmp/w"]  # $0 and $1: `ps` and the sweep see what and whose it is
    assert "ip link set lo up" in shell[2]
    assert "read _" in shell[2]  # waits for EOF on stdin: the harness's death ends it


def test_unshare_without_pid_or_net_leaves_out_proc_and_loopback() -> None:
    argv = ns.holder_argv("unshare", ("mount", "ipc"), "/tmp/w")
    assert "--mount-proc" not in argv
    assert "--pid" not in argv
    assert "ip link" not in argv[argv.index("-c") + 1]


def test_bwrap_holder_command_line() -> None:
    argv = ns.holder_argv("bwrap", ("user", "mount", "pid", "net"), "/tmp/w")
    tool = argv[: argv.index("--")]
    assert tool[:2] == ["bwrap", "--die-with-parent"]
    assert tool[2:5] == ["--bind", "/", "/"]
    assert tool[5:8] == ["--dev-bind", "/dev", "/dev"]  # device nodes (GPUs) stay usable
    assert "--proc" in tool
    assert {"--unshare-user", "--unshare-pid", "--unshare-net"} <= set(tool)
    assert "--unshare-ipc" not in tool
    assert tool[tool.index("--uid") + 1] == "0"


def test_commands_join_exactly_the_created_namespaces() -> None:
    argv = ns.enter_argv(42, ("user", "pid", "net"), "/tmp/w")
    assert argv == ["nsenter", "--target=42", "--user", "--pid", "--net", "--preserve-credentials", "--wd=/tmp/w"]
    session = ns.NsSession("/tmp/w", argv)
    assert session.workdir == "/tmp/w"


@pytest.mark.parametrize(
    ("sysctls", "euid", "message", "cause", "fix"),
    [
        ({"user/max_user_namespaces": "0"}, 0, "No space left on device", "user.max_user_namespaces = 0", "sysctl"),
        ({"kernel/unprivileged_userns_clone": "0"}, 1000, "Operation not permitted", "unprivileged", "userns_clone=1"),
        ({"kernel/apparmor_restrict_unprivileged_userns": "1"}, 1000, "not permitted", "AppArmor", "apparmor"),
        ({}, 0, "unshare failed: Operation not permitted", "CAP_SYS_ADMIN", "--privileged"),
        ({}, 0, "Creating new namespace failed: nesting depth (ENOSPC)", "limit", "/proc/sys/user"),
    ],
)
def test_diagnosis_names_why_and_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, sysctls: dict[str, str], euid: int, message: str, cause: str, fix: str
) -> None:
    monkeypatch.setattr(ns, "_sysctl", sysctls.get)
    why, how = ns.diagnose(message, ALL_NAMESPACES, euid)
    assert cause in why
    assert fix in how


def test_sweep_reads_owner_pid_from_workdir_names() -> None:
    m = ns._WORKDIR_RE.search("--wd=/tmp/x/benchbed-ns-4242-20260101-000000-demo-ab12-q9z8/agent.pyz")
    assert m is not None
    assert (m.group(1), m.group(2)) == ("/tmp/x/benchbed-ns-4242-20260101-000000-demo-ab12-q9z8", "4242")
    assert ns._WORKDIR_RE.search("/tmp/benchbed-20260101-quick-ab12-xyz") is None  # a `local` workdir: not ours


def problem(target: str, workload: str, status: str, reason: str, params: str = "(default params)") -> dict[str, Any]:
    tail = "Traceback" if status == "failed" else None
    return {"target": target, "workload": workload, "params": params, "instance": "0", "status": status,
            "reason": reason, "stderr_tail": tail}  # fmt: skip


def test_skips_that_share_a_reason_are_one_row_naming_targets_and_workloads() -> None:
    gpu = "no CUDA device visible in this target"
    probs = [
        problem(t, w, "skipped", gpu) for w in ("gpu.gemm", "gpu.h2d_bandwidth") for t in ("local", "ns") for _ in "12"
    ]
    probs += [problem("ns", "cpu.gemm", "failed", "agent exited 1"), problem("ns", "cpu.gemm", "failed", "boom")]
    probs += [problem("ns", "pytest", "skipped", "pytest is not installed")]
    rows = group_skips(probs)
    assert [r["status"] for r in rows] == ["failed", "failed", "skipped", "skipped"]  # failures first, each its own
    gpu_row = rows[2]
    assert gpu_row["reason"] == gpu
    assert gpu_row["target"] == "local, ns"
    assert gpu_row["workload"] == "gpu.gemm, gpu.h2d_bandwidth"
    assert gpu_row["instance"] == "8 instances"
    assert gpu_row["count"] == 8
    assert rows[3]["workload"] == "pytest"
    assert rows[3]["instance"] == "0"  # a lone skip keeps its own row as it was


def test_one_workload_skipped_with_several_params_says_how_many_cases() -> None:
    probs = [problem("local", "gpu.gemm", "skipped", "no GPU", params=f"n={n}") for n in (256, 512)]
    assert group_skips(probs)[0]["params"] == "2 cases"
    probs = [problem(t, "gpu.gemm", "skipped", "no GPU", params="n=256") for t in ("local", "ns")]
    assert group_skips(probs)[0]["params"] == "n=256"


def test_the_demo_suite_runs_enough_instances_for_a_verdict_and_is_linked_from_workloads() -> None:
    suite = load_suite(DATA_DIR / "demo.yaml").suite
    assert suite.baseline == "local"
    assert suite.defaults.instances == MIN_INSTANCES  # the fewest with which a multi-metric case can be judged
    names = {w.name for w in suite.workloads}
    assert {"cpu.gemm", "cpu.stream", "startup.process", "util.noop", "model.load"} <= names
    assert any(n.startswith("io.") for n in names)
    assert (REPO / "workloads" / "demo.yaml").resolve() == (DATA_DIR / "demo.yaml").resolve()
