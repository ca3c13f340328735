"""Workflow graphs and node bodies shared by the workflow tests (not collected).

Every node made by `step()` records its call in `CALLS` and its body's time span in
`SPANS`, raises `ValueError` while its name is in `FAILING`, and writes:

* ``{name: "<name saw x=X seen=A,B>"}``: what the node saw of the state when it ran, so
  that a node that saw other values (or ran at another point) gives another final state;
* ``"seen": [name]``: merged by `union` (a sorted list of the node names written so far),
  so that the merge order of one superstep does not matter;
* ``"total": 1``: merged by `add`, so that a write merged twice (or lost)
  shows in the final state.

Call `reset()` between tests.
"""

from __future__ import annotations

import itertools
import operator
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from pyactors import END, Workflow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pyactors import Snapshot

State = dict[str, Any]

CALLS: Counter[str] = Counter()
"""Calls of each node body (a failed call counts)."""

SPANS: list[tuple[str, str, float, float]] = []
"""(node, thread id of the workflow or "", start, end) of every body that returned (time.monotonic())."""

FAILING: set[str] = set()
"""Nodes that raise `ValueError` while their name is in here (the cause a test fixes)."""

GATES: dict[str, threading.Event] = {}
"""Nodes that wait (bounded) for their event before returning."""

STARTED: dict[str, threading.Event] = {}
"""Set when the node of that name starts its body."""

_LOCK = threading.Lock()

#: The longest a gated node waits (a safety bound: tests open their gates).
GATE_TIMEOUT = 10.0


def reset() -> None:
    """Forget every call, span, failure and gate."""
    with _LOCK:
        CALLS.clear()
        SPANS.clear()
        FAILING.clear()
        GATES.clear()
        STARTED.clear()


def union(old: list[str] | None, new: list[str]) -> list[str]:
    """Reducer: the sorted union of two lists of names."""
    return sorted({*(old or []), *new})


def add(old: int | None, new: int) -> int:
    """Reducer: a sum (a missing value counts as 0)."""
    return (old or 0) + new


REDUCERS: dict[str, Callable[[Any, Any], Any]] = {"seen": union, "total": add}


def saw(name: str, state: State) -> str:
    """What node `name` writes under its own key: the x and the nodes it saw."""
    return f"<{name} saw x={state.get('x', 0)} seen={','.join(state.get('seen', []))}>"


def step(name: str, *, sleep: float = 0.0) -> Callable[[State], State]:
    """A node body (see the module docstring)."""

    def body(state: State) -> State:
        start = time.monotonic()
        with _LOCK:
            CALLS[name] += 1
            started = STARTED.get(name)
            gate = GATES.get(name)
        if started is not None:
            started.set()
        if sleep:
            time.sleep(sleep)
        if gate is not None:
            gate.wait(GATE_TIMEOUT)
        if name in FAILING:
            msg = f"{name} failed on purpose"
            raise ValueError(msg)
        with _LOCK:
            SPANS.append((name, str(state.get("thread", "")), start, time.monotonic()))
        return {name: saw(name, state), "seen": [name], "total": 1}

    body.__name__ = body.__qualname__ = f"node_{name}"
    return body


def expected_linear(names: Iterable[str], given: State) -> State:
    """The final state of an uninterrupted `linear(names)` run on input `given` (computed here)."""
    state = dict(given)
    for n in names:
        state[n] = saw(n, state)
        state["seen"] = union(state.get("seen"), [n])
        state["total"] = state.get("total", 0) + 1
    return state


def linear(names: Iterable[str] = ("a", "b", "c", "d"), *, sleep: float = 0.0, name: str = "linear") -> Workflow:
    """``a -> b -> c -> d``: one node per superstep."""
    names = list(names)
    wf = Workflow(name, reducers=REDUCERS)
    for n in names:
        wf.add_node(n, step(n, sleep=sleep))
    for a, b in itertools.pairwise(names):
        wf.add_edge(a, b)
    wf.set_entry_point(names[0])
    wf.set_finish_point(names[-1])
    return wf


DIAMOND_ORDER = ("a", "b", "c", "b2", "d", "e")
"""The diamond's nodes in the order their supersteps run (b and c together)."""

DIAMOND_STEPS = ({"a"}, {"b", "c"}, {"b2"}, {"d"}, {"e"})
"""The diamond's supersteps."""


def diamond(*, sleep: float = 0.0, name: str = "diamond") -> Workflow:
    """A fan-out with branches of unequal length and a join.

    ``a -> (b -> b2, c) -> d -> e``: supersteps {a}, {b, c}, {b2}, {d}, {e}; the join
    `d` runs once, after both `b2` and `c`.
    """
    wf = Workflow(name, reducers=REDUCERS)
    for n in DIAMOND_ORDER:
        wf.add_node(n, step(n, sleep=sleep))
    wf.add_edge("a", "b")
    wf.add_edge("a", "c")
    wf.add_edge("b", "b2")
    wf.add_edge("b2", "d")
    wf.add_edge("c", "d")
    wf.add_edge("d", "e")
    wf.set_entry_point("a")
    wf.set_finish_point("e")
    return wf


def loop() -> Workflow:
    """The loop of docs/WORKFLOWS.md: fetch, count, fetch, count, ... until 3 pages."""

    def fetch(state: State) -> State:
        with _LOCK:
            CALLS["fetch"] += 1
        return {"pages": state.get("pages", 0) + 1, "log": [f"fetch{state.get('pages', 0)}"]}

    def count(state: State) -> State:
        with _LOCK:
            CALLS["count"] += 1
        return {"log": [f"count{state['pages']}"], "counted": state.get("counted", 0) + state["pages"]}

    def route(state: State) -> str:
        return "again" if state["pages"] < 3 else "done"

    wf = Workflow("loop", reducers={"log": operator.add})
    wf.add_node("fetch", fetch)
    wf.add_node("count", count)
    wf.add_edge("fetch", "count")
    wf.add_conditional_edges("count", route, {"again": "fetch", "done": END})
    wf.set_entry_point("fetch")
    return wf


def is_final(snap: Snapshot) -> bool:
    """The run of this snapshot ended (docs: no next nodes and no error)."""
    return not snap.next_nodes and snap.error is None


def source(snap: Snapshot) -> str:
    """The snapshot's metadata source (input, loop, update, resume, fork, error)."""
    return str(snap.metadata["source"])


def assert_linked(history: list[Snapshot]) -> None:
    """Each checkpoint of a fork-free history (newest first) names the next one as its parent."""
    for newer, older in itertools.pairwise(history):
        assert newer.parent_id == older.checkpoint_id, (source(newer), newer.step)
    assert history[-1].parent_id is None
    assert len({s.checkpoint_id for s in history}) == len(history)
