"""A LangGraph graph behaves the same on `SegmentSaver` as on LangGraph's own `SqliteSaver`.

One scenario, parametrised over both savers: a parallel branch fails (the other
branch's writes are kept), the run resumes, stops at a static interrupt, gets its state
updated, stops at a dynamic `interrupt()`, is resumed with `Command(resume=...)`, and
is then time-travelled from an older checkpoint (a fork). Its trace (every state seen,
the whole history with parent links, node call counts) must be the same with both.
"""

from __future__ import annotations

import operator
import sqlite3
import time
from collections import Counter
from contextlib import closing
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from pyactors.langgraph import SegmentSaver

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.types import StateSnapshot


class State(TypedDict, total=False):
    x: int
    log: Annotated[list[str], operator.add]
    a: int
    b: int


class Flaky:
    """The nodes; `b` fails until `fixed` is set; every call is counted.

    A broken `b` fails only once the saver holds `a`'s writes: if it failed first,
    LangGraph would stop the superstep before saving them (whatever the saver).
    """

    def __init__(self, saver: BaseCheckpointSaver[Any]) -> None:
        self.calls: Counter[str] = Counter()
        self.fixed = False
        self.saver = saver

    def _wait_for_writes_of_a(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            tup = self.saver.get_tuple({"configurable": {"thread_id": "t1", "checkpoint_ns": ""}})
            if tup is not None and any(channel == "a" for _, channel, _ in tup.pending_writes or ()):
                return
            time.sleep(0.005)
        raise AssertionError("a's writes never reached the saver")

    def start(self, state: State) -> State:
        self.calls["start"] += 1
        return {"log": ["start"], "x": state["x"] + 1}

    def a(self, state: State) -> State:
        self.calls["a"] += 1
        return {"log": ["a"], "a": state["x"] * 10}

    def b(self, state: State) -> State:
        self.calls["b"] += 1
        if not self.fixed:
            self._wait_for_writes_of_a()
            raise ValueError("b is broken")
        return {"log": ["b"], "b": state["x"] * 100}

    def join(self, state: State) -> State:
        self.calls["join"] += 1
        answer = interrupt({"question": "approve?", "x": state["x"]})
        return {"log": [f"join:{answer}"]}


def build(nodes: Flaky, saver: BaseCheckpointSaver[Any]) -> Any:
    g: StateGraph[State] = StateGraph(State)
    for name in ("start", "a", "b", "join"):
        g.add_node(name, getattr(nodes, name))
    g.add_edge(START, "start")
    g.add_edge("start", "a")
    g.add_edge("start", "b")
    g.add_edge("a", "join")
    g.add_edge("b", "join")
    g.add_edge("join", END)
    return g.compile(checkpointer=saver, interrupt_before=["join"])


def _state(s: StateSnapshot, ids: dict[str, int]) -> dict[str, Any]:
    cid = s.config["configurable"]["checkpoint_id"]
    parent = s.parent_config["configurable"]["checkpoint_id"] if s.parent_config else None
    return {
        "at": ids.setdefault(cid, len(ids)),
        "parent": None if parent is None else ids.setdefault(parent, len(ids)),
        "values": s.values,
        "next": s.next,
        "source": s.metadata.get("source") if s.metadata else None,
        "step": s.metadata.get("step") if s.metadata else None,
        "tasks": [(t.name, repr(t.error), [i.value for i in t.interrupts], t.result) for t in s.tasks],
        "interrupts": [i.value for i in s.interrupts],
    }


def _out(out: dict[str, Any]) -> dict[str, Any]:
    """An invoke() result, with interrupts by value (their ids derive from random checkpoint ids)."""
    return {k: [i.value for i in v] if k == "__interrupt__" else v for k, v in out.items()}


def scenario(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    """Run the scenario; return its trace (checkpoint ids replaced by their order of appearance)."""
    nodes = Flaky(saver)
    graph = build(nodes, saver)
    cfg: Any = {"configurable": {"thread_id": "t1"}}
    ids: dict[str, int] = {}
    trace: list[Any] = []

    with pytest.raises(ValueError, match="b is broken"):
        graph.invoke({"x": 1, "log": []}, cfg)
    failed = graph.get_state(cfg)
    trace.append(("failed", _state(failed, ids)))
    assert failed.next == ("b",)  # a finished: its writes are kept
    assert dict(nodes.calls) == {"start": 1, "a": 1, "b": 1}

    nodes.fixed = True
    out = graph.invoke(None, cfg)  # resumes: only b runs again, then stops before join
    trace.append(("resumed", _out(out)))
    assert nodes.calls["a"] == 1, "the branch that finished must not run again"
    assert nodes.calls["b"] == 2
    assert graph.get_state(cfg).next == ("join",)

    graph.update_state(cfg, {"x": 7}, as_node="b")
    trace.append(("updated", _state(graph.get_state(cfg), ids)))
    out = graph.invoke(None, cfg)  # join starts, then stops at interrupt()
    trace.append(("interrupted", _out(out)))
    waiting = graph.get_state(cfg)
    trace.append(("waiting", _state(waiting, ids)))
    assert [i.value for i in waiting.interrupts] == [{"question": "approve?", "x": 7}]

    final = graph.invoke(Command(resume="yes"), cfg)
    trace.append(("final", _out(final)))
    assert final["log"] == ["start", "a", "b", "join:yes"]
    assert final["x"] == 7

    history = list(graph.get_state_history(cfg))
    before_update = next(s for s in history if s.next == ("join",) and s.metadata and s.metadata["source"] == "loop")
    trace.append(("time travel from", _state(before_update, ids)))
    forked = graph.invoke(None, before_update.config)  # replays from before the update: x is 2 again
    trace.append(("forked", _out(forked)))
    forked = graph.invoke(Command(resume="no"), cfg)
    trace.append(("forked final", _out(forked)))
    assert forked["x"] == 2
    assert forked["log"] == ["start", "a", "b", "join:no"]

    trace.append(("history", [_state(s, ids) for s in graph.get_state_history(cfg)]))
    trace.append(("calls", dict(nodes.calls)))
    return trace


@pytest.fixture(scope="module")
def sqlite_trace(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The reference: the scenario on LangGraph's own SqliteSaver."""
    path = tmp_path_factory.mktemp("sqlite") / "lg.sqlite"
    with closing(sqlite3.connect(path, check_same_thread=False)) as conn:
        return scenario(SqliteSaver(conn))


@pytest.fixture
def saver_factory(tmp_path: Path) -> Iterator[Callable[[str], BaseCheckpointSaver[Any]]]:
    opened: list[Any] = []

    def make(kind: str) -> BaseCheckpointSaver[Any]:
        if kind == "sqlite":
            conn = sqlite3.connect(tmp_path / "lg.sqlite", check_same_thread=False)
            opened.append(conn)
            return SqliteSaver(conn)
        saver = SegmentSaver(tmp_path / "lg")
        opened.append(saver)
        return saver

    yield make
    for x in opened:
        x.close()


@pytest.mark.parametrize("kind", ["sqlite", "segment"])
def test_graph_with_failures_interrupts_updates_and_time_travel_matches_sqlite(
    kind: str, saver_factory: Callable[[str], BaseCheckpointSaver[Any]], sqlite_trace: list[Any]
) -> None:
    trace = scenario(saver_factory(kind))
    assert len(trace[-2][1]) >= 8  # the history holds every checkpoint, the fork included
    assert trace == sqlite_trace
