"""SSH target and fleet pieces that need no server: config, jump parsing, lanes, remote script syntax."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchbed.config import load_targets
from benchbed.errors import ConfigError
from benchbed.schema import TargetsFile
from benchbed.targets.base import CONTROLLER
from benchbed.targets.registry import lane_of
from tests.conftest import REPO

ssh = pytest.importorskip("benchbed.targets.sshlink", reason="paramiko not installed")
dial = pytest.importorskip("benchbed.targets.sshconnect", reason="paramiko not installed")


def test_lab_example_expands_groups_with_their_template() -> None:
    specs = load_targets(REPO / "targets" / "lab.example.yaml")
    assert [n for n in specs if n.startswith("gpu")] == ["gpu01", "gpu02", "gpu03", "gpu04"]
    gpu = specs["gpu02"]
    assert gpu.kind == "ssh"
    assert (gpu.host, gpu.user, gpu.sudo, gpu.port) == ("gpu02", "bench", True, 22)
    assert specs["behind-bastion"].proxy_jump == "bench@bastion.lab.example.org:2222"


def test_group_host_names_must_be_target_names(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("targets: {}\ngroups:\n  g:\n    hosts: ['bad name']\n")
    with pytest.raises(ConfigError, match=r"groups\.g\.hosts\[0\]"):
        load_targets(path)


def test_proxy_jump_syntax_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("targets:\n  a: {kind: ssh, host: h, proxy_jump: 'u@b:x'}\n")
    with pytest.raises(ConfigError, match="proxy_jump"):
        load_targets(path)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("bastion", ("me", "bastion", 22)),
        ("ops@bastion:2222", ("ops", "bastion", 2222)),
        ("[::1]:2200", ("me", "::1", 2200)),
    ],
)
def test_jump_parsing(text: str, want: tuple[str, str, int]) -> None:
    assert dial._jump(text, "me") == want


def test_known_hosts_names_follow_openssh() -> None:
    assert dial.known_hosts_name("gpu01", 22) == "gpu01"
    assert dial.known_hosts_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_lanes_are_machines() -> None:
    specs = TargetsFile.model_validate(
        {
            "targets": {
                "local": {"kind": "local"},
                "a": {"kind": "ssh", "host": "h1"},
                "a-py311": {"kind": "ssh", "host": "h1", "python": "python3.11"},
                "b": {"kind": "ssh", "host": "h1", "port": 2222},
            }
        }
    ).expanded()
    lanes = {name: lane_of(spec) for name, spec in specs.items()}
    assert lanes == {"local": CONTROLLER, "a": "h1:22", "a-py311": "h1:22", "b": "h1:2222"}


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_remote_scripts_are_valid_posix_sh() -> None:
    scripts = [
        ssh.kill_script(["/w/.pid-1", "/w dir/.pid-2"], sudo=True, wait=True),
        ssh.kill_script([], sudo=False, wait=False),
    ]
    for script in scripts:
        subprocess.run(["sh", "-n", "-c", script], check=True)
