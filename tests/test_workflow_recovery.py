"""Workflow recovery: interrupts at every position, complex state resumed (SIGKILLed runs: tests/crash/)."""

from __future__ import annotations

import operator
import time
from typing import TYPE_CHECKING, Any

import pykka
import pytest
from _workflows import DIAMOND_ORDER, DIAMOND_STEPS, SPANS, diamond, is_final

from pyactors import END, FileCheckpointer, MemoryCheckpointer, PersistentActor, Workflow

if TYPE_CHECKING:
    from pathlib import Path

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
