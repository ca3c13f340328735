"""A LangGraph graph on `SegmentSaver` in a child process, for the kill -9 test (not collected).

Usage:
    python _langgraph_child.py STORE THREAD run|resume

``run`` invokes the graph for THREAD from its input; ``resume`` continues THREAD from its
last checkpoint (``invoke(None)``) and prints the final state as JSON. The graph is one
node, ``step``, looping until ``n`` reaches `STEPS`; each call writes ``started N``
(N: the ``n`` it was given) to stdout, flushed, then sleeps a little. LangGraph runs
with ``durability="sync"``: a node starts only after the checkpoint before it is written.
"""

from __future__ import annotations

import json
import operator
import sys
import time
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from pyactors.langgraph import SegmentSaver

STEPS = 40


class State(TypedDict, total=False):
    n: int
    seen: Annotated[list[int], operator.add]


def step(state: State) -> State:
    """One step: report, nap, count."""
    print(f"started {state['n']}", flush=True)
    time.sleep(0.02)
    return {"n": state["n"] + 1, "seen": [state["n"]]}


def main() -> None:
    """Run or resume the thread."""
    store, thread, mode = sys.argv[1:4]
    g: StateGraph[State] = StateGraph(State)
    g.add_node("step", step)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", lambda s: END if s["n"] >= STEPS else "step")
    with SegmentSaver(store) as saver:
        graph = g.compile(checkpointer=saver)
        cfg: Any = {"configurable": {"thread_id": thread}, "recursion_limit": 10 * STEPS}
        if mode == "run":
            graph.invoke({"n": 0, "seen": []}, cfg, durability="sync")
        else:
            before = graph.get_state(cfg).values
            final = graph.invoke(None, cfg, durability="sync")
            print(json.dumps({"before": before, "final": final}), flush=True)


if __name__ == "__main__":
    main()
