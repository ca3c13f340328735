"""Workflow checkpoints and resume: the nine behaviours of the original ticket (docs/WORKFLOWS.md)."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pykka
import pytest
from _segfile import dir_bytes
from _util import wait_for
from _workflows import (
    CALLS,
    FAILING,
    GATES,
    REDUCERS,
    SPANS,
    STARTED,
    assert_linked,
    diamond,
    expected_linear,
    is_final,
    linear,
    loop,
    saw,
    source,
    step,
)

from pyactors import (
    FileCheckpointer,
    Kind,
    MemoryCheckpointer,
    NodeError,
    Snapshot,
    Workflow,
)
from pyactors.errors import CheckpointNotFoundError, NodeFailedError, ResumeConflictError

if TYPE_CHECKING:
    from pathlib import Path

    from pyactors.workflow import CompiledWorkflow

    Checkpointer = FileCheckpointer | MemoryCheckpointer

pytestmark = pytest.mark.usefixtures("_workflow_reset")


def _finish(app: CompiledWorkflow, thread_id: str) -> dict[str, Any]:
    """Resume `thread_id` past every interrupt until its run ends; return the final state."""
    for _ in range(50):
        if is_final(app.get_state(thread_id)):
            return app.get_state(thread_id).state
        app.resume(thread_id)
    pytest.fail(f"thread {thread_id!r} did not finish after 50 resumes")


def _essentials(snap: Snapshot) -> dict[str, Any]:
    """What a checkpoint read back elsewhere must have kept (created_at aside)."""
    return {
        "id": snap.checkpoint_id,
        "parent": snap.parent_id,
        "step": snap.step,
        "state": snap.state,
        "completed": list(snap.completed_nodes),
        "next": list(snap.next_nodes),
        "source": source(snap),
    }


# -- 1 ------------------------------------------------------------------------------


def test_basic_resumption(checkpointer: Checkpointer) -> None:
    names = ("a", "b", "c", "d")
    app = linear(names).compile(checkpointer=checkpointer)
    uninterrupted = app.invoke({"x": 1}, thread_id="whole")
    assert uninterrupted == expected_linear(names, {"x": 1})

    snap = app.execute_until("c", {"x": 1}, thread_id="t")

    # Stopped before "c", with every value written so far: the input, a's and b's writes.
    assert isinstance(snap, Snapshot)
    assert snap.thread_id == "t"
    assert tuple(snap.next_nodes) == ("c",)
    assert list(snap.completed_nodes) == ["a", "b"]
    assert snap.error is None
    assert snap.state == expected_linear(("a", "b"), {"x": 1})
    assert app.get_state("t").checkpoint_id == snap.checkpoint_id
    assert app.get_state("t").state == snap.state
    assert CALLS["c"] == 1  # only the uninterrupted run's

    final = app.resume("t")

    assert final == uninterrupted
    assert is_final(app.get_state("t"))
    assert list(app.get_state("t").completed_nodes) == list(names)
    assert CALLS == {"a": 2, "b": 2, "c": 2, "d": 2}

    # The same in the middle of a fan-out: before the join, both branches' values are there.
    fan = diamond().compile(checkpointer=checkpointer)
    reference = fan.invoke({"x": 2}, thread_id="fan-whole")
    snap = fan.execute_until("d", {"x": 2}, thread_id="fan")
    assert tuple(snap.next_nodes) == ("d",)
    assert set(snap.completed_nodes) == {"a", "b", "c", "b2"}
    assert {"a", "b", "c", "b2"} <= set(snap.state)
    assert "d" not in snap.state
    assert snap.state["seen"] == ["a", "b", "b2", "c"]
    assert fan.resume("fan") == reference


# -- 2 ------------------------------------------------------------------------------

_READER = """
import json, sys
from pyactors import FileCheckpointer

path, thread, *ids = sys.argv[1:]
with FileCheckpointer(path) as cp:
    for cid in ids:
        s = cp.get(thread, cid)
        print(json.dumps({"id": s.checkpoint_id, "parent": s.parent_id, "step": s.step, "state": s.state,
                          "completed": list(s.completed_nodes), "next": list(s.next_nodes),
                          "source": s.metadata["source"]}))
    print(json.dumps([s.checkpoint_id for s in cp.list(thread)]))
"""


def test_checkpointer_integration(checkpoint_path: Path) -> None:
    with FileCheckpointer(checkpoint_path) as cp:
        app = diamond().compile(checkpointer=cp, interrupt_before=["d"])
        app.invoke({"x": 3}, thread_id="t")
        app.update_state("t", {"x": 30})
        final = app.resume("t")
        history = app.get_history("t")

        # One checkpoint for the input, one per superstep, one per update and resume; each
        # is in the checkpointer and in the store's stream wf/t.
        assert [source(s) for s in reversed(history)] == [
            "input",
            "loop",  # a
            "loop",  # b, c
            "loop",  # b2, then the interrupt before d
            "update",
            "resume",
            "loop",  # d
            "loop",  # e
        ]
        assert_linked(history)
        assert history[0].state == final
        assert [s.checkpoint_id for s in cp.list("t")] == [s.checkpoint_id for s in history]
        for snap in history:
            assert _essentials(cp.get("t", snap.checkpoint_id)) == _essentials(snap)
        assert "wf/t" in cp.store.streams()
        assert len(list(cp.store.read("wf/t", kinds=[Kind.CHECKPOINT]))) == len(history)
        pykka.ActorRegistry.stop_all()
    expected = [_essentials(s) for s in history]
    ids = [s.checkpoint_id for s in history]

    # A new checkpointer on the same directory finds every checkpoint by id.
    with FileCheckpointer(checkpoint_path) as again:
        assert again.threads() == ["t"]
        assert [s.checkpoint_id for s in again.list("t")] == ids
        assert [_essentials(again.get("t", cid)) for cid in ids] == expected
        app2 = diamond().compile(checkpointer=again)
        assert [_essentials(s) for s in app2.get_history("t")] == expected
        assert app2.get_state("t").state == final

    # So does a new process.
    out = subprocess.run(
        [sys.executable, "-c", _READER, str(checkpoint_path), "t", *ids],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [json.loads(line) for line in lines[:-1]] == json.loads(json.dumps(expected))
    assert json.loads(lines[-1]) == ids


# -- 3 ------------------------------------------------------------------------------


def _fan_of_three() -> Workflow:
    """``a -> b -> (c, d, e) -> f``: c returns at once, d raises after 0.05 s, e returns after 0.15 s."""
    wf = Workflow("fan3", reducers=REDUCERS)
    wf.add_node("a", step("a"))
    wf.add_node("b", step("b"))
    wf.add_node("c", step("c"))
    wf.add_node("d", step("d", sleep=0.05))
    wf.add_node("e", step("e", sleep=0.15))
    wf.add_node("f", step("f"))
    wf.add_edge("a", "b")
    for branch in ("c", "d", "e"):
        wf.add_edge("b", branch)
        wf.add_edge(branch, "f")
    wf.set_entry_point("a")
    wf.set_finish_point("f")
    return wf


def test_partial_results(checkpointer: Checkpointer) -> None:
    app = _fan_of_three().compile(checkpointer=checkpointer)
    reference = app.invoke({"x": 4}, thread_id="ref")
    CALLS.clear()
    FAILING.add("d")

    with pytest.raises(NodeFailedError) as info:
        app.invoke({"x": 4}, thread_id="t")

    snap = info.value.snapshot
    after_b = expected_linear(("a", "b"), {"x": 4})
    # Every node that finished, in order, including c and e, which finished in the
    # superstep where d failed; their writes are pending, not merged into the state.
    assert list(snap.completed_nodes) == ["a", "b", "c", "e"]
    assert snap.pending_writes == {
        "c": {"c": saw("c", after_b), "seen": ["c"], "total": 1},
        "e": {"e": saw("e", after_b), "seen": ["e"], "total": 1},
    }
    assert snap.state == after_b
    assert snap.error is not None
    assert snap.error.node == "d"
    assert app.get_state("t").checkpoint_id == snap.checkpoint_id
    # Before the failure, each checkpoint listed exactly the nodes finished until then.
    assert [list(s.completed_nodes) for s in reversed(app.get_history("t"))][:3] == [[], ["a"], ["a", "b"]]

    FAILING.clear()
    assert app.resume("t") == reference
    assert list(app.get_state("t").completed_nodes) == ["a", "b", "c", "e", "d", "f"]
    assert CALLS == {"a": 1, "b": 1, "c": 1, "d": 2, "e": 1, "f": 1}


# -- 4 ------------------------------------------------------------------------------


def _blob_step(name: str) -> Any:
    """A node that also overwrites the key "blob" with 64 KiB of incompressible bytes of its own."""
    inner = step(name)

    def body(state: dict[str, Any]) -> dict[str, Any]:
        return {**inner(state), "blob": random.Random(name).randbytes(64 * 1024)}

    return body


def test_resumption_cleanup(checkpointer: Checkpointer, checkpoint_path: Path) -> None:
    wf = Workflow("blobs", reducers=REDUCERS)
    names = ("a", "b", "c", "d")
    for n in names:
        wf.add_node(n, _blob_step(n))
    for a, b in itertools.pairwise(names):
        wf.add_edge(a, b)
    wf.set_entry_point("a")
    wf.set_finish_point("d")
    reference = wf.compile(checkpointer=MemoryCheckpointer()).invoke({"x": 5}, thread_id="ref")
    app = wf.compile(checkpointer=checkpointer, interrupt_before=["d"])
    app.invoke({"x": 5}, thread_id="t")

    history = app.get_history("t")
    assert len(history) == 4  # the input, a, b, c
    kept = history[0]
    bytes_before = dir_bytes(checkpoint_path) if isinstance(checkpointer, FileCheckpointer) else 0

    assert checkpointer.prune("t", keep_last=1) == 3

    left = checkpointer.list("t")
    assert [s.checkpoint_id for s in left] == [kept.checkpoint_id]
    assert left[0].state == kept.state
    assert list(left[0].completed_nodes) == ["a", "b", "c"]
    for gone in history[1:]:
        with pytest.raises(CheckpointNotFoundError):
            checkpointer.get("t", gone.checkpoint_id)
    assert checkpointer.prune("t", keep_last=1) == 0

    if isinstance(checkpointer, FileCheckpointer):
        checkpointer.store.compact()
        assert dir_bytes(checkpoint_path) < bytes_before
        assert checkpointer.store.verify().ok

    # The one left still resumes.
    assert app.resume("t") == reference
    assert CALLS["d"] == 2  # the reference run's and this one's


# -- 5 ------------------------------------------------------------------------------


def test_resumption_history(checkpointer: Checkpointer) -> None:
    names = ("a", "b", "c", "d", "e")
    app = linear(names).compile(checkpointer=checkpointer, interrupt_before=["c"])
    app.invoke({"x": 6}, thread_id="t")
    before = app.get_history("t")
    assert [source(s) for s in before] == ["loop", "loop", "input"]
    assert_linked(before)

    final = app.resume("t")

    after = app.get_history("t")
    assert final == expected_linear(names, {"x": 6})
    # The older entries are untouched; the resume added its own entry, then one per
    # superstep it ran (c, d, e), each linked to its parent.
    assert [s.checkpoint_id for s in after[-len(before) :]] == [s.checkpoint_id for s in before]
    assert len(after) == len(before) + 1 + 3
    assert_linked(after)
    added = list(reversed(after[: len(after) - len(before)]))  # oldest first
    assert [source(s) for s in added] == ["resume", "loop", "loop", "loop"]
    assert added[0].parent_id == before[0].checkpoint_id
    assert added[0].state == before[0].state
    assert [list(s.completed_nodes)[-1] for s in added[1:]] == ["c", "d", "e"]
    assert [s.step for s in added[1:]] == sorted({s.step for s in added[1:]})
    assert added[1].step > before[0].step
    assert after[0].checkpoint_id == app.get_state("t").checkpoint_id
    assert is_final(after[0])
    # The recovery time: on the checkpoint after the resumed run's first superstep, and on the app.
    assert app.last_recovery_ms is not None
    assert app.last_recovery_ms >= 0
    assert [s.metadata.get("recovery_ms") for s in added] == [None, app.last_recovery_ms, None, None]


# -- 6 ------------------------------------------------------------------------------


def test_error_recovery(checkpointer: Checkpointer) -> None:
    app = diamond().compile(checkpointer=checkpointer)
    reference = app.invoke({"x": 7}, thread_id="ref")
    CALLS.clear()
    FAILING.add("c")  # c fails in the superstep {b, c}

    with pytest.raises(NodeFailedError) as info:
        app.invoke({"x": 7}, thread_id="t")

    snap = info.value.snapshot
    after_a = expected_linear(("a",), {"x": 7})
    assert isinstance(snap, Snapshot)
    assert source(snap) == "error"
    assert isinstance(snap.error, NodeError)
    assert snap.error.node == "c"
    assert "ValueError" in snap.error.exc_type
    assert snap.error.message == "c failed on purpose"
    assert "_workflows.py" in snap.error.traceback  # the node's own frame
    assert "ValueError: c failed on purpose" in snap.error.traceback
    assert snap.state == after_a  # the last good state
    assert snap.pending_writes == {"b": {"b": saw("b", after_a), "seen": ["b"], "total": 1}}
    assert not is_final(snap)
    assert app.get_state("t").checkpoint_id == snap.checkpoint_id
    assert app.get_state("t").error == snap.error

    # Still broken: resume runs c again, and only c.
    with pytest.raises(NodeFailedError) as again:
        app.resume("t")
    assert again.value.snapshot.error.node == "c"
    assert again.value.snapshot.pending_writes == snap.pending_writes
    assert CALLS == {"a": 1, "b": 1, "c": 2}

    # The cause fixed: c and what follows run, nothing before it.
    FAILING.clear()
    assert app.resume("t") == reference
    assert CALLS == {"a": 1, "b": 1, "c": 3, "b2": 1, "d": 1, "e": 1}
    final = app.get_state("t")
    assert is_final(final)
    assert final.error is None
    assert sorted(final.completed_nodes) == sorted(["a", "b", "c", "b2", "d", "e"])


# -- 7 ------------------------------------------------------------------------------

RUNS = 8
NAP = 0.2


def _sleepy() -> Workflow:
    """``a -> b -> c``; b and c sleep NAP seconds (like a node waiting on I/O)."""
    wf = Workflow("sleepy", reducers=REDUCERS)
    wf.add_node("a", step("a"))
    wf.add_node("b", step("b", sleep=NAP))
    wf.add_node("c", step("c", sleep=NAP))
    wf.add_edge("a", "b")
    wf.add_edge("b", "c")
    wf.set_entry_point("a")
    wf.set_finish_point("c")
    return wf


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans open at one instant."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    depth = best = 0
    for _, delta in events:
        depth += delta
        best = max(best, depth)
    return best


def test_concurrent_resumption(checkpointer: Checkpointer) -> None:
    app = _sleepy().compile(checkpointer=checkpointer, interrupt_before=["b"])
    threads = [f"run-{i}" for i in range(RUNS)]
    for i, tid in enumerate([*threads, "solo", "dup"]):
        app.invoke({"x": i, "thread": tid}, thread_id=tid)

    def expected(tid: str) -> dict[str, Any]:
        i = [*threads, "solo", "dup"].index(tid)
        return expected_linear(("a", "b", "c"), {"x": i, "thread": tid})

    started = time.monotonic()
    assert app.resume("solo") == expected("solo")
    one_run = time.monotonic() - started

    # Eight resumes of eight threads at once, from eight Python threads.
    results: dict[str, Any] = {}
    barrier = threading.Barrier(RUNS)

    def resume(tid: str) -> None:
        barrier.wait(timeout=10)
        try:
            results[tid] = app.resume(tid)
        except Exception as exc:
            results[tid] = exc

    workers = [threading.Thread(target=resume, args=(tid,)) for tid in threads]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    eight_runs = time.monotonic() - started

    assert results == {tid: expected(tid) for tid in threads}
    for tid in threads:
        assert is_final(app.get_state(tid))
    b_spans = [(start, end) for node, tid, start, end in SPANS if node == "b" and tid in threads]
    assert len(b_spans) == RUNS
    assert _max_overlap(b_spans) >= RUNS // 2, "the node bodies of different threads did not overlap"
    assert eight_runs < 4 * one_run, f"8 runs took {eight_runs:.2f} s, one run {one_run:.2f} s"

    # Two resumes of one thread at once: one proceeds, the other is refused at once.
    GATES["b"] = threading.Event()
    STARTED["b"] = threading.Event()
    outcomes: list[Any] = []
    pair = threading.Barrier(2)

    def resume_dup() -> None:
        pair.wait(timeout=10)
        try:
            outcomes.append(app.resume("dup"))
        except ResumeConflictError as exc:
            outcomes.append(exc)

    contenders = [threading.Thread(target=resume_dup) for _ in range(2)]
    for c in contenders:
        c.start()
    try:
        wait_for(lambda: len(outcomes) >= 1, timeout=10, what="the conflicting resume to return")
        assert isinstance(outcomes[0], ResumeConflictError)
        assert STARTED["b"].wait(10), "the other resume did not proceed"
    finally:
        GATES["b"].set()
        for c in contenders:
            c.join(timeout=30)
    assert len(outcomes) == 2
    assert outcomes[1] == expected("dup")
    assert [tid for node, tid, _, _ in SPANS if node == "b"].count("dup") == 1
    assert is_final(app.get_state("dup"))

    if isinstance(checkpointer, FileCheckpointer):
        report = checkpointer.store.verify()
        assert report.ok, report.damaged
        assert report.records > 0


# -- 8 ------------------------------------------------------------------------------


def test_multiple_resumption_points(checkpointer: Checkpointer) -> None:
    names = ("a", "b", "c", "d", "e", "f")
    wf = linear(names)
    uninterrupted = wf.compile(checkpointer=checkpointer).invoke({"x": 8}, thread_id="ref")
    app = wf.compile(checkpointer=checkpointer, interrupt_before=["b", "e"], interrupt_after=["c"])

    stops = []
    state = app.invoke({"x": 8}, thread_id="t")
    for _ in range(10):
        snap = app.get_state("t")
        assert state == snap.state
        if is_final(snap):
            break
        stops.append((tuple(snap.next_nodes), list(snap.completed_nodes)))
        state = app.resume("t")

    assert stops == [
        (("b",), ["a"]),  # before b
        (("d",), ["a", "b", "c"]),  # after c
        (("e",), ["a", "b", "c", "d"]),  # before e
    ]
    assert state == uninterrupted == expected_linear(names, {"x": 8})
    assert dict.fromkeys(names, 2) == CALLS

    # A loop stops before "count" on every pass.
    looping = loop()
    reference = looping.compile(checkpointer=checkpointer).invoke({"pages": 0}, thread_id="loop-ref")
    app = looping.compile(checkpointer=checkpointer, interrupt_before=["count"])
    pages_at_stops = []
    state = app.invoke({"pages": 0}, thread_id="loop")
    while not is_final(app.get_state("loop")):
        assert tuple(app.get_state("loop").next_nodes) == ("count",)
        pages_at_stops.append(state["pages"])
        state = app.resume("loop")
    assert pages_at_stops == [1, 2, 3]
    assert state == reference
    assert reference["log"] == ["fetch0", "count1", "fetch1", "count2", "fetch2", "count3"]


# -- 9 ------------------------------------------------------------------------------


def test_resumption_with_modification(checkpointer: Checkpointer) -> None:
    names = ("a", "b", "c", "d")
    app = linear(names).compile(checkpointer=checkpointer, interrupt_before=["c"])
    app.invoke({"x": 1}, thread_id="t")
    interrupted = app.get_state("t")
    assert tuple(interrupted.next_nodes) == ("c",)

    updated = app.update_state("t", {"x": 100, "total": 10})

    # Its own checkpoint, child of the interrupt, values merged through the reducers.
    assert isinstance(updated, Snapshot)
    assert source(updated) == "update"
    assert updated.parent_id == interrupted.checkpoint_id
    assert updated.checkpoint_id != interrupted.checkpoint_id
    assert updated.state == {**interrupted.state, "x": 100, "total": 12}
    assert tuple(updated.next_nodes) == ("c",)
    assert app.get_state("t").checkpoint_id == updated.checkpoint_id

    final = app.resume("t")

    # The nodes after the update saw the new values; those before kept what they saw.
    assert final["a"] == saw("a", {"x": 1})
    assert final["c"] == saw("c", {"x": 100, "seen": ["a", "b"]})
    assert final["d"] == saw("d", {"x": 100, "seen": ["a", "b", "c"]})
    assert final["total"] == 14
    history = app.get_history("t")
    assert [source(s) for s in reversed(history)] == ["input", "loop", "loop", "update", "resume", "loop", "loop"]
    assert_linked(history)
    assert any(s.checkpoint_id == updated.checkpoint_id for s in history)

    # Resuming from an older checkpoint (after a, before the update) forks: the later
    # history stays, the fork starts from that checkpoint and ignores the update.
    older = next(s for s in history if list(s.completed_nodes) == ["a"] and source(s) == "loop")
    before_ids = [s.checkpoint_id for s in history]
    app.resume("t", checkpoint_id=older.checkpoint_id)
    forked = _finish(app, "t")

    assert forked == expected_linear(names, {"x": 1})
    after = app.get_history("t")
    after_ids = [s.checkpoint_id for s in after]
    assert set(before_ids) <= set(after_ids)
    assert [cid for cid in after_ids if cid in before_ids] == before_ids  # still newest first
    for snap in history:  # each old checkpoint reads back unchanged
        assert app.checkpointer.get("t", snap.checkpoint_id).state == snap.state
    new = [s for s in after if s.checkpoint_id not in before_ids]  # newest first
    first = new[-1]
    assert source(first) == "fork"
    assert first.parent_id == older.checkpoint_id
    assert first.state == older.state
    assert app.get_state("t").checkpoint_id == new[0].checkpoint_id
    assert app.get_state("t").state == forked
    assert CALLS == {"a": 1, "b": 2, "c": 2, "d": 2}
