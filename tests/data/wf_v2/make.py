"""Writes the workflow store of this directory with the checkpoint layout of before issue 15 (v2 records).

Run with a checkout of that code: ``python tests/data/wf_v2/make.py`` (it replaces ``store/`` and
``expected.json`` here). ``tests/test_workflow_history.py`` loads `graph` from this file and checks
that today's code opens, reads, resumes and prunes what it wrote.
"""

from __future__ import annotations

import contextlib
import json
import operator
import shutil
import sys
from pathlib import Path
from typing import Any

from pyactors import END, FileCheckpointer, NodeFailedError, Workflow

LOOP_STEPS = 40
"""Supersteps of the "long" thread: more than the old FULL_EVERY (32), so it holds a second full record."""


def graph(fail: bool = False) -> Workflow:
    """tick loops until `n` reaches `stop`, appending to `log`; then `last` (raises if `fail`)."""
    wf = Workflow("v2", reducers={"log": operator.add})
    wf.add_node("tick", lambda s: {"n": s["n"] + 1, "log": [s["n"]]})

    def last(s: dict[str, Any]) -> dict[str, Any]:
        if fail:
            raise RuntimeError("boom")
        return {"done": True}

    wf.add_node("last", last)
    wf.add_conditional_edges(
        "tick", lambda s: "again" if s["n"] < s["stop"] else "end", {"again": "tick", "end": "last"}
    )
    wf.add_edge("last", END)
    wf.set_entry_point("tick")
    return wf


def main(here: Path) -> None:
    store = here / "store"
    shutil.rmtree(store, ignore_errors=True)
    expected: dict[str, Any] = {}
    with FileCheckpointer(store) as cp:
        graph().compile(checkpointer=cp).invoke({"n": 0, "stop": 3, "log": [], "pad": "p" * 300}, thread_id="done")
        graph().compile(checkpointer=cp).invoke({"n": 0, "stop": LOOP_STEPS, "log": []}, thread_id="long")
        graph().compile(checkpointer=cp, interrupt_before=["last"]).invoke(
            {"n": 0, "stop": 2, "log": []}, thread_id="paused"
        )
        with contextlib.suppress(NodeFailedError):  # the error checkpoint is the point
            graph(fail=True).compile(checkpointer=cp).invoke({"n": 0, "stop": 2, "log": []}, thread_id="failed")
        app = graph().compile(checkpointer=cp)
        app.invoke({"n": 0, "stop": 3, "log": []}, thread_id="forked")
        fork_from = next(s for s in app.get_history("forked") if s.step == 1)
        app.update_state("forked", {"stop": 5})  # a checkpoint after the end
        app.resume("forked", checkpoint_id=fork_from.checkpoint_id)
        for thread in cp.threads():
            expected[thread] = [
                {
                    "id": s.checkpoint_id,
                    "parent": s.parent_id,
                    "step": s.step,
                    "state": s.state,
                    "next": list(s.next_nodes),
                }
                for s in cp.list(thread)
            ]
    (here / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
