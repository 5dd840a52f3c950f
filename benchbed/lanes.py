"""`--parallel`: the plan split into lanes, one per machine (`Kind.lane`), run concurrently.

Everything hosted on the controller shares one lane, run on the main thread (so Ctrl-C reaches it directly); each
lane runs its cases in plan order, so two instances never share a machine.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from benchbed.plan import Case
from benchbed.targets.base import CONTROLLER
from benchbed.targets.registry import lane_of

JOIN_GRACE_S = 60.0  # after Ctrl-C: how long lanes get to kill their remote agents and remove workdirs


def lanes(cases: list[Case], specs: dict[str, Any]) -> dict[str, list[Case]]:
    """Cases grouped by machine, each lane in plan order; lanes in order of first appearance."""
    out: dict[str, list[Case]] = {}
    for case in cases:
        out.setdefault(lane_of(specs[case.target]), []).append(case)
    return out


def run_lanes(
    grouped: dict[str, list[Case]],
    run_case: Callable[[Case], None],
    parallel: int,
    stopping: threading.Event,
    stop: Callable[[], None],
) -> None:
    """Run the lanes on up to `parallel` machines at once; a bug in one lane stops all and is re-raised here."""
    here = grouped.pop(CONTROLLER, [])
    queue = deque(grouped.values())
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while not stopping.is_set():
            with lock:
                if not queue:
                    return
                lane = queue.popleft()
            try:
                for case in lane:
                    if stopping.is_set():
                        return
                    run_case(case)
            except BaseException as err:  # a bug, not a target failure: stop all lanes, re-raise in main
                errors.append(err)
                stop()
                return

    n = min(len(queue), parallel - (1 if here else 0))
    threads = [threading.Thread(target=work, name=f"benchbed-lane-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        for case in here:  # controller-hosted targets: main thread, so Ctrl-C reaches them directly
            if stopping.is_set():
                break
            run_case(case)
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except BaseException:
        stop()
        end = time.monotonic() + JOIN_GRACE_S
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
        raise
    if errors:
        raise errors[0]
