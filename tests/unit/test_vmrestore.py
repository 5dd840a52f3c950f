"""`start: restore` decisions and the saved-XML rewrite, without libvirt (the real save/restore: test_libvirt)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from benchbed.errors import ProvisionError
from benchbed.targets import vmrestore, vmspec
from benchbed.targets.libvirt import LibvirtTarget


def spec(**extra: Any) -> LibvirtTarget:
    return LibvirtTarget.model_validate({"kind": "libvirt", "image": "/img.raw", **extra})


def test_boot_is_the_default_and_start_is_validated() -> None:
    assert spec().start == "boot"
    assert vmrestore.start_mode(spec(), "vm", has_devices=True) == ("boot", "start: boot")
    with pytest.raises(ValidationError):
        spec(start="resume")


def test_restore_without_devices_restores() -> None:
    assert vmrestore.start_mode(spec(start="restore"), "vm", has_devices=False)[0] == "restore"
    assert vmrestore.start_mode(spec(start="restore!"), "vm", has_devices=False)[0] == "restore"


def test_passthrough_falls_back_to_boot_with_one_line_or_refuses_when_required() -> None:
    mode, why = vmrestore.start_mode(spec(start="restore"), "vm", has_devices=True)
    assert mode == "boot"
    assert why == (
        "target 'vm': start: restore — a domain with passthrough devices (gpus/mdevs: hostdev) cannot be saved; "
        "booting every instance instead"
    )
    with pytest.raises(ProvisionError, match=r"target 'vm': start: restore! — a domain with passthrough") as err:
        vmrestore.start_mode(spec(start="restore!"), "vm", has_devices=True)
    assert "start: boot" in (err.value.hint or "")


def test_lease_reach_cannot_be_restored() -> None:
    mode, why = vmrestore.start_mode(spec(start="restore", ssh={"reach": "lease"}), "vm", has_devices=False)
    assert mode == "boot"
    assert "ssh.reach: port_forward" in why


def test_cold_start_workloads_always_boot() -> None:
    s = spec(start="restore!")
    assert vmrestore.start_mode(s, "vm", has_devices=False, workload="startup.interpreter")[0] == "boot"
    assert vmrestore.start_mode(s, "vm", has_devices=False, workload="cpu.stream")[0] == "restore"


def saved_xml(tmp_path: Path, ssh: dict[str, Any] | None = None, serve_host_port: int | None = None) -> str:
    """The domain XML of instance 1 of run `r`, as it is saved (host port 2200)."""
    return vmspec.render_domain(
        spec(start="restore", kernel="/k", **({"ssh": ssh} if ssh else {})),
        name="benchbed-r-1",
        run_id="r",
        target="vm",
        overlay=tmp_path / "benchbed-r-1.qcow2",
        pci=[],
        host_port=2200,
        console_log=tmp_path / "benchbed-r-1.console.log",
        serve_host_port=serve_host_port,
    )


def test_saved_xml_gets_the_instances_files_and_port(tmp_path: Path) -> None:
    xml = saved_xml(tmp_path)
    out = vmrestore.rewrite_saved_xml(xml, old="benchbed-r-1", new="benchbed-r-7", directory=tmp_path, host_port=4242)
    assert "<name>benchbed-r-1</name>" in out  # libvirt refuses a restore under another name
    assert f"{tmp_path}/benchbed-r-1." not in out
    assert out.count(f"{tmp_path}/benchbed-r-7.qcow2") == 2  # the disk and the metadata the sweep reads
    assert f"{tmp_path}/benchbed-r-7.console.log" in out
    assert "hostfwd=tcp:127.0.0.1:4242-:22" in out
    assert ":2200-" not in out


def test_saved_xml_with_a_serve_port_gets_both_forwards_renewed(tmp_path: Path) -> None:
    xml = saved_xml(tmp_path, ssh={"serve_port": 8700}, serve_host_port=3300)
    out = vmrestore.rewrite_saved_xml(
        xml, old="benchbed-r-1", new="benchbed-r-7", directory=tmp_path, host_port=4242, serve_host_port=5353
    )
    assert "hostfwd=tcp:127.0.0.1:4242-:22,hostfwd=tcp:127.0.0.1:5353-:8700" in out
    assert ":2200-" not in out
    assert ":3300-" not in out
    with pytest.raises(ProvisionError, match="2 hostfwd port forwards, not 1"):  # a save without serve_port's
        vmrestore.rewrite_saved_xml(xml, old="benchbed-r-1", new="benchbed-r-7", directory=tmp_path, host_port=4242)


def test_saved_xml_without_overlay_or_forward_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="no overlay"):
        vmrestore.rewrite_saved_xml("<domain/>", old="a", new="b", directory=tmp_path, host_port=1)
    xml = f"<domain><source file='{tmp_path}/a.qcow2'/></domain>"
    with pytest.raises(ProvisionError, match="0 hostfwd port forwards"):
        vmrestore.rewrite_saved_xml(xml, old="a", new="b", directory=tmp_path, host_port=1)


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_refresh_command_feeds_the_seed_and_sets_the_clock(tmp_path: Path, shell: str) -> None:
    seed = bytes(range(256)) + b"'\\%s\n"  # every byte value, quotes, a backslash, a printf directive
    script = vmrestore.refresh_script(now=1_700_000_000.25, seed=seed)
    assert "> /dev/urandom" in script
    assert "date -u -s @1700000000.250000" in script
    assert "base64" not in script  # one program run in the guest (date -s): the seed goes through printf
    # the command is valid shell that prints the guest's clock first (run with the writes pointed elsewhere)
    safe = script.replace("/dev/urandom", str(tmp_path / "pool")).replace("date -u -s", "echo")
    out = subprocess.run([shell, "-c", safe], capture_output=True, text=True, check=True).stdout
    assert float(out.split()[0]) > 1_700_000_000
    assert (tmp_path / "pool").read_bytes() == seed
    fresh = [vmrestore.refresh_script().split("printf ")[1].split(" >")[0] for _ in range(2)]
    assert fresh[0].count("\\") == vmrestore.SEED_BYTES
    assert fresh[0] != fresh[1]  # new controller entropy each time
    assert vmrestore.clock_behind(script, "1699999940.25\n") == pytest.approx(60.0)
    assert vmrestore.clock_behind(script, "") is None


def test_save_files_are_instance_files_and_swept(tmp_path: Path) -> None:
    vmspec.write_claim(tmp_path, "benchbed-dead-1", "dead", "vm")
    (tmp_path / "benchbed-dead-1.save").write_bytes(b"x")
    (tmp_path / "benchbed-dead-1.qcow2").write_bytes(b"x")
    assert vmspec.sweep_overlays(tmp_path) == []  # our own, live: kept
    removed = vmspec.sweep_overlays(tmp_path, everything=True)
    assert removed
    assert list(tmp_path.iterdir()) == []


def test_report_says_which_instances_were_restored() -> None:
    import pandas as pd

    from benchbed.report.runinfo import instance_starts

    cases = pd.DataFrame(
        [
            {"target": "local", "start": None},
            {"target": "vm", "start": "restored"},
            {"target": "vm", "start": "booted"},
            {"target": "vm", "start": "restored"},
            {"target": "vm2", "start": "booted"},  # start: boot throughout: nothing to say
        ]
    )
    assert instance_starts(cases) == "vm: 2 restored, 1 booted"
    assert instance_starts(pd.DataFrame([{"target": "local"}])) == ""


def test_preimport_is_the_workloads_standard_library_and_runs() -> None:
    mods = vmrestore.preimport_modules()
    assert {"json", "hashlib", "statistics", "socket"} <= set(mods)  # agent protocol, cpu/io/serve workloads
    assert not [m for m in mods if m.split(".")[0] in {"numpy", "torch", "benchbed", "pynvml"}]
    out = subprocess.run(["sh", "-c", vmrestore.preimport_script(sys.executable)], capture_output=True, text=True)
    assert (out.returncode, out.stderr) == (0, "")
    assert int(out.stdout) == len(mods)  # this interpreter has them all
    lacking = subprocess.run(
        ["sh", "-c", vmrestore.preimport_script(sys.executable).replace("'json'", "'no_such_module_here'")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(lacking.stdout) == len(mods) - 1  # one the guest lacks is skipped, not fatal
