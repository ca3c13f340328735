"""Workflow recovery that does not grow with history (issue 15): bounded reads, paged history, old stores."""

from __future__ import annotations

import importlib.util
import itertools
import json
import operator
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pykka
import pytest
from _segfile import frames, segment_files

from pyactors import (
    END,
    CheckpointCorruptError,
    CheckpointNotFoundError,
    FileCheckpointer,
    InvalidArgumentError,
    Kind,
    MemoryCheckpointer,
    ResumeConflictError,
    SegmentStore,
    Workflow,
)
from pyactors.workflow import unfinished
from pyactors.workflow._checkpoint import FULL_EVERY

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pyactors import Checkpointer, Record, Snapshot

PAD = "p" * 2000
BATCH_MORE = 0x04
"""The record flag FLAG_BATCH_MORE (docs/FORMAT.md): more records of the same batch follow."""
RUNS: Counter[int] = Counter()
"""Calls of the loop's node, by the `n` it saw."""


def loop(steps: int) -> Workflow:
    """One node, run `steps` times: ``n`` counts, ``log`` grows by one item a step, ``pad`` never changes."""
    wf = Workflow("loop", reducers={"log": operator.add})

    def tick(state: dict[str, Any]) -> dict[str, Any]:
        RUNS[state["n"]] += 1
        return {"n": state["n"] + 1, "log": [state["n"]]}

    wf.add_node("tick", tick)
    wf.add_conditional_edges("tick", lambda s: "again" if s["n"] < steps else "done", {"again": "tick", "done": END})
    wf.set_entry_point("tick")
    return wf


def expected(n: int) -> dict[str, Any]:
    return {"n": n, "log": list(range(n)), "pad": PAD}


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    RUNS.clear()
    yield
    pykka.ActorRegistry.stop_all()


class CountingStore:
    """A store that counts what its readers ask for: calls, records and payload bytes."""

    def __init__(self, store: SegmentStore) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()
        self.records = 0
        self.bytes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _saw(self, record: Record | None) -> None:
        if record is not None:
            self.records += 1
            self.bytes += len(record.payload)

    def latest(self, stream: str, kind: int = Kind.SNAPSHOT) -> Record | None:
        self.calls["latest"] += 1
        record = self._store.latest(stream, kind)
        self._saw(record)
        return record

    def read(self, stream: str, after_seq: int = 0, kinds: Any = None, limit: int | None = None) -> Iterator[Record]:
        self.calls["read"] += 1
        for record in self._store.read(stream, after_seq, kinds, limit):
            self._saw(record)
            yield record

    def take(self) -> tuple[dict[str, int], int, int]:
        out = (dict(self.calls), self.records, self.bytes)
        self.calls.clear()
        self.records = self.bytes = 0
        return out


def _thread_of(path: Path, steps: int) -> None:
    with FileCheckpointer(path) as cp:
        assert loop(steps).compile(checkpointer=cp).invoke({"n": 0, "log": [], "pad": PAD}, thread_id="t") == expected(
            steps
        )
        pykka.ActorRegistry.stop_all()


def _reads(path: Path, call: Any) -> tuple[dict[str, int], int, int]:
    """What `call(checkpointer)` reads of the store at `path`, opened afresh (nothing cached)."""
    with SegmentStore(path) as store:
        counting = CountingStore(store)
        cp = FileCheckpointer(store=cast("SegmentStore", counting))
        call(cp)
        return counting.take()


# -- bounded reads -------------------------------------------------------------------------


def test_get_state_resume_and_a_history_page_read_as_much_at_2000_checkpoints_as_at_10(tmp_path: Path) -> None:
    short, long = tmp_path / "short", tmp_path / "long"
    _thread_of(short, 10)
    _thread_of(long, 2000)

    def get_state(cp: Checkpointer) -> None:
        assert loop(1).compile(checkpointer=cp).get_state("t").state == expected(10 if cp_path[0] == short else 2000)

    cp_path = [short]
    at_10 = _reads(short, get_state)
    cp_path[0] = long
    at_2000 = _reads(long, get_state)
    # The newest checkpoint, its base, the node writes after it (none), and one read of its deltas.
    assert at_10[0] == at_2000[0] == {"latest": 3, "read": 1}, (at_10, at_2000)
    assert at_2000[1] <= FULL_EVERY + 1  # records: the base, then at most FULL_EVERY - 1 deltas and the newest
    assert at_2000[2] < 3 * len(PAD) + 2000 * 8 * 4  # about the state once (its base) plus small deltas

    def head(cp: Checkpointer) -> None:
        assert cp.load_head("t") is not None

    assert _reads(short, head)[0] == _reads(long, head)[0]

    def page(cp: Checkpointer) -> None:
        assert len(cp.list("t", limit=10)) == 10

    page_10, page_2000 = _reads(short, page), _reads(long, page)
    assert sum(page_2000[0].values()) <= sum(page_10[0].values()) + 3, (page_10, page_2000)
    assert page_2000[1] <= 2 * FULL_EVERY + 4


def test_unfinished_reads_one_record_per_thread(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with FileCheckpointer(path) as cp:
        for i in range(5):
            app = loop(40).compile(checkpointer=cp, interrupt_before=["tick"] if i % 2 else [])
            app.invoke({"n": 0, "log": [], "pad": PAD}, thread_id=f"t{i}")
        pykka.ActorRegistry.stop_all()
    reads = _reads(path, lambda cp: assert_unfinished(cp, ["t1", "t3"]))
    assert reads[:2] == ({"latest": 5}, 5)


def assert_unfinished(cp: Checkpointer, threads: list[str]) -> None:
    assert unfinished(cp) == threads


# -- history -------------------------------------------------------------------------------

STEPS = FULL_EVERY + 20
"""A thread long enough to hold two bases."""


def _pages(cp: Checkpointer, size: int) -> list[Snapshot]:
    out: list[Snapshot] = []
    while True:
        page = cp.list("t", limit=size, before=out[-1].checkpoint_id if out else None)
        assert len(page) <= size
        out += page
        if len(page) < size:
            return out


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_history_pages_follow_every_checkpoint_newest_first_forks_included(tmp_path: Path, kind: str) -> None:
    cp = FileCheckpointer(tmp_path / "s") if kind == "file" else MemoryCheckpointer()
    with cp:
        app = loop(STEPS).compile(checkpointer=cp)
        app.invoke({"n": 0, "log": [], "pad": PAD}, thread_id="t")
        first = app.get_history("t")
        assert [s.step for s in first] == list(range(STEPS, -1, -1))
        fork_at = next(s for s in first if s.step == 5)
        assert app.resume("t", checkpoint_id=fork_at.checkpoint_id) == expected(STEPS)
        assert RUNS[4] == 1  # the fork ran from n=5 only
        assert RUNS[5] == 2

        every = app.get_history("t")
        fork = every[: len(every) - len(first)]
        assert every[len(fork) :] == first  # the older line, unchanged, after the fork
        assert [s.step for s in fork] == list(range(STEPS, 4, -1))  # the fork's own checkpoint is at step 5
        assert fork[-1].parent_id == fork_at.checkpoint_id
        assert fork[-1].metadata["source"] == "fork"
        assert all(a.parent_id == b.checkpoint_id for a, b in itertools.pairwise(fork))
        assert [s.state for s in every] == [expected(s.step) for s in every]

        for size in (1, 7, 10, len(every)):
            assert _pages(cp, size) == every, size
        assert app.get_history("t", limit=3) == every[:3]
        assert app.get_history("t", limit=0) == []
        assert app.get_history("t", before=every[-2].checkpoint_id) == every[-1:]
        assert app.get_history("t", before=every[-1].checkpoint_id) == []
        with pytest.raises(InvalidArgumentError):
            app.get_history("t", limit=-1)
        with pytest.raises(CheckpointNotFoundError):
            app.get_history("t", before="no-such-checkpoint")
        with pytest.raises(CheckpointNotFoundError):
            app.get_history("nobody")


def test_a_snapshot_shares_nothing_with_the_library_or_with_another_snapshot() -> None:
    cp = MemoryCheckpointer()
    app = loop(3).compile(checkpointer=cp)
    app.invoke({"n": 0, "log": [], "pad": PAD}, thread_id="t")
    one, two = app.get_state("t"), app.get_state("t")
    one.state["log"].append("mine")
    one.metadata["mine"] = True
    assert two.state == app.get_state("t").state == expected(3)
    assert "mine" not in app.get_state("t").metadata
    assert app.resume("t") == expected(3)


# -- prune and delete --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "memory"])
@pytest.mark.parametrize("keep", [1, 5, FULL_EVERY + 3])
def test_prune_and_delete_count_exactly_and_keep_every_kept_checkpoint_whole(
    tmp_path: Path, kind: str, keep: int
) -> None:
    cp = FileCheckpointer(tmp_path / "s") if kind == "file" else MemoryCheckpointer()
    with cp:
        paused = loop(2 * STEPS).compile(checkpointer=cp, interrupt_before=["tick"])
        paused.invoke({"n": 0, "log": [], "pad": PAD}, thread_id="t")  # one checkpoint: interrupted before tick
        app = loop(2 * STEPS).compile(checkpointer=cp)
        for _ in range(2 * STEPS - 1):
            app.update_state("t", {"log": []})  # one checkpoint each, the state unchanged
        app.resume("t")  # 2 * STEPS more: the resume, then one per superstep
        before = app.get_history("t")
        total = len(before)
        assert total == 4 * STEPS + 1

        assert cp.prune("t", keep_last=keep) == total - keep
        assert app.get_history("t") == before[:keep]
        assert cp.prune("t", keep_last=keep) == 0
        if isinstance(cp, FileCheckpointer):
            cp.store.compact(min_dead_ratio=0.0)
            assert cp.get("t", before[keep - 1].checkpoint_id) == before[keep - 1]
        # The thread runs on from its kept state.
        final = app.invoke({"n": 2 * STEPS - 1}, thread_id="t")
        assert final == {**expected(2 * STEPS), "log": [*range(2 * STEPS), 2 * STEPS - 1]}
        assert cp.delete_thread("t") == keep + 2
        with pytest.raises(CheckpointNotFoundError):
            app.get_state("t")
        with pytest.raises(CheckpointNotFoundError):
            cp.delete_thread("t")
        with pytest.raises(CheckpointNotFoundError):
            cp.prune("t", keep_last=1)


def test_prune_copies_the_kept_checkpoints_in_one_batch_and_waits_for_no_run(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _thread_of(path, STEPS)
    with SegmentStore(path) as store:
        calls: Counter[str] = Counter()
        append, append_many = store.append, store.append_many

        def one(*args: Any, **kwargs: Any) -> int:
            calls["append"] += 1
            return append(*args, **kwargs)

        def many(*args: Any, **kwargs: Any) -> list[int]:
            calls["append_many"] += 1
            return append_many(*args, **kwargs)

        store.append, store.append_many = one, many  # type: ignore[method-assign]
        cp = FileCheckpointer(store=store)
        before = cp.list("t", limit=5)
        with cp.claim("t"), pytest.raises(ResumeConflictError):
            cp.prune("t", keep_last=5)
        assert cp.prune("t", keep_last=5) == STEPS + 1 - 5
        assert calls == {"append_many": 1}  # a crash leaves every copy or none: never an old one newest
        assert cp.list("t") == before


# -- damage --------------------------------------------------------------------------------


def _sealed_thread(path: Path) -> list[Snapshot]:
    """A thread of `STEPS` supersteps in small segments, all of its records in sealed ones; its history."""
    with SegmentStore(path, segment_bytes=4096) as store:
        cp = FileCheckpointer(store=store)
        app = loop(STEPS).compile(checkpointer=cp)
        app.invoke({"n": 0, "log": [], "pad": PAD}, thread_id="t")
        pykka.ActorRegistry.stop_all()
        for _ in range(2):
            store.append("filler", os.urandom(5000))  # incompressible, so it rolls: the thread's last segment is sealed
        return app.get_history("t")


def _damage(path: Path, checkpoint_id: str) -> None:
    """Flip a byte in the middle of the checkpoint record of `checkpoint_id` (its id ends with its seq)."""
    seq = int(checkpoint_id.rsplit("-", 1)[1], 16)
    for seg in segment_files(path):
        data = bytearray(seg.read_bytes())
        for f in frames(bytes(data)):
            if f.stream == "wf/t" and f.kind == Kind.CHECKPOINT and f.seq == seq:
                data[f.payload_pos + len(f.payload) // 2] ^= 0xFF
                seg.write_bytes(bytes(data))
                return
    raise AssertionError(checkpoint_id)


def test_a_damaged_newest_checkpoint_is_reported_and_the_older_ones_read_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "s"
    before = _sealed_thread(path)
    _damage(path, before[0].checkpoint_id)
    with SegmentStore(path, segment_bytes=4096) as store:
        cp = FileCheckpointer(store=store)
        app = loop(STEPS).compile(checkpointer=cp)
        with pytest.raises(CheckpointCorruptError) as info:
            app.get_state("t")
        assert info.value.thread_id == "t"
        with pytest.raises(CheckpointCorruptError):
            app.resume("t")
        assert unfinished(cp) == ["t"]
        assert cp.get("t", before[1].checkpoint_id) == before[1]
        assert app.get_history("t") == before[1:]
        assert app.get_history("t", limit=2) == before[1:3]

        assert app.resume("t", checkpoint_id=before[1].checkpoint_id) == expected(STEPS)
        assert app.get_state("t").metadata["source"] == "loop"
        assert [s.step for s in app.get_history("t", limit=3)] == [STEPS, STEPS - 1, STEPS - 1]
        assert unfinished(cp) == []


def test_a_damaged_older_checkpoint_hides_only_the_checkpoints_built_on_it(tmp_path: Path) -> None:
    path = tmp_path / "s"
    before = _sealed_thread(path)
    by_step = {s.step: s for s in before}
    _damage(path, by_step[5].checkpoint_id)
    with SegmentStore(path, segment_bytes=4096) as store:
        cp = FileCheckpointer(store=store)
        app = loop(STEPS).compile(checkpointer=cp)
        assert app.get_state("t") == before[0]  # its base came after the damage
        assert cp.get("t", by_step[4].checkpoint_id) == by_step[4]
        with pytest.raises(CheckpointCorruptError):
            cp.get("t", by_step[5].checkpoint_id)
        with pytest.raises(CheckpointCorruptError):
            cp.get("t", by_step[6].checkpoint_id)  # a delta on top of it
        history = app.get_history("t")
        assert [s.step for s in history] == [*range(STEPS, FULL_EVERY - 1, -1), *range(4, -1, -1)]
        assert history == [s for s in before if s.step in {h.step for h in history}]


# -- stores written before issue 15 --------------------------------------------------------

OLD = Path(__file__).parent / "data" / "wf_v2"


def _old_store(tmp_path: Path) -> tuple[Path, dict[str, list[dict[str, Any]]], Any]:
    """A copy of the store written by the code before issue 15, what it held, and its graph."""
    path = tmp_path / "old"
    shutil.copytree(OLD / "store", path)
    spec = importlib.util.spec_from_file_location("wf_v2_make", OLD / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, json.loads((OLD / "expected.json").read_text()), module.graph


def _plain(snapshots: list[Snapshot]) -> list[dict[str, Any]]:
    return [
        {"id": s.checkpoint_id, "parent": s.parent_id, "step": s.step, "state": s.state, "next": list(s.next_nodes)}
        for s in snapshots
    ]


def test_a_store_written_before_issue_15_opens_reads_resumes_forks_and_prunes(tmp_path: Path) -> None:
    path, old, graph = _old_store(tmp_path)
    with FileCheckpointer(path) as cp:
        assert sorted(old) == cp.threads()
        for thread, history in old.items():
            assert _plain(cp.list(thread)) == history, thread
            assert _plain([cp.latest(thread)]) == history[:1]  # type: ignore[list-item]
            assert _plain(cp.list(thread, limit=2, before=history[1]["id"])) == history[2:4]
            assert all(_plain([cp.get(thread, c["id"])]) == [c] for c in history)
        assert unfinished(cp) == ["failed", "paused"]

        app = graph().compile(checkpointer=cp)
        assert app.resume("paused") == {"n": 2, "stop": 2, "log": [0, 1], "done": True}
        assert app.resume("failed") == {"n": 2, "stop": 2, "log": [0, 1], "done": True}
        assert unfinished(cp) == []
        paused = app.get_history("paused")
        assert _plain(paused[2:]) == old["paused"]  # the resume and the final checkpoint, then the old ones
        assert paused[1].parent_id == old["paused"][0]["id"]

        # A thread goes on from its old latest state; a fork starts from an old checkpoint.
        more = app.invoke({"stop": 5}, thread_id="done")
        assert more == {**old["done"][0]["state"], "n": 5, "stop": 5, "log": [0, 1, 2, 3, 4]}
        step1 = next(c for c in old["long"] if c["step"] == 1)
        assert app.resume("long", checkpoint_id=step1["id"])["log"] == list(range(40))
        assert _plain(app.get_history("long"))[-len(old["long"]) :] == old["long"]
        total = len(app.get_history("long"))
        assert cp.prune("long", keep_last=5) == total - 5
        assert [s.state["n"] for s in app.get_history("long")] == [40, 40, 39, 38, 37]  # last, then tick's
        assert cp.delete_thread("long") == 5

    with FileCheckpointer(path) as cp:  # read back from the files
        assert cp.latest("paused").state["done"] is True  # type: ignore[union-attr]
        assert _plain(cp.list("forked")) == old["forked"]


def test_appends_rebuilt_in_place_leave_a_list_two_keys_shared_alone(tmp_path: Path) -> None:
    shared = [9]
    wf = Workflow("shared", reducers={"a": operator.add})
    wf.add_node("grow", lambda s: {"a": [len(s["a"])], "n": s["n"] + 1})
    wf.add_conditional_edges("grow", lambda s: "grow" if s["n"] < 5 else END)
    wf.set_entry_point("grow")
    with FileCheckpointer(tmp_path / "s") as cp:
        app = wf.compile(checkpointer=cp)
        app.invoke({"a": shared, "b": shared, "n": 0}, thread_id="t")  # one list under two keys, in the base
        assert [s.state for s in app.get_history("t", limit=2)] == [
            {"a": [9, 1, 2, 3, 4, 5], "b": [9], "n": 5},
            {"a": [9, 1, 2, 3, 4], "b": [9], "n": 4},
        ]


def test_every_base_is_written_in_one_batch_with_its_checkpoint(tmp_path: Path) -> None:
    # A SIGKILL between a base and its checkpoint left a thread whose only record was a
    # base (the crash harness found it: `threads()` listed it, `latest()` gave None). On
    # disk, a base now carries the batch flag and its checkpoint follows it: an open drops
    # a cut batch whole, so neither survives without the other.
    _thread_of(tmp_path / "s", FULL_EVERY * 2 + 3)  # three bases: the input's and two rebases
    records = [f for seg in segment_files(tmp_path / "s") for f in frames(seg.read_bytes()) if f.stream == "wf/t"]
    bases = [i for i, f in enumerate(records) if f.kind == Kind.SNAPSHOT]
    assert len(bases) == 3
    for i in bases:
        assert records[i].flags & BATCH_MORE, records[i]
        assert records[i + 1].kind == Kind.CHECKPOINT and records[i + 1].seq == records[i].seq + 1
        assert not records[i + 1].flags & BATCH_MORE
