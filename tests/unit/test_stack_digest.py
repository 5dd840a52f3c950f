"""Stack digest: what the agent's process mapped, hashed; driver libraries apart; cache keyed by file identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchbed.agent.stack import HashCache, combine, mapped_files, stack_digest

MAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 fd:01 131 /usr/bin/python3.11
7f0000000000-7f0000001000 r-xp 00000000 fd:01 132 /usr/lib/x86_64-linux-gnu/libm.so.6
7f0000001000-7f0000002000 r--p 00001000 fd:01 132 /usr/lib/x86_64-linux-gnu/libm.so.6
7f0000002000-7f0000003000 r-xp 00000000 fd:01 140 /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15
7f0000003000-7f0000004000 rw-p 00000000 00:00 0
7f0000004000-7f0000005000 rw-p 00000000 00:00 0 [heap]
7f0000005000-7f0000006000 rw-s 00000000 00:05 9 /dev/nvidia0
7f0000006000-7f0000007000 r--p 00000000 fd:01 150 /tmp/benchbed-run-abc/agent.pyz
7f0000007000-7f0000008000 r--p 00000000 fd:01 151 /opt/gone.so (deleted)
7fff00000000-7fff00001000 r-xp 00000000 00:00 0 [vdso]
"""


def test_mapped_files_keeps_regular_files_once_and_drops_pseudo_device_deleted_and_excluded() -> None:
    assert mapped_files(MAPS, exclude=["/tmp/benchbed-run-abc"]) == [
        "/usr/bin/python3.11",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
    ]


def test_driver_libraries_are_listed_apart_and_kept_out_of_the_digest(tmp_path: Path) -> None:
    lib = tmp_path / "libfoo.so"
    lib.write_bytes(b"foo")
    cuda = tmp_path / "libcuda.so.1"
    cuda.write_bytes(b"driver 550")
    maps = f"0-1 r--p 0 fd:01 1 {lib}\n0-1 r--p 0 fd:01 2 {cuda}\n"
    first = stack_digest(maps)
    assert str(lib) in first["files"]
    assert list(first["driver"]) == [str(cuda)]
    cuda.write_bytes(b"driver 560")  # a driver upgrade alone leaves the stack digest as it was
    second = stack_digest(maps)
    assert second["digest"] == first["digest"]
    assert second["driver"] != first["driver"]
    lib.write_bytes(b"bar")  # a library change does not
    assert stack_digest(maps)["digest"] != first["digest"]


def test_digest_is_order_independent_and_path_sensitive() -> None:
    assert combine({"/a": "1", "/b": "2"}) == combine({"/b": "2", "/a": "1"})
    assert combine({"/a": "1"}) != combine({"/c": "1"})


def test_cache_hits_by_identity_and_misses_when_the_file_changes(tmp_path: Path) -> None:
    f = tmp_path / "lib.so"
    f.write_bytes(b"one")
    cache_file = tmp_path / "cache.json"
    cache = HashCache(cache_file)
    sha1 = cache.sha256(str(f))
    cache.save()
    stored = json.loads(cache_file.read_text())
    assert list(stored.values()) == [sha1]
    # a planted wrong value for the same identity is returned: proof the cache, not the file, answered
    key = next(iter(stored))
    cache_file.write_text(json.dumps({key: "planted"}))
    assert HashCache(cache_file).sha256(str(f)) == "planted"
    f.write_bytes(b"two!")  # new size and mtime: a new key, hashed again
    assert HashCache(cache_file).sha256(str(f)) not in ("planted", sha1)


def test_unreadable_files_are_named_not_hashed(tmp_path: Path) -> None:
    maps = f"0-1 r--p 0 fd:01 1 {tmp_path / 'vanished.so'}\n"
    record = stack_digest(maps)
    assert record["unreadable"] == [str(tmp_path / "vanished.so")]


def _digest_in_child(code: str) -> dict[str, object]:
    script = f"{code}\nimport json; from benchbed.agent.stack import stack_digest; print(json.dumps(stack_digest()))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    return dict(json.loads(out.stdout))


def test_real_process_digest_covers_the_interpreter_and_the_libraries_a_workload_loaded() -> None:
    plain = _digest_in_child("")
    with_numpy = _digest_in_child("import numpy; numpy.ones((64, 64)) @ numpy.ones((64, 64))")
    assert os.path.realpath(sys.executable) in plain["files"]  # type: ignore[operator]
    extra = set(with_numpy["files"]) - set(plain["files"])  # type: ignore[call-overload]
    assert any("numpy" in path for path in extra), extra  # numpy's extension modules and its BLAS
    assert with_numpy["digest"] != plain["digest"]
    assert _digest_in_child("")["digest"] == plain["digest"]  # same imports, same bytes: same digest
