"""Workflow recovery: interrupts at every position, complex state resumed, a long run SIGKILLed (more: tests/crash/)."""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pykka
import pytest
from _util import wait_for
from _workflows import DIAMOND_ORDER, DIAMOND_STEPS, SPANS, diamond, is_final

from pyactors import END, FileCheckpointer, MemoryCheckpointer, PersistentActor, Workflow
from pyactors.workflow import unfinished
from pyactors.workflow._checkpoint import FULL_EVERY

if TYPE_CHECKING:
    from pyactors.workflow import CompiledWorkflow

    Checkpointer = FileCheckpointer | MemoryCheckpointer

pytestmark = pytest.mark.usefixtures("_workflow_reset")


def _finish(app: CompiledWorkflow, thread_id: str) -> dict[str, Any]:
    """Resume `thread_id` past every interrupt until its run ends; return the final state."""
    for _ in range(50):
        snap = app.get_state(thread_id)
        if is_final(snap):
            return snap.state
        app.resume(thread_id)
    pytest.fail(f"thread {thread_id!r} did not finish after 50 resumes")


def _runs_of(thread_id: str) -> list[str]:
    """The nodes whose body returned in thread `thread_id` (from `SPANS`), in no particular order."""
    return [node for node, tid, _, _ in SPANS if tid == thread_id]


def _before(node: str) -> set[str]:
    """The diamond's nodes of the supersteps before the one that runs `node`."""
    out: set[str] = set()
    for superstep in DIAMOND_STEPS:
        if node in superstep:
            return out
        out |= superstep
    raise AssertionError(node)


# -- interrupts at every position ------------------------------------------------------


def test_workflow_interruption_and_resumption(checkpointer: Checkpointer) -> None:
    wf = diamond()
    uninterrupted = wf.compile(checkpointer=checkpointer).invoke({"x": 9, "thread": "ref"}, thread_id="ref")
    assert sorted(_runs_of("ref")) == sorted(DIAMOND_ORDER)

    for node in DIAMOND_ORDER:
        # Before the node: stopped with every earlier superstep done and the node next.
        t = f"before-{node}"
        app = wf.compile(checkpointer=checkpointer, interrupt_before=[node])
        app.invoke({"x": 9, "thread": t}, thread_id=t)
        snap = app.get_state(t)
        assert node in snap.next_nodes, t
        assert set(snap.completed_nodes) == _before(node), t
        assert {k for k in snap.state if k in DIAMOND_ORDER} == _before(node), t
        assert _finish(app, t) == {**uninterrupted, "thread": t}, t

        # After the node: stopped with its superstep done.
        t = f"after-{node}"
        app = wf.compile(checkpointer=checkpointer, interrupt_after=[node])
        state = app.invoke({"x": 9, "thread": t}, thread_id=t)
        snap = app.get_state(t)
        assert node in snap.completed_nodes, t
        assert node in state, t
        assert _finish(app, t) == {**uninterrupted, "thread": t}, t

        # execute_until the node, on an app without interrupts.
        t = f"until-{node}"
        app = wf.compile(checkpointer=checkpointer)
        snap = app.execute_until(node, {"x": 9, "thread": t}, thread_id=t)
        assert node in snap.next_nodes, t
        assert set(snap.completed_nodes) == _before(node), t
        assert app.resume(t) == {**uninterrupted, "thread": t}, t

    # However often a thread was stopped, each node ran exactly once in it.
    for node in DIAMOND_ORDER:
        for where in ("before", "after", "until"):
            t = f"{where}-{node}"
            assert sorted(_runs_of(t)) == sorted(DIAMOND_ORDER), t
            assert sorted(checkpointer.list(t)[0].completed_nodes) == sorted(DIAMOND_ORDER), t


# -- complex state -----------------------------------------------------------------------


class Ledger(PersistentActor):
    """A stateful node: its own state is the list of its visits, each noting the items it saw."""

    def run(self, state: dict[str, Any]) -> dict[str, Any]:
        visits = list(self.state or [])
        visits.append(f"visit {len(visits) + 1}: items {sorted(state.get('items', {}))}")
        self.state = visits
        return {"ledger": list(visits), "log": ["ledger"]}


def _merge(old: dict[str, int] | None, new: dict[str, int]) -> dict[str, int]:
    return {**(old or {}), **new}


def _union(old: list[str] | None, new: list[str]) -> list[str]:
    return sorted({*(old or []), *new})


def _complex() -> Workflow:
    """ledger -> prepare -> (w1 | w2 -> w2b | w3 | w4 -> w4b -> w4c) -> join -> ledger -> END.

    Channels: log (list, +), items (dict, merged), total (int, +), peak (max),
    tags (set-like list, union), base and summary (last write wins).
    """
    wf = Workflow(
        "complex",
        reducers={"log": operator.add, "items": _merge, "total": operator.add, "peak": max, "tags": _union},
    )

    def prepare(state: dict[str, Any]) -> dict[str, Any]:
        return {"log": ["prepare"], "total": 1, "base": 10, "peak": 0}

    def branch(name: str, factor: int) -> Any:
        def body(state: dict[str, Any]) -> dict[str, Any]:
            time.sleep(0.01 * factor)
            value = state["base"] * factor + len(state.get("items", {}))
            return {"items": {name: value}, "total": factor, "peak": value, "tags": [name]}

        return body

    def join(state: dict[str, Any]) -> dict[str, Any]:
        return {"summary": sorted(state["items"].items()), "log": ["join"]}

    def route(state: dict[str, Any]) -> str:
        return "done" if "summary" in state else "go"

    wf.add_node("ledger", Ledger)
    wf.add_node("prepare", prepare)
    for i, name in enumerate(("w1", "w2", "w3", "w4", "w2b", "w4b", "w4c"), start=1):
        wf.add_node(name, branch(name, i))
    wf.add_node("join", join)
    wf.set_entry_point("ledger")
    wf.add_conditional_edges("ledger", route, {"go": "prepare", "done": END})
    for name in ("w1", "w2", "w3", "w4"):
        wf.add_edge("prepare", name)
    wf.add_edge("w2", "w2b")
    wf.add_edge("w4", "w4b")
    wf.add_edge("w4b", "w4c")
    for last in ("w1", "w2b", "w3", "w4c"):
        wf.add_edge(last, "join")
    wf.add_edge("join", "ledger")
    return wf


INITIAL = {"log": [], "items": {}, "total": 0, "peak": 0, "tags": []}


def test_complex_state_resumption(checkpointer: Checkpointer, checkpoint_path: Path) -> None:
    reference = _complex().compile(checkpointer=checkpointer).invoke(INITIAL, thread_id="ref")
    assert reference["log"] == ["ledger", "prepare", "join", "ledger"]
    assert reference["ledger"] == [
        "visit 1: items []",
        "visit 2: items ['w1', 'w2', 'w2b', 'w3', 'w4', 'w4b', 'w4c']",
    ]
    assert reference["total"] == 1 + sum(range(1, 8))
    assert reference["tags"] == ["w1", "w2", "w2b", "w3", "w4", "w4b", "w4c"]

    # Stopped after w1, in the middle of the fan-out: w2b, w4b and w4c still to run.
    app = _complex().compile(checkpointer=checkpointer, interrupt_after=["w1"])
    interrupted = app.invoke(INITIAL, thread_id="t")
    snap = app.get_state("t")
    assert {"w2b", "w4b"} <= set(snap.next_nodes)
    assert set(snap.completed_nodes) == {"ledger", "prepare", "w1", "w2", "w3", "w4"}
    assert set(interrupted["items"]) == {"w1", "w2", "w3", "w4"}
    assert interrupted["ledger"] == ["visit 1: items []"]
    assert "summary" not in interrupted

    # Nothing of this run survives in memory: a new app (and, for files, a new
    # checkpointer on the same directory) resumes from the checkpoints alone.
    pykka.ActorRegistry.stop_all()
    if isinstance(checkpointer, FileCheckpointer):
        checkpointer.close()
        with FileCheckpointer(checkpoint_path) as again:
            fresh = _complex().compile(checkpointer=again)
            assert fresh.get_state("t").state == interrupted
            final = fresh.resume("t")
            history = fresh.get_history("t")
            pykka.ActorRegistry.stop_all()
    else:
        fresh = _complex().compile(checkpointer=checkpointer)
        assert fresh.get_state("t").state == interrupted
        final = fresh.resume("t")
        history = fresh.get_history("t")

    # Every channel reconstructed, the stateful node's own state too (its second visit
    # counts the first, which ran before the interrupt).
    assert final == reference
    assert final["ledger"][0] == "visit 1: items []"
    assert len(final["ledger"]) == 2
    assert is_final(history[0])
    assert sorted(history[0].completed_nodes) == sorted(
        ["ledger", "prepare", "w1", "w2", "w3", "w4", "w2b", "w4b", "w4c", "join", "ledger"]
    )

    # At the interrupt, the next superstep runs w2b and w4b; the join waits for w4c, so
    # it is not among the next nodes yet.
    assert set(snap.next_nodes) == {"w2b", "w4b"}


# -- a long run SIGKILLed, resumed in another process -----------------------------------

LONG_STEPS = 20 * FULL_EVERY
PAD = "p" * 5000


def long_loop(marks: Path) -> Workflow:
    """One node run `LONG_STEPS` times (``log`` grows by one item a step); each run appends its ``n`` to `marks`."""
    wf = Workflow("long", reducers={"log": operator.add})

    def tick(state: dict[str, Any]) -> dict[str, Any]:
        with marks.open("a") as f:
            f.write(f"{state['n']}\n")
        time.sleep(0.002)  # long enough a run for the kill to land in its middle
        return {"n": state["n"] + 1, "log": [state["n"]]}

    wf.add_node("tick", tick)
    wf.add_conditional_edges(
        "tick", lambda s: "again" if s["n"] < LONG_STEPS else "done", {"again": "tick", "done": END}
    )
    wf.set_entry_point("tick")
    return wf


_LONG_RUN = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from test_workflow_recovery import PAD, long_loop
from pyactors import FileCheckpointer
with FileCheckpointer(sys.argv[1]) as cp:
    long_loop(Path(sys.argv[2])).compile(checkpointer=cp).invoke({"n": 0, "log": [], "pad": PAD}, thread_id="long")
"""


def _marks(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_crash_recovery(tmp_path: Path) -> None:
    """A long thread SIGKILLed mid-run resumes in another process from its last checkpoint; one step at most reruns."""
    store, marks = tmp_path / "store", tmp_path / "marks"
    child = subprocess.Popen([sys.executable, "-c", _LONG_RUN, str(store), str(marks), str(Path(__file__).parent)])
    try:
        wait_for(lambda: len(_marks(marks)) >= 5 * FULL_EVERY + 7, timeout=60, what="the child's run")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    killed_at = _marks(marks)
    assert len(killed_at) < LONG_STEPS, "the run finished before the kill"

    with FileCheckpointer(store) as cp:
        assert unfinished(cp) == ["long"]
        app = long_loop(marks).compile(checkpointer=cp)
        snap = app.get_state("long")
        n = snap.state["n"]
        assert n in (killed_at[-1], killed_at[-1] + 1)  # the step in flight was checkpointed or not
        assert snap.state == {"n": n, "log": list(range(n)), "pad": PAD}
        assert snap.next_nodes == ("tick",)
        assert [s.step for s in app.get_history("long", limit=5)] == list(range(n, n - 5, -1))

        assert app.resume("long") == {"n": LONG_STEPS, "log": list(range(LONG_STEPS)), "pad": PAD}
        assert unfinished(cp) == []
    runs = Counter(_marks(marks))
    assert sorted(runs) == list(range(LONG_STEPS))
    assert {k: v for k, v in runs.items() if v > 1} in ({}, {n: 2})  # only an unrecorded step ran again
