"""Bad suite and target files → one exact, located message (file:line: key path: what)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchbed.config import load_suite, load_targets, resolve_suite_path
from benchbed.errors import ConfigError

SUITE_CASES = [
    (
        "name: x\nworkloads:\n  - name: cpu.gemm\n    params: {n: abc}\n",
        "s.yaml:4: workloads[0].params: n: input should be a valid integer",
    ),
    ("name: x\nworkloads:\n  - name: cpu.gemm\n    bogus: 1\n", "s.yaml:4: workloads[0].bogus: unknown key 'bogus'"),
    ("name: x\nworkloads:\n  - name: nope.x\n", "s.yaml:3: workloads[0].name: unknown workload 'nope.x'"),
    ("name: x\nworkloads: [\n", "s.yaml:3: invalid YAML"),
    ("name: x\nname: y\nworkloads: []\n", "s.yaml:2: duplicate key 'name'"),
    (
        "name: x\ndefaults:\n  instances: 0\nworkloads:\n  - name: cpu.gemm\n",
        "s.yaml:3: defaults.instances: Input should be greater than or equal to 1 (got 0)",
    ),
    (
        "name: x\nworkloads:\n  - name: cpu.gemm\n    params: {size: 3}\n",
        "s.yaml:4: workloads[0].params: unknown parameter 'size' for cpu.gemm (known: n, dtype, threads)",
    ),
    ("name: x\n", "s.yaml:1: workloads: Field required"),
    ("name: x\nworkloads: []\n", "s.yaml:2: workloads: List should have at least 1 item"),
    ("- just\n- a list\n", "s.yaml:1: (top level): Input should be a valid dictionary"),
    (
        "name: x\nmodules: [nothere.py]\nworkloads:\n  - name: cpu.gemm\n",
        "s.yaml:2: modules[0]: 'nothere.py' not found next to the suite",
    ),
]

TARGET_CASES = [
    (
        "targets:\n  a:\n    kind: ssh\n    port: 99999\n    host: h\n",
        "t.yaml:4: targets.a.port: Input should be less than or equal to 65535 (got 99999)",
    ),
    ("targets:\n  a:\n    kind: warp\n", "t.yaml:3: targets.a.kind: unknown kind 'warp'"),
    ("targets:\n  a:\n    kind: ssh\n", "t.yaml:2: targets.a.host: Field required"),
    ("targets:\n  a:\n    kind: local\n    colour: red\n", "t.yaml:4: targets.a.colour: unknown key 'colour'"),
    ('targets:\n  "bad name":\n    kind: local\n', "t.yaml:2: targets.bad name: invalid name 'bad name'"),
]


@pytest.mark.parametrize(("text", "expected"), SUITE_CASES)
def test_bad_suite_gives_located_message(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(str(tmp_path / expected.split(":")[0]))
    assert expected in message.replace(str(tmp_path) + "/", "")
    assert "\n" not in message


@pytest.mark.parametrize(("text", "expected"), TARGET_CASES)
def test_bad_targets_give_located_message(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_targets(path)
    assert expected in str(info.value).replace(str(tmp_path) + "/", "")


def test_missing_file_and_unknown_shipped_suite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_suite(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="no shipped suite of that name"):
        resolve_suite_path("no-such-suite")


def test_grid_expands_lists_and_coerces_types(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: g\nworkloads:\n  - name: cpu.gemm\n    params: {n: [64, 128], dtype: float32}\n")
    loaded = load_suite(path)
    assert loaded.suite.workloads[0].grid() == [{"n": 64, "dtype": "float32"}, {"n": 128, "dtype": "float32"}]


def test_groups_expand_to_one_target_per_host(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "targets:\n  local: {kind: local}\ngroups:\n  gpus:\n    hosts: [gpu01, gpu02]\n"
        "    template: {kind: ssh, host: placeholder, user: bench}\n"
    )
    specs = load_targets(path)
    assert sorted(specs) == ["gpu01", "gpu02", "local"]
    assert specs["gpu02"].kind == "ssh"
    assert specs["gpu02"].host == "gpu02"  # type: ignore[union-attr]


def test_shipped_suites_validate(repo_root: Path) -> None:
    for path in sorted((repo_root / "benchbed" / "data").glob("*.yaml")):
        assert load_suite(path).suite.workloads
    for path in sorted((repo_root / "workloads").glob("*.yaml")):
        assert load_suite(path).suite.workloads
    for path in sorted((repo_root / "targets").glob("*.yaml")):
        assert load_targets(path)
