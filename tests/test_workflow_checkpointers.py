"""The checkpointer contract (both checkpointers), graph validation, merge errors, bad state, damage, deltas."""

from __future__ import annotations

import logging
import operator
import random
from typing import TYPE_CHECKING, Any

import pykka
import pytest
from _segfile import dir_bytes, frames, segment_files
from _workflows import (
    CALLS,
    FAILING,
    REDUCERS,
    SPANS,
    assert_linked,
    diamond,
    expected_linear,
    is_final,
    linear,
    reset,
    saw,
    source,
    step,
)

from pyactors import (
    END,
    FileCheckpointer,
    Kind,
    MemoryCheckpointer,
    MsgpackSerializer,
    SerializationError,
    Snapshot,
    Workflow,
    _core,
)
from pyactors.errors import (
    CheckpointCorruptError,
    CheckpointNotFoundError,
    NodeFailedError,
    WorkflowError,
)
from pyactors.workflow import unfinished
from pyactors.workflow._checkpoint import _split_appends

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    Checkpointer = FileCheckpointer | MemoryCheckpointer

pytestmark = pytest.mark.usefixtures("_workflow_reset")

NAMES = ("a", "b", "c", "d", "e")


def _ids(snaps: list[Snapshot]) -> list[str]:
    return [s.checkpoint_id for s in snaps]


# -- the contract, on both checkpointers -------------------------------------------------


def test_list_is_newest_first_and_get_finds_each_checkpoint_by_id(checkpointer: Checkpointer) -> None:
    app = linear(NAMES).compile(checkpointer=checkpointer)
    final = app.invoke({"x": 1}, thread_id="t")

    listed = checkpointer.list("t")
    assert len(listed) == 1 + len(NAMES)
    assert [s.step for s in listed] == list(range(len(NAMES), -1, -1))
    assert_linked(listed)
    assert _ids(listed) == _ids(app.get_history("t"))
    assert listed[0].checkpoint_id == app.get_state("t").checkpoint_id
    assert listed[0].state == final
    assert source(listed[-1]) == "input"
    assert listed[-1].state == {"x": 1}
    assert all(s.thread_id == "t" for s in listed)
    for snap in listed:
        got = checkpointer.get("t", snap.checkpoint_id)
        assert isinstance(got, Snapshot)
        assert got.checkpoint_id == snap.checkpoint_id
        assert got.parent_id == snap.parent_id
        assert got.state == snap.state
        assert got.completed_nodes == snap.completed_nodes
        assert got.next_nodes == snap.next_nodes
    # A snapshot's state is a copy: changing it changes nothing stored.
    listed[0].state["x"] = "changed"
    assert checkpointer.get("t", listed[0].checkpoint_id).state == final


def test_unknown_thread_or_checkpoint_raises_checkpoint_not_found(checkpointer: Checkpointer) -> None:
    app = linear(NAMES).compile(checkpointer=checkpointer)
    app.invoke({"x": 1}, thread_id="t")
    known = app.get_state("t").checkpoint_id

    for call in (
        lambda: app.get_state("nobody"),
        lambda: app.get_history("nobody"),
        lambda: app.resume("nobody"),
        lambda: app.resume("t", checkpoint_id="no-such-checkpoint"),
        lambda: checkpointer.get("nobody", known),
        lambda: checkpointer.get("t", "no-such-checkpoint"),
        lambda: checkpointer.list("nobody"),
        lambda: checkpointer.prune("nobody", keep_last=1),
        lambda: checkpointer.delete_thread("nobody"),
    ):
        with pytest.raises(CheckpointNotFoundError) as info:
            call()
        assert isinstance(info.value, KeyError)
    assert checkpointer.threads() == ["t"]  # the failed calls created nothing


def test_prune_deletes_all_but_the_newest_and_returns_how_many(checkpointer: Checkpointer) -> None:
    app = linear(NAMES).compile(checkpointer=checkpointer)
    app.invoke({"x": 1}, thread_id="t")
    app.invoke({"x": 2}, thread_id="other")
    history = app.get_history("t")
    assert len(history) == 6

    assert checkpointer.prune("t", keep_last=2) == 4

    kept = checkpointer.list("t")
    assert _ids(kept) == _ids(history[:2])
    # The kept checkpoints still read back whole, though their ancestors are gone.
    assert [s.state for s in kept] == [s.state for s in history[:2]]
    assert [s.completed_nodes for s in kept] == [s.completed_nodes for s in history[:2]]
    for gone in history[2:]:
        with pytest.raises(CheckpointNotFoundError):
            checkpointer.get("t", gone.checkpoint_id)
    assert checkpointer.prune("t", keep_last=2) == 0
    assert checkpointer.prune("t", keep_last=5) == 0
    assert checkpointer.prune("t", keep_last=1) == 1
    assert _ids(checkpointer.list("t")) == _ids(history[:1])
    assert len(checkpointer.list("other")) == 6  # other threads untouched


def test_delete_thread_returns_how_many_checkpoints_it_deleted(checkpointer: Checkpointer) -> None:
    app = linear(NAMES).compile(checkpointer=checkpointer)
    app.invoke({"x": 1}, thread_id="t")
    app.invoke({"x": 2}, thread_id="other")

    assert checkpointer.delete_thread("t") == 6

    assert checkpointer.threads() == ["other"]
    with pytest.raises(CheckpointNotFoundError):
        app.get_state("t")
    assert len(checkpointer.list("other")) == 6
    # The id is free again: a new run starts from scratch.
    assert app.invoke({"x": 3}, thread_id="t") == expected_linear(NAMES, {"x": 3})
    assert len(checkpointer.list("t")) == 6


def test_threads_lists_every_thread_with_checkpoints(checkpointer: Checkpointer) -> None:
    assert checkpointer.threads() == []
    app = linear(NAMES).compile(checkpointer=checkpointer, interrupt_before=["c"])
    for t in ("t3", "t1", "t2"):
        app.invoke({"x": 1}, thread_id=t)
    assert sorted(checkpointer.threads()) == ["t1", "t2", "t3"]


def test_unfinished_lists_interrupted_and_failed_threads_only(checkpointer: Checkpointer) -> None:
    app = linear(NAMES).compile(checkpointer=checkpointer, interrupt_before=["c"])
    plain = linear(NAMES).compile(checkpointer=checkpointer)
    plain.invoke({"x": 1}, thread_id="finished")
    app.invoke({"x": 1}, thread_id="interrupted")
    FAILING.add("b")
    with pytest.raises(NodeFailedError):
        plain.invoke({"x": 1}, thread_id="failed")

    assert sorted(unfinished(checkpointer)) == ["failed", "interrupted"]

    # A supervisor resumes them all.
    FAILING.clear()
    for t in unfinished(checkpointer):
        plain.resume(t)
    assert unfinished(checkpointer) == []
    for t in ("finished", "interrupted", "failed"):
        assert app.get_state(t).state == expected_linear(NAMES, {"x": 1})


def test_invoking_an_existing_thread_again_runs_on_its_latest_state(checkpointer: Checkpointer) -> None:
    app = linear(("a", "b")).compile(checkpointer=checkpointer)
    app.invoke({"x": 1}, thread_id="t")
    second = app.invoke({"x": 2}, thread_id="t")
    assert second["total"] == 4
    assert second["x"] == 2
    assert second["a"] == saw("a", {"x": 2, "seen": ["a", "b"]})
    assert_linked(app.get_history("t"))


def test_checkpoint_writes_are_logged_at_debug(checkpointer: Checkpointer, caplog: pytest.LogCaptureFixture) -> None:
    app = linear(("a", "b")).compile(checkpointer=checkpointer, interrupt_before=["b"])
    with caplog.at_level(logging.DEBUG, logger="pyactors.workflow"):
        app.invoke({"x": 1}, thread_id="logged-thread")
        app.resume("logged-thread")
    records = [r for r in caplog.records if r.name.startswith("pyactors.workflow")]
    assert records
    text = "\n".join(r.getMessage() for r in records)
    assert "logged-thread" in text
    for cid in _ids(app.get_history("logged-thread")):
        assert cid in text
    assert "bytes" in text
    assert "ms" in text


# -- graph validation ------------------------------------------------------------------


def _noop(state: dict[str, Any]) -> dict[str, Any]:
    return {}


def _edge_to_unknown(wf: Workflow) -> None:
    wf.add_edge("a", "ghost")


def _edge_from_unknown(wf: Workflow) -> None:
    wf.add_edge("phantom", "a")


def _unreachable(wf: Workflow) -> None:
    wf.add_node("island", _noop)


def _node_twice(wf: Workflow) -> None:
    wf.add_node("dup", _noop)
    wf.add_edge("a", "dup")
    wf.add_node("dup", _noop)


def _mapping_to_unknown(wf: Workflow) -> None:
    wf.add_conditional_edges("a", lambda state: "x", {"x": "nowhere"})


@pytest.mark.parametrize(
    ("build", "culprit"),
    [
        (_edge_to_unknown, "ghost"),
        (_edge_from_unknown, "phantom"),
        (_unreachable, "island"),
        (_node_twice, "dup"),
        (_mapping_to_unknown, "nowhere"),
    ],
    ids=["edge-to-unknown", "edge-from-unknown", "unreachable", "added-twice", "mapping-to-unknown"],
)
def test_invalid_graph_raises_workflow_error_naming_the_culprit(
    build: Callable[[Workflow], None], culprit: str
) -> None:
    wf = Workflow("bad")
    wf.add_node("a", _noop)
    wf.set_entry_point("a")
    wf.set_finish_point("a")
    with pytest.raises(WorkflowError, match=culprit):
        build(wf)
        wf.compile()


def test_missing_entry_point_raises_workflow_error() -> None:
    wf = Workflow("no-entry")
    wf.add_node("a", _noop)
    wf.set_finish_point("a")
    with pytest.raises(WorkflowError, match="entry"):
        wf.compile()


def test_a_valid_graph_compiles_with_a_memory_checkpointer_by_default() -> None:
    app = linear(("a", "b")).compile()
    assert isinstance(app.checkpointer, MemoryCheckpointer)
    assert app.invoke({"x": 1}, thread_id="t") == expected_linear(("a", "b"), {"x": 1})


# -- merging -----------------------------------------------------------------------------


def test_two_nodes_writing_one_key_without_reducer_raise_workflow_error_naming_both(
    checkpointer: Checkpointer,
) -> None:
    wf = Workflow("clash")
    wf.add_node("start", _noop)
    wf.add_node("left_writer", lambda state: {"shared_key": 1})
    wf.add_node("right_writer", lambda state: {"shared_key": 2})
    wf.add_edge("start", "left_writer")
    wf.add_edge("start", "right_writer")
    wf.set_entry_point("start")
    wf.set_finish_point("left_writer")
    wf.set_finish_point("right_writer")
    app = wf.compile(checkpointer=checkpointer)

    with pytest.raises(WorkflowError) as info:
        app.invoke({}, thread_id="t")

    assert "left_writer" in str(info.value)
    assert "right_writer" in str(info.value)

    # With a reducer for the key, the same graph merges both writes.
    wf2 = Workflow("merged", reducers={"shared_key": lambda old, new: (old or 0) + new})
    wf2.add_node("start", _noop)
    wf2.add_node("left_writer", lambda state: {"shared_key": 1})
    wf2.add_node("right_writer", lambda state: {"shared_key": 2})
    wf2.add_edge("start", "left_writer")
    wf2.add_edge("start", "right_writer")
    wf2.set_entry_point("start")
    wf2.set_finish_point("left_writer")
    wf2.set_finish_point("right_writer")
    assert wf2.compile(checkpointer=checkpointer).invoke({"shared_key": 0}, thread_id="t2") == {"shared_key": 3}


def test_fan_in_of_unequal_branches_runs_the_join_once_after_both(checkpointer: Checkpointer) -> None:
    # a -> (b -> b2, c) -> d -> e, with the short branch c the slowest node.
    wf = Workflow("diamond", reducers=REDUCERS)
    for n, nap in (("a", 0.0), ("b", 0.01), ("c", 0.15), ("b2", 0.01), ("d", 0.0), ("e", 0.0)):
        wf.add_node(n, step(n, sleep=nap))
    for a, b in (("a", "b"), ("a", "c"), ("b", "b2"), ("b2", "d"), ("c", "d"), ("d", "e")):
        wf.add_edge(a, b)
    wf.set_entry_point("a")
    wf.set_finish_point("e")
    final = wf.compile(checkpointer=checkpointer).invoke({"x": 1}, thread_id="t")

    assert CALLS == {"a": 1, "b": 1, "c": 1, "b2": 1, "d": 1, "e": 1}
    spans = {node: (start, end) for node, _, start, end in SPANS}
    assert spans["d"][0] >= spans["b2"][1]
    assert spans["d"][0] >= spans["c"][1]
    assert final["d"] == saw("d", {"x": 1, "seen": ["a", "b", "b2", "c"]})
    assert final == diamond().compile(checkpointer=MemoryCheckpointer()).invoke({"x": 1}, thread_id="t")
    steps = [set(s.completed_nodes) for s in reversed(checkpointer.list("t"))]
    assert steps == [set(), {"a"}, {"a", "b", "c"}, {"a", "b", "c", "b2"}, {*"abcd", "b2"}, {*"abcde", "b2"}]


# -- state the serializer refuses ------------------------------------------------------

REFUSE = {"on": True}


def _maybe_object(state: dict[str, Any]) -> dict[str, Any]:
    """Writes an object msgpack refuses while REFUSE["on"], plain data otherwise."""
    return {"obj": object() if REFUSE["on"] else "plain", "seen": ["b"]}


def test_state_the_serializer_refuses_raises_and_keeps_the_previous_checkpoint(checkpoint_path: Path) -> None:
    wf = Workflow("refused", reducers={"seen": lambda old, new: [*(old or []), *new]})
    wf.add_node("a", lambda state: {"seen": ["a"]})
    wf.add_node("b", _maybe_object)
    wf.add_node("c", lambda state: {"seen": ["c"]})
    wf.add_edge("a", "b")
    wf.add_edge("b", "c")
    wf.set_entry_point("a")
    wf.set_finish_point("c")
    REFUSE["on"] = True
    try:
        with FileCheckpointer(checkpoint_path, serializer=MsgpackSerializer()) as cp:
            app = wf.compile(checkpointer=cp)
            with pytest.raises((SerializationError, NodeFailedError)) as info:
                app.invoke({"x": 1}, thread_id="t")
            if isinstance(info.value, NodeFailedError):
                assert info.value.snapshot.error.node == "b"
                assert "SerializationError" in info.value.snapshot.error.exc_type
            pykka.ActorRegistry.stop_all()

        # Reopened: every checkpoint reads back; the newest good one holds the state after a.
        with FileCheckpointer(checkpoint_path, serializer=MsgpackSerializer()) as cp:
            app = wf.compile(checkpointer=cp)
            history = app.get_history("t")
            good = [s for s in history if s.error is None]
            assert good[0].state == {"x": 1, "seen": ["a"]}
            assert list(good[0].completed_nodes) == ["a"]
            assert app.get_state("t").state == {"x": 1, "seen": ["a"]}
            assert "obj" not in app.get_state("t").pending_writes.get("b", {})
            assert cp.store.verify().ok

            # Fixed: the thread resumes from there.
            REFUSE["on"] = False
            assert app.resume("t") == {"x": 1, "seen": ["a", "b", "c"], "obj": "plain"}
            pykka.ActorRegistry.stop_all()
    finally:
        REFUSE["on"] = True


# -- damage ----------------------------------------------------------------------------


def _interrupted(checkpoint_path: Path) -> tuple[list[str], dict[str, Any]]:
    """A thread "t" of `linear(NAMES)` stopped before d; return its checkpoint ids (newest first) and final state."""
    reference = linear(NAMES).compile().invoke({"x": 1}, thread_id="ref")
    with FileCheckpointer(checkpoint_path) as cp:
        app = linear(NAMES).compile(checkpointer=cp, interrupt_before=["d"])
        app.invoke({"x": 1}, thread_id="t")
        ids = _ids(app.get_history("t"))
        pykka.ActorRegistry.stop_all()
    return ids, reference


def test_damaged_last_checkpoint_leaves_the_previous_one_resumable(checkpoint_path: Path) -> None:
    ids, reference = _interrupted(checkpoint_path)
    assert len(ids) == 4

    # Flip a byte in the payload of the last checkpoint record (the tail of the active segment).
    seg = segment_files(checkpoint_path)[-1]
    data = bytearray(seg.read_bytes())
    all_frames = frames(bytes(data))
    last = [f for f in all_frames if f.stream == "wf/t" and f.kind == Kind.CHECKPOINT][-1]
    assert last == all_frames[-1]
    at = last.payload_pos + len(last.payload) // 2
    data[at] ^= 0xFF
    seg.write_bytes(bytes(data))

    with FileCheckpointer(checkpoint_path) as cp:
        app = linear(NAMES).compile(checkpointer=cp)
        # Either the damaged checkpoint is reported, or the store dropped it as a torn tail
        # and the previous one is the latest; never a wrong state.
        try:
            latest = app.get_state("t")
        except CheckpointCorruptError as exc:
            assert "t" in str(exc)
        else:
            assert latest.checkpoint_id == ids[1]
            # "c" ran alone in its superstep, so its writes lived only in the lost
            # checkpoint: it does not count as completed and runs again.
            assert list(latest.completed_nodes) == ["a", "b"]
            assert latest.pending_writes == {}
            assert latest.next_nodes == ("c",)
        with pytest.raises((CheckpointCorruptError, CheckpointNotFoundError)):
            cp.get("t", ids[0])
        previous = cp.get("t", ids[1])
        assert previous.state == expected_linear(("a", "b"), {"x": 1})

        assert app.resume("t", checkpoint_id=ids[1]) == reference
        assert is_final(app.get_state("t"))
        assert app.get_state("t").state == reference
        assert cp.store.verify().ok
        pykka.ActorRegistry.stop_all()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda cp: b"\x80\x05garbage, not a pickle", id="undecodable"),
        pytest.param(lambda cp: cp.serializer.dumps({"v": 1, "id": "bogus"}), id="fields-missing"),
        pytest.param(lambda cp: cp.serializer.dumps(["not", "a", "checkpoint"]), id="not-a-dict"),
    ],
)
def test_structurally_invalid_checkpoint_raises_corrupt_error_and_older_ones_resume(
    checkpoint_path: Path, payload: Callable[[FileCheckpointer], bytes]
) -> None:
    ids, reference = _interrupted(checkpoint_path)

    # A record that passes the store's CRC but is no checkpoint.
    with FileCheckpointer(checkpoint_path) as cp:
        cp.store.append("wf/t", payload(cp), Kind.CHECKPOINT)

    with FileCheckpointer(checkpoint_path) as cp:
        app = linear(NAMES).compile(checkpointer=cp)
        with pytest.raises(CheckpointCorruptError) as info:
            app.get_state("t")
        assert "'t'" in str(info.value)
        assert cp.get("t", ids[0]).state == expected_linear(("a", "b", "c"), {"x": 1})

        assert app.resume("t", checkpoint_id=ids[0]) == reference
        # The resumed run's checkpoints are readable: the thread is no longer stuck behind the damage.
        assert app.get_state("t").state == reference, "the thread's checkpoints after the damage cannot be read"
        assert is_final(app.get_state("t"))
        pykka.ActorRegistry.stop_all()


def _writes_records(checkpoint_path: Path) -> list[Any]:
    return [f for seg in segment_files(checkpoint_path) for f in frames(seg.read_bytes()) if f.kind == Kind.WRITES]


def test_a_node_alone_in_its_superstep_is_recorded_by_the_checkpoint_only(checkpoint_path: Path) -> None:
    with FileCheckpointer(checkpoint_path) as cp:
        assert linear(NAMES).compile(checkpointer=cp).invoke({"x": 1}, thread_id="t")["seen"] == sorted(NAMES)
        pykka.ActorRegistry.stop_all()
    assert _writes_records(checkpoint_path) == []


def test_a_lost_superstep_checkpoint_reruns_only_the_node_that_finished_last(checkpoint_path: Path) -> None:
    wf = diamond()
    reference = wf.compile().invoke({"x": 3}, thread_id="ref")
    with FileCheckpointer(checkpoint_path) as cp:
        wf.compile(checkpointer=cp, interrupt_before=["b2"]).invoke({"x": 3}, thread_id="t")
        ids = _ids(cp.list("t"))
        pykka.ActorRegistry.stop_all()
    # The superstep {b, c}: the first of them to finish left a writes record, the last did not.
    (record,) = _writes_records(checkpoint_path)

    seg = segment_files(checkpoint_path)[-1]
    data = bytearray(seg.read_bytes())
    last = frames(bytes(data))[-1]
    assert last.kind == Kind.CHECKPOINT
    data[last.payload_pos + len(last.payload) // 2] ^= 0xFF  # the superstep's checkpoint is lost
    seg.write_bytes(bytes(data))
    reset()

    with FileCheckpointer(checkpoint_path) as cp:
        app = wf.compile(checkpointer=cp)
        try:
            latest = app.get_state("t")
        except CheckpointCorruptError:
            latest = cp.get("t", ids[1])
            assert app.resume("t", checkpoint_id=ids[1]) == reference
        else:
            assert latest.checkpoint_id == ids[1]
            (first,) = latest.pending_writes  # recorded, so completed and not run again
            assert list(latest.completed_nodes) == ["a", first]
            assert app.resume("t") == reference
            assert CALLS[first] == 0
            assert CALLS[({"b", "c"} - {first}).pop()] == 1
        assert CALLS["a"] == 0
        assert record.stream == "wf/t"
        pykka.ActorRegistry.stop_all()


def test_a_growing_list_is_stored_as_its_appended_items(checkpoint_path: Path) -> None:
    item = random.Random(7).randbytes(64 * 1024)  # incompressible: zstd cannot hide a copy
    n = 6
    wf = Workflow("grow", reducers={"items": operator.add})

    def grow(i: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda state: {"items": [item[: 60 * 1024] + bytes([i])]}

    for i in range(n):
        wf.add_node(f"n{i}", grow(i))
        if i:
            wf.add_edge(f"n{i - 1}", f"n{i}")
    wf.set_entry_point("n0")
    wf.set_finish_point(f"n{n - 1}")
    with FileCheckpointer(checkpoint_path) as cp:
        out = wf.compile(checkpointer=cp).invoke({"items": []}, thread_id="t")
        assert out["items"] == [item[: 60 * 1024] + bytes([i]) for i in range(n)]
        # Each superstep stored its new item only: n items, not 1 + 2 + ... + n.
        assert cp.store.stats()["bytes"] < 61 * 1024 * (n + 1)
        history = cp.list("t")
        pykka.ActorRegistry.stop_all()
    assert [len(s.state["items"]) for s in history] == list(range(n, -1, -1))
    with FileCheckpointer(checkpoint_path) as cp:  # read back from the files
        assert [s.state for s in cp.list("t")] == [s.state for s in history]


@pytest.mark.parametrize(
    ("old", "new", "appended"),
    [
        pytest.param([1, 2], [1, 2, 3], {"k": [3]}, id="list"),
        pytest.param("ab", "abc", {"k": "c"}, id="str"),
        pytest.param(b"ab", b"abc", {"k": b"c"}, id="bytes"),
        pytest.param([1], [True, 2], {}, id="list-equal-but-not-the-same-items"),
        pytest.param("ab", "xbc", {}, id="str-other-prefix"),
        pytest.param("ab", "ab", {}, id="unchanged"),
        pytest.param("ab", b"abc", {}, id="other-type"),
        pytest.param((1,), (1, 2), {}, id="tuple"),
        pytest.param([], [1], {}, id="from-empty"),
    ],
)
def test_only_a_value_that_extends_its_parents_is_stored_as_appended(old: Any, new: Any, appended: Any) -> None:
    whole, tail = _split_appends({"k": old}, {"k": new})
    assert tail == appended
    assert whole == ({} if appended else {"k": new})


def test_a_v1_checkpoint_without_appends_is_still_read(checkpoint_path: Path) -> None:
    with FileCheckpointer(checkpoint_path) as cp:
        rec = {
            "v": 1,
            "id": "old-1",
            "parent": None,
            "step": 0,
            "full": True,
            "values": {"x": 1},
            "completed": [],
            "nodes": {},
            "next": ["a"],
            "pending": {},
            "error": None,
            "meta": {"source": "input"},
        }
        cp.store.append("wf/t", cp.serializer.dumps(rec), Kind.CHECKPOINT)
        assert cp.get("t", "old-1").state == {"x": 1}


def test_an_append_its_parent_cannot_take_is_reported_as_corrupt(checkpoint_path: Path) -> None:
    base = {"step": 0, "completed": [], "nodes": {}, "next": [], "pending": {}, "error": None, "meta": {}}
    with FileCheckpointer(checkpoint_path) as cp:
        full = {**base, "v": 2, "id": "c1", "parent": None, "full": True, "values": {"x": 1}, "appended": {}}
        delta = {**base, "v": 2, "id": "c2", "parent": "c1", "full": False, "values": {}, "appended": {"x": [2]}}
        for rec in (full, delta):
            cp.store.append("wf/t", cp.serializer.dumps(rec), Kind.CHECKPOINT)
        with pytest.raises(CheckpointCorruptError, match="appends to 'x'") as info:
            cp.get("t", "c2")
        assert info.value.checkpoint_id == "c2"


# -- deltas --------------------------------------------------------------------------------

BIG = 5 * 1024 * 1024


def test_a_one_key_change_to_a_large_state_writes_far_less_than_the_state(checkpoint_path: Path) -> None:
    wf = Workflow("big")
    wf.add_node("a", lambda state: {"n": state["n"] + 1})
    wf.add_node("b", lambda state: {"n": state["n"] + 1})
    wf.add_edge("a", "b")
    wf.set_entry_point("a")
    wf.set_finish_point("b")
    blob = random.Random(5).randbytes(BIG)  # incompressible: zstd cannot hide a copy
    with FileCheckpointer(checkpoint_path) as cp:
        app = wf.compile(checkpointer=cp, interrupt_before=["b"])
        app.invoke({"blob": blob, "n": 0}, thread_id="t")
        before = cp.store.stats()["bytes"]
        assert BIG < before < BIG * 1.1  # the input and a's checkpoint: the blob stored once

        final = app.resume("t")  # one superstep: b changes n

        written = cp.store.stats()["bytes"] - before
        assert final["n"] == 2
        assert final["blob"] == blob
        assert 0 < written < BIG // 100, f"{written} bytes written for a one-key change"
        assert app.get_state("t").state["blob"] == blob
        pykka.ActorRegistry.stop_all()


def test_end_is_the_end_of_a_branch() -> None:
    wf = Workflow("ends", reducers=REDUCERS)
    wf.add_node("a", step("a"))
    wf.add_node("b", step("b"))
    wf.add_conditional_edges("a", lambda state: "stop" if state["x"] > 1 else "go", {"go": "b", "stop": END})
    wf.set_entry_point("a")
    wf.set_finish_point("b")
    app = wf.compile()
    assert app.invoke({"x": 1}, thread_id="go") == expected_linear(("a", "b"), {"x": 1})
    assert app.invoke({"x": 2}, thread_id="stop") == expected_linear(("a",), {"x": 2})


# --- whole-state checkpoints are written raw ------------------------------------------

_BLOB = b"the whole input state of the run, very compressible; " * 2500


def _noting(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A node that writes a compressible note of about 1 KB (its delta is worth compressing)."""

    def body(state: dict[str, Any]) -> dict[str, Any]:
        return {name: f"{name} saw {len(state['blob'])} bytes. " * 40}

    return body


def _checkpoint_frames(checkpoint_path: Path, kind: int = Kind.CHECKPOINT) -> list[Any]:
    return [
        f
        for seg in segment_files(checkpoint_path)
        for f in frames(seg.read_bytes())
        if f.stream == "wf/t" and f.kind == kind
    ]


def test_file_checkpointer_writes_whole_state_checkpoints_raw_and_compact_compresses_them(
    checkpoint_path: Path, file_checkpointer: FileCheckpointer
) -> None:
    wf = Workflow("notes")
    for n in ("a", "b", "c"):
        wf.add_node(n, _noting(n))
    wf.add_edge("a", "b")
    wf.add_edge("b", "c")
    wf.set_entry_point("a")
    wf.set_finish_point("c")
    app = wf.compile(checkpointer=file_checkpointer)
    final = app.invoke({"blob": _BLOB}, thread_id="t")
    assert final["blob"] == _BLOB

    zstd = _core.FLAG_ZSTD
    written = _checkpoint_frames(checkpoint_path)
    (base,) = _checkpoint_frames(checkpoint_path, Kind.SNAPSHOT)
    assert len(written) == 4  # the input, then one delta per superstep
    assert base.flags & zstd == 0, "the input checkpoint's base (the whole state) is stored raw"
    assert _BLOB in base.payload
    assert all(f.flags & zstd for f in written[1:]), "delta checkpoints are still compressed"
    assert all(_BLOB not in f.payload for f in written)
    latest = app.get_state("t")
    before = dir_bytes(checkpoint_path)

    file_checkpointer.store.compact(min_dead_ratio=0.0)

    compacted = _checkpoint_frames(checkpoint_path)
    (compacted_base,) = _checkpoint_frames(checkpoint_path, Kind.SNAPSHOT)
    assert [f.raw_len for f in compacted] == [f.raw_len for f in written]
    assert compacted_base.flags & zstd, "compaction compressed the raw base"
    assert dir_bytes(checkpoint_path) < before // 4
    assert app.get_state("t") == latest
    assert file_checkpointer.store.verify().ok

    # prune rewrites the kept checkpoint with its whole state: raw again.
    assert file_checkpointer.prune("t", keep_last=1) == 3
    (rewritten,) = _checkpoint_frames(checkpoint_path, Kind.SNAPSHOT)[-1:]
    assert rewritten.flags & zstd == 0
    assert _BLOB in rewritten.payload
    assert app.get_state("t").state == latest.state
    # The thread runs on: a new invoke starts from its latest (whole, raw) state.
    assert app.invoke({"blob": _BLOB + b"!"}, thread_id="t")["blob"] == _BLOB + b"!"
