"""Workflow corner cases: bad graphs and routers, bad calls, long delta chains, damaged stores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from _workflows import expected_linear, linear, step

from pyactors import (
    END,
    FileCheckpointer,
    InvalidArgumentError,
    Kind,
    MemoryCheckpointer,
    NodeFailedError,
    PersistentActor,
    SegmentStore,
    Workflow,
)
from pyactors.errors import CheckpointCorruptError, CheckpointNotFoundError, WorkflowError
from pyactors.workflow import unfinished
from pyactors.workflow._checkpoint import FULL_EVERY

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("_workflow_reset")


def _counter(*, routes: Any, mapping: dict[str, str] | None) -> Workflow:
    wf = Workflow("router")
    wf.add_node("a", lambda s: {"n": s.get("n", 0) + 1})
    wf.add_node("b", lambda s: {"b": True})
    wf.add_conditional_edges("a", routes, mapping)
    wf.set_entry_point("a")
    return wf


def test_a_router_without_mapping_names_nodes_or_end_and_reaches_everything() -> None:
    app = _counter(routes=lambda s: "a" if s["n"] < 3 else ["b", END], mapping=None).compile()
    assert app.invoke({}, thread_id="t") == {"n": 3, "b": True}


def test_a_router_returning_an_unknown_key_or_node_fails_the_run_with_a_clear_error() -> None:
    app = _counter(routes=lambda s: "nowhere", mapping={"go": "b"}).compile()
    with pytest.raises(WorkflowError, match="returned 'nowhere'"):
        app.invoke({}, thread_id="t1")
    app = _counter(routes=lambda s: "ghost", mapping=None).compile()
    with pytest.raises(WorkflowError, match="unknown node 'ghost'"):
        app.invoke({}, thread_id="t2")


class _NoRun(PersistentActor):
    pass


@pytest.mark.parametrize(
    ("build", "culprit"),
    [
        (lambda wf: wf.add_node(END, step("x")), "__end__"),
        (lambda wf: wf.add_node("x", _NoRun), "run(self, state)"),
        (lambda wf: wf.add_node("x", 42), "must be a function"),
        (lambda wf: wf.add_node("x", dict), "must be a function"),
    ],
)
def test_add_node_refuses_bad_names_and_nodes(build: Any, culprit: str) -> None:
    with pytest.raises(WorkflowError, match=culprit.replace("(", r"\(").replace(")", r"\)")):
        build(Workflow("bad"))


def test_compile_names_an_unknown_entry_point_interrupt_or_branch_source() -> None:
    wf = Workflow("bad").add_node("a", step("a")).set_entry_point("zz")
    with pytest.raises(WorkflowError, match="entry point 'zz'"):
        wf.compile()
    wf = Workflow("bad").add_node("a", step("a")).set_entry_point("a")
    with pytest.raises(WorkflowError, match="interrupt on unknown node 'q'"):
        wf.compile(interrupt_before=["q"])
    wf.add_conditional_edges("ghost", lambda s: END, {"x": END})
    with pytest.raises(WorkflowError, match="'ghost'"):
        wf.compile()


def test_a_node_returning_something_else_than_a_dict_fails_as_that_node() -> None:
    wf = Workflow("bad").add_node("a", lambda s: [1, 2]).set_entry_point("a")
    with pytest.raises(NodeFailedError) as info:
        wf.compile().invoke({}, thread_id="t")
    error = info.value.snapshot.error  # type: ignore[attr-defined]
    assert (error.node, error.exc_type) == ("a", "WorkflowError")


def test_bad_calls_raise_typed_errors() -> None:
    app = linear(("a", "b")).compile()
    with pytest.raises(WorkflowError, match="unknown node 'zz'"):
        app.execute_until("zz", {}, thread_id="t")
    with pytest.raises(WorkflowError, match="as unknown node 'zz'"):
        app.update_state("t", {}, as_node="zz")
    with pytest.raises(CheckpointNotFoundError):
        app.update_state("nope", {"x": 1})
    with pytest.raises(CheckpointNotFoundError):
        app.resume("nope")
    with pytest.raises(CheckpointNotFoundError):
        app.get_state("nope")
    with pytest.raises(InvalidArgumentError):
        FileCheckpointer()


def test_execute_until_without_input_resumes_the_thread_up_to_the_node() -> None:
    app = linear(("a", "b", "c", "d")).compile(interrupt_before=["b"])
    app.invoke({"x": 1}, thread_id="t")
    snap = app.execute_until("d", None, thread_id="t")
    assert snap.next_nodes == ("d",)
    assert app.resume("t") == expected_linear(("a", "b", "c", "d"), {"x": 1})


def test_resuming_a_finished_thread_returns_its_state_and_writes_nothing() -> None:
    app = linear(("a", "b")).compile()
    final = app.invoke({"x": 1}, thread_id="t")
    before = len(app.get_history("t"))
    assert app.resume("t") == final
    assert len(app.get_history("t")) == before


def test_long_runs_write_a_full_checkpoint_every_so_often_and_prune_keeps_every_kept_one_readable() -> None:
    wf = Workflow("long")
    wf.add_node("tick", lambda s: {"n": s["n"] + 1})
    wf.add_conditional_edges(
        "tick", lambda s: "again" if s["n"] < FULL_EVERY + 8 else "done", {"again": "tick", "done": END}
    )
    wf.set_entry_point("tick")
    cp = MemoryCheckpointer()
    app = wf.compile(checkpointer=cp)
    assert app.invoke({"n": 0}, thread_id="t") == {"n": FULL_EVERY + 8}
    history = app.get_history("t")
    assert [s.state["n"] for s in history][:3] == [FULL_EVERY + 8, FULL_EVERY + 7, FULL_EVERY + 6]
    assert cp.prune("t", keep_last=5) == len(history) - 5
    assert [s.state["n"] for s in cp.list("t")] == [FULL_EVERY + 8 - i for i in range(5)]
    with pytest.raises(InvalidArgumentError):
        cp.prune("t", keep_last=0)


def test_damage_inside_a_sealed_segment_is_a_checkpoint_error_and_older_checkpoints_stay_readable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    with SegmentStore(path, segment_bytes=4096) as store:
        cp = FileCheckpointer(store=store)
        app = linear(("a", "b", "c", "d")).compile(checkpointer=cp)
        for i in range(6):
            app.invoke({"x": i, "pad": "p" * 1500}, thread_id="t")
        ids = [s.checkpoint_id for s in reversed(app.get_history("t"))]
    seg = sorted(path.glob("*.seg"))[1]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    with SegmentStore(path, segment_bytes=4096) as store:
        cp = FileCheckpointer(store=store)
        with pytest.raises(CheckpointCorruptError) as info:
            cp.latest("t")
        assert info.value.thread_id == "t"
        assert cp.get("t", ids[0]).step == 0
        # unfinished() reads each thread's newest record only: this one is intact and final
        # (the damage is in the records its state is built from), so there is nothing to resume.
        assert unfinished(cp) == []
        cp.close()  # leaves the store open: it was handed in


@pytest.mark.parametrize(("kind", "missing"), [(Kind.SNAPSHOT, "base"), (Kind.CHECKPOINT, "parent")])
def test_a_checkpoint_whose_base_or_parent_is_missing_is_reported_as_corrupt(kind: int, missing: str) -> None:
    cp = MemoryCheckpointer()
    app = linear(("a", "b")).compile(checkpointer=cp)
    app.invoke({"x": 1}, thread_id="t")
    first = next(r for r in cp._data["t"] if r[1] == kind)  # the input's base, or its checkpoint
    cp._data["t"].remove(first)
    with pytest.raises(CheckpointCorruptError, match=missing):
        cp.latest("t")
