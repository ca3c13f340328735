"""Writes the SegmentSaver store of this directory with the headers of before issue 15 (format 1).

Run with a checkout of that code: ``python tests/data/langgraph_v1/make.py`` (it replaces
``store/`` and ``expected.json`` here). ``tests/test_langgraph.py`` loads `graph` from this
file and checks that today's code reads, lists, continues and prunes what it wrote.
"""

from __future__ import annotations

import json
import operator
import shutil
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, StateGraph

HERE = Path(__file__).parent
STEPS = 12


class State(TypedDict):
    n: int
    log: Annotated[list[int], operator.add]
    pad: str


def graph(stop: int = STEPS) -> Any:
    """One node that counts `n` up to `stop` and logs each value (a list growing by one a step)."""
    g = StateGraph(State)
    g.add_node("tick", lambda s: {"n": s["n"] + 1, "log": [s["n"]]})
    g.add_conditional_edges("tick", lambda s: "tick" if s["n"] < stop else END)
    g.set_entry_point("tick")
    return g


def main() -> None:
    from pyactors.langgraph import SegmentSaver

    store = HERE / "store"
    shutil.rmtree(store, ignore_errors=True)
    config: Any = {"configurable": {"thread_id": "t1"}, "recursion_limit": 100}
    with SegmentSaver(store) as saver:
        app = graph().compile(checkpointer=saver)
        final = app.invoke({"n": 0, "log": [], "pad": "p" * 3000}, config)
        history = [
            {"id": h.config["configurable"]["checkpoint_id"], "values": h.values} for h in app.get_state_history(config)
        ]
    (store / "LOCK").unlink()
    (HERE / "expected.json").write_text(json.dumps({"final": final, "history": history}, indent=1) + "\n")


if __name__ == "__main__":
    main()
