"""A workflow run stops at its `recursion_limit`, checkpointed, and resumes with a higher one (issue 19)."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import pykka
import pytest

from pyactors import END, InvalidArgumentError, MemoryCheckpointer, RecursionLimitError, Workflow
from pyactors.workflow import DEFAULT_RECURSION_LIMIT, CompiledWorkflow, unfinished

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def counting(until: int | None) -> CompiledWorkflow:
    """``tick`` adds 1 to ``n``, again while ``n < until`` (None: forever), then ``stop`` runs once."""
    wf = Workflow("counting")
    wf.add_node("tick", lambda s: {"n": s["n"] + 1})
    wf.add_node("stop", lambda s: {})
    wf.add_conditional_edges(
        "tick", lambda s: "again" if until is None or s["n"] < until else "done", {"again": "tick", "done": "stop"}
    )
    wf.add_edge("stop", END)
    wf.set_entry_point("tick")
    return wf.compile(checkpointer=MemoryCheckpointer())


def test_a_loop_that_never_ends_stops_at_the_limit_checkpointed() -> None:
    app = counting(None)
    with pytest.raises(RecursionLimitError) as info:
        app.invoke({"n": 0}, thread_id="t", recursion_limit=5)
    err = info.value
    assert err.limit == 5
    assert "recursion limit of 5 supersteps reached in thread 't'" in str(err)
    assert "resume('t', recursion_limit=...) continues it" in str(err)
    snap: Any = err.snapshot
    assert (snap.state, snap.next_nodes, snap.step) == ({"n": 5}, ("tick",), 5)
    assert app.get_state("t") == snap  # the stop is the thread's newest checkpoint
    assert unfinished(app.checkpointer) == ["t"]
    with pytest.raises(RecursionLimitError) as again:
        app.resume("t", recursion_limit=3)  # the limit counts the supersteps of this call
    assert again.value.snapshot.state == {"n": 8}  # type: ignore[attr-defined]
    restored = pickle.loads(pickle.dumps(again.value))
    assert (str(restored), restored.limit, restored.snapshot) == (str(again.value), 3, again.value.snapshot)


def test_a_thread_stopped_by_the_limit_resumes_to_the_state_of_an_uninterrupted_run() -> None:
    # 7 ticks and the stop: 8 supersteps, exactly the limit.
    assert counting(7).invoke({"n": 0}, thread_id="t", recursion_limit=8) == {"n": 7}
    app = counting(7)
    with pytest.raises(RecursionLimitError):
        app.invoke({"n": 0}, thread_id="t", recursion_limit=7)
    assert app.resume("t", recursion_limit=10) == {"n": 7}
    assert unfinished(app.checkpointer) == []
    history = app.get_history("t")
    assert history[0].step == 8
    assert [s.metadata["source"] for s in history].count("loop") == 8  # no superstep ran twice


def test_execute_until_honours_the_limit_too() -> None:
    app = counting(None)  # never reaches "stop"
    with pytest.raises(RecursionLimitError) as info:
        app.execute_until("stop", {"n": 0}, thread_id="t", recursion_limit=4)
    assert info.value.snapshot.state == {"n": 4}  # type: ignore[attr-defined]


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, "10"])
def test_a_limit_that_is_not_a_positive_int_is_invalid_argument(limit: Any) -> None:
    app = counting(3)
    with pytest.raises(InvalidArgumentError, match="recursion_limit must be an int of at least 1"):
        app.invoke({"n": 0}, thread_id="t", recursion_limit=limit)
    assert app.checkpointer.threads() == []  # refused before anything was written


def test_the_default_limit_is_ten_thousand_supersteps() -> None:
    assert DEFAULT_RECURSION_LIMIT == 10_000
