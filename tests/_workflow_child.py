"""A workflow run in a child process, for the crash test (run as a script; not collected).

Usage:
    python _workflow_child.py STORE SIDE_LOG THREAD LIFE

Opens a `FileCheckpointer` on STORE (durability "process") and runs the workflow of
`build()` for THREAD: `resume(THREAD)` if the thread has a checkpoint that is not final,
`invoke(INPUT, thread_id=THREAD)` if it has none. Then it prints ``done`` and exits. The
parent SIGKILLs it at random moments.

The graph: ``start -> (p1, p2, p3, p4) -> join -> tail``, a fan-out of four parallel
branches of different durations. Each node body appends to SIDE_LOG (one ``write(2)``
per line, so a kill never tears a line) ``LIFE NODE start T`` when it starts and
``LIFE NODE end T`` just before it returns (T: `time.monotonic()`, which is the same
clock in every process on Linux): the executions the parent counts.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from pyactors import Workflow

INPUT = {"x": 5}
NAPS = {"start": 0.03, "p1": 0.02, "p2": 0.08, "p3": 0.15, "p4": 0.25, "join": 0.03, "tail": 0.05}
BRANCHES = ("p1", "p2", "p3", "p4")
NODES = tuple(NAPS)


def union(old: list[str] | None, new: list[str]) -> list[str]:
    """Reducer: the sorted union of two lists of names."""
    return sorted({*(old or []), *new})


def build(side_log: str, life: int) -> Workflow:
    """The workflow; its nodes log their executions to `side_log` as life `life`."""
    fd = os.open(side_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def node(name: str) -> Any:
        def body(state: dict[str, Any]) -> dict[str, Any]:
            os.write(fd, f"{life} {name} start {time.monotonic():.6f}\n".encode())
            time.sleep(NAPS[name])
            out = {
                name: f"{name} saw x={state['x']} seen={','.join(state.get('seen', []))}",
                "seen": [name],
                "total": len(name),
            }
            os.write(fd, f"{life} {name} end {time.monotonic():.6f}\n".encode())
            return out

        body.__name__ = f"node_{name}"
        return body

    wf = Workflow("crashy", reducers={"seen": union, "total": lambda a, b: (a or 0) + b})
    for name in NODES:
        wf.add_node(name, node(name))
    for branch in BRANCHES:
        wf.add_edge("start", branch)
        wf.add_edge(branch, "join")
    wf.add_edge("join", "tail")
    wf.set_entry_point("start")
    wf.set_finish_point("tail")
    return wf


def main(argv: list[str]) -> None:
    from pyactors import FileCheckpointer
    from pyactors.errors import CheckpointNotFoundError

    store, side_log, thread, life = argv
    with FileCheckpointer(store, durability="process") as cp:
        app = build(side_log, int(life)).compile(checkpointer=cp)
        try:
            snap = app.get_state(thread)
        except CheckpointNotFoundError:
            app.invoke(INPUT, thread_id=thread)
        else:
            if snap.next_nodes or snap.error is not None:
                app.resume(thread)
    os.write(sys.stdout.fileno(), b"done\n")


if __name__ == "__main__":
    main(sys.argv[1:])
