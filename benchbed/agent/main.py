"""Agent entry point: `python3 agent.pyz run SPEC_JSON` streams JSON lines on stdout.

stdout belongs to the protocol alone: workloads that print are redirected to stderr, so a stray print can
never corrupt the stream. Samples and the fingerprint are held while the workload runs (`emit`): a line per
repetition would charge every repetition with the transport's wake-ups; every other line goes at once.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchbed import __version__
from benchbed.agent.emit import Emitter
from benchbed.protocol import PROTOCOL, WATCH_ENV, WATCH_MODES, Line, decode


def _own_sha256() -> str:
    """sha256 of the zipapp we run from: the controller checks it against the bytes it shipped."""
    path = Path(sys.argv[0])
    if not path.is_file():
        return "unpacked"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _not_from_zipapp() -> str | None:
    """The identical-bytes guarantee holds only if every benchbed module came from the shipped zipapp, not from
    a benchbed installed in the target's site-packages. Returns the first stray module's file, if any."""
    home = str(Path(sys.argv[0]).resolve())
    if not Path(home).is_file():
        return None  # run unpacked (tests, development): nothing to check against
    for name, module in list(sys.modules.items()):
        if name == "benchbed" or name.startswith(("benchbed.", "benchbed_user")):
            origin = getattr(module, "__file__", None) or ""
            if origin and not origin.startswith(home + "/"):
                return origin
    return None


def _load_user_modules() -> None:
    """User workload modules are packed under benchbed_user/ and registered on import."""
    try:
        pkg = importlib.import_module("benchbed_user")
    except ImportError:
        return
    for name in getattr(pkg, "MODULES", ()):
        importlib.import_module(f"benchbed_user.{name}")


def _fingerprint_apart() -> dict[str, Any]:
    """The fingerprint, gathered by a child interpreter (`agent.pyz fingerprint`) when we run from the zipapp.

    Its imports (platform, subprocess, importlib.metadata and their C extensions) must not enter the workload's
    process: they would change what it maps — the stack digest of a target's first instance would differ from
    the others' — and what it has warmed. Spawned with os.posix_spawn, so not even subprocess is imported here.
    """
    if not Path(sys.argv[0]).is_file():  # run unpacked (tests, development): no zipapp to start again
        from benchbed.agent.fingerprint import collect

        return collect()
    read, write = os.pipe()
    try:
        actions = [(os.POSIX_SPAWN_DUP2, write, 1), (os.POSIX_SPAWN_CLOSE, read)]
        pid = os.posix_spawn(
            sys.executable, [sys.executable, sys.argv[0], "fingerprint"], os.environ, file_actions=actions
        )
    finally:
        os.close(write)
    chunks = []
    with os.fdopen(read, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        decoded = decode(line)
        if decoded is not None and decoded[0] is Line.FINGERPRINT:
            return dict(decoded[1].get("data") or {})
    return {"error": "the fingerprint child printed no fingerprint"}


def run(spec: dict[str, Any], emit: Emitter) -> int:
    from benchbed.workloads import Context, Skipped, load_for

    sha = _own_sha256()
    emit.hold_s = float(spec.get("hold_s") or 0)  # the suite's choice: holding trades kill-safety for quiet timing
    emit(Line.HELLO, protocol=PROTOCOL, agent=__version__, sha256=sha, pid=os.getpid(), python=sys.version.split()[0])
    if spec.get("protocol", PROTOCOL) != PROTOCOL:
        emit(
            Line.ERROR,
            error="ProtocolError",
            message=f"controller speaks protocol {spec.get('protocol')}, this agent {PROTOCOL}",
        )
        return 3
    expected = spec.get("expect_sha256")
    if expected and sha not in (expected, "unpacked"):
        emit(Line.ERROR, error="AgentMismatch", message=f"agent sha256 {sha} != expected {expected}")
        return 3
    registry = load_for(spec["workload"])
    _load_user_modules()
    stray = _not_from_zipapp()
    if stray:
        emit(Line.ERROR, error="AgentMismatch", message=f"agent module loaded from outside the zipapp: {stray}")
        return 3
    if spec.get("fingerprint"):
        emit(Line.FINGERPRINT, data=_fingerprint_apart())
    name = spec["workload"]
    info = registry.get(name)
    if info is None:
        emit(Line.ERROR, error="UnknownWorkload", message=f"workload {name!r} is not in this agent")
        return 3
    base = spec.get("scratch_dir") or tempfile.gettempdir()
    Path(base).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="benchbed-scratch-", dir=base))
    ctx = Context(
        repetitions=int(spec.get("repetitions", 5)),
        warmup=int(spec.get("warmup", 1)),
        scratch_dir=scratch,
        timeout_s=float(spec["timeout_s"]) if spec.get("timeout_s") else None,
        serve=spec.get("serve"),
        announce=lambda **fields: emit(Line.SERVE, **fields),
    )
    t0 = time.perf_counter()
    n = 0
    settled = _settle(emit, float(spec.get("settle_s") or 0))
    try:
        params = info.params(**spec.get("params", {}))
        for sample in info.fn(params, ctx):
            emit(Line.SAMPLE, **sample.to_json())
            n += 1
        emit.flush()  # the measuring is over: the controller may have the samples now
    except Skipped as skip:
        emit(Line.SKIPPED, reason=str(skip))
    except Exception as err:  # report, never hang: the controller marks the case failed
        emit(Line.ERROR, error=type(err).__name__, message=str(err), traceback=traceback.format_exc()[-4000:])
        return 1
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    if spec.get("stack_digest", True):
        _emit_stack(emit, spec, base)
    emit(Line.DONE, samples=n, wall_s=time.perf_counter() - t0, **({"settle": settled} if settled else {}))
    return 0


def _settle(emit: Emitter, max_s: float) -> dict[str, Any] | None:
    """The suite's settle gate (settle.py), after whatever we said so far has reached the controller: its
    reaction to our lines is part of what must be over before the workload starts."""
    if max_s <= 0:
        return None
    from benchbed.agent.settle import settle

    emit.flush()
    return settle(max_s)


def _emit_stack(emit: Emitter, spec: dict[str, Any], scratch_base: str) -> None:
    """After the workload: the userland it ran on (stack.py). Never fails the instance; a failure is a reason."""
    from benchbed.agent.stack import stack_digest

    t0 = time.perf_counter()
    cache = spec.get("stack_cache")
    try:
        record = stack_digest(
            exclude=[str(Path(sys.argv[0]).resolve().parent), scratch_base],
            cache=Path(cache) if cache else None,
        )
    except Exception as err:  # a digest we cannot take is reported as such, not guessed
        record = {"digest": None, "reason": f"{type(err).__name__}: {err}"}
    emit(Line.STACK, data=record, seconds=time.perf_counter() - t0)


def _end_with_controller(whole_group: bool) -> None:
    """End this agent and everything it started once the controller is gone (its end of our stdin closed): a
    killed harness must not leave a workload running. Only where the controller asked for it (`WATCH_ENV`): a
    local agent leads its own process group; over ssh the group is the session's (`whole_group`), which sshd
    gave to this command alone."""
    import signal
    import threading

    def watch() -> None:
        try:  # the raw fd, not sys.stdin: a buffered reader's lock held by this thread aborts interpreter exit
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        if whole_group or os.getpgrp() == os.getpid():  # the workload's children go with us
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="benchbed-controller-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    sys.stdout = sys.stderr  # workloads' prints go to stderr; stdout is the protocol channel
    emit = Emitter(proto)  # nothing held until a case's spec asks for it (`hold_s`)
    try:
        return _command(args, emit)
    finally:
        emit.flush()  # held lines go out whichever way the command ends (an exception's traceback follows them)


def _command(args: list[str], emit: Emitter) -> int:
    if not args or args[0] not in ("run", "fingerprint", "list"):
        print("usage: agent.pyz run SPEC_JSON | fingerprint | list", file=sys.stderr)
        return 2
    if args[0] == "fingerprint":
        from benchbed.agent.fingerprint import collect

        emit(Line.FINGERPRINT, data=collect())
        return 0
    if args[0] == "list":
        from benchbed.workloads import load_builtins

        _load_user_modules()
        for name in sorted(load_builtins()):
            emit(Line.WORKLOAD, name=name)
        return 0
    watch = os.environ.get(WATCH_ENV)
    if len(args) > 1 and watch in WATCH_MODES:
        _end_with_controller(whole_group=watch == "group")
    try:
        spec = json.loads(args[1] if len(args) > 1 else sys.stdin.read())
    except json.JSONDecodeError as err:
        emit(Line.ERROR, error="BadSpec", message=f"spec is not JSON: {err}")
        return 2
    return run(spec, emit)


if __name__ == "__main__":
    raise SystemExit(main())
