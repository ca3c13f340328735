"""Many Python threads appending, reading, pruning and compacting one store at once."""

from __future__ import annotations

import random
import threading
from typing import TYPE_CHECKING

import pytest
from _util import SMALL_SEGMENT

from pyactors import Kind, SegmentStore

if TYPE_CHECKING:
    from pathlib import Path

THREADS = 8
SHARED = "shared"


def payload(t: int, i: int) -> bytes:
    """Payload number `i` of thread `t`: tagged, then 0-1500 random bytes."""
    rng = random.Random(t * 1_000_003 + i)
    return b"t%d i%d " % (t, i) + rng.randbytes(rng.choice((0, 20, 100, 1500)))


def origin(p: bytes) -> tuple[int, int]:
    """(thread, index) of a payload made by `payload`."""
    t, i = p.split(b" ", 2)[:2]
    return int(t[1:]), int(i[1:])


def _check_prefix(store: SegmentStore, stream: str) -> None:
    """What a reader sees of a stream at any moment: seqs 1..k, each payload the right one."""
    records = list(store.read(stream))
    assert [r.seq for r in records] == list(range(1, len(records) + 1)), stream
    if stream != SHARED:
        t = int(stream.split("-")[1])
        assert [r.payload for r in records] == [payload(t, i) for i in range(len(records))], stream
    else:
        for r in records:
            assert r.payload == payload(*origin(r.payload))


def _check_final(store: SegmentStore, per_thread: int, shared_seqs: dict[int, list[int]]) -> None:
    for t in range(THREADS):
        own = list(store.read(f"thread-{t}"))
        assert [(r.seq, r.payload) for r in own] == [(i + 1, payload(t, i)) for i in range(per_thread)]
    shared = list(store.read(SHARED))
    assert [r.seq for r in shared] == list(range(1, THREADS * per_thread + 1))
    by_thread: dict[int, list[tuple[int, int]]] = {t: [] for t in range(THREADS)}
    for r in shared:
        t, i = origin(r.payload)
        assert r.payload == payload(t, i)
        by_thread[t].append((i, r.seq))
    for t in range(THREADS):
        # Each thread's records appear in the order it appended them, at the seqs it was given.
        assert [i for i, _ in by_thread[t]] == list(range(per_thread)), t
        assert [seq for _, seq in by_thread[t]] == shared_seqs[t], t


@pytest.mark.parametrize(("durability", "per_thread"), [("process", 300), ("group", 200), ("sync", 120)])
def test_eight_threads_appending_and_reading_keep_streams_gap_free_and_each_thread_in_order(
    store_path: Path, durability: str, per_thread: int
) -> None:
    store = SegmentStore(store_path, durability=durability, segment_bytes=SMALL_SEGMENT)  # type: ignore[arg-type]
    start = threading.Barrier(THREADS + 2)
    writers_done = threading.Event()
    errors: list[tuple[str, BaseException]] = []
    shared_seqs: dict[int, list[int]] = {t: [] for t in range(THREADS)}

    def writer(t: int) -> None:
        own = f"thread-{t}"
        try:
            start.wait()
            for i in range(per_thread):
                p = payload(t, i)
                if i % 10 == 9:
                    own_seq, shared_seq = store.append_many([(own, p), (SHARED, p)])
                else:
                    own_seq = store.append(own, p)
                    shared_seq = store.append(SHARED, p)
                assert own_seq == i + 1
                if shared_seqs[t]:
                    assert shared_seq > shared_seqs[t][-1]
                shared_seqs[t].append(shared_seq)
                if i % 30 == 0:
                    _check_prefix(store, own)
                    _check_prefix(store, SHARED)
                    latest = store.latest_many([own, SHARED], Kind.MESSAGE)
                    assert latest[own] is not None
                    assert latest[own].seq >= i + 1
                    assert latest[SHARED] is not None
                    assert latest[SHARED].seq >= shared_seq
                    assert store.last_seq(own) == i + 1
        except BaseException as exc:
            errors.append((own, exc))

    def reader(n: int) -> None:
        rng = random.Random(n)
        try:
            start.wait()
            while not writers_done.is_set():
                stream = rng.choice([SHARED, *(f"thread-{t}" for t in range(THREADS))])
                _check_prefix(store, stream)
                after = rng.randint(0, max(0, store.last_seq(stream)))
                seqs = [r.seq for r in store.read(stream, after_seq=after)]
                assert seqs == list(range(after + 1, after + 1 + len(seqs)))
                assert set(store.streams()) <= {SHARED, *(f"thread-{t}" for t in range(THREADS))}
        except BaseException as exc:
            errors.append((f"reader-{n}", exc))

    writers = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
    readers = [threading.Thread(target=reader, args=(n,)) for n in range(2)]
    try:
        for th in writers + readers:
            th.start()
        for th in writers:
            th.join(timeout=100)
        writers_done.set()
        for th in readers:
            th.join(timeout=100)
        assert not any(th.is_alive() for th in writers + readers), "a thread is stuck"
        assert errors == []
        _check_final(store, per_thread, shared_seqs)
        assert store.verify().ok
    finally:
        writers_done.set()
        store.close()

    with SegmentStore(store_path) as reopened:
        _check_final(reopened, per_thread, shared_seqs)
        assert reopened.open_report.damaged == ()


def _check_snaps(store: SegmentStore, per_thread: int) -> None:
    """Each thread's snapshot stream: its newest records, contiguous, the last one intact."""
    for t in range(THREADS):
        live = list(store.read(f"snap-{t}"))
        seqs = [r.seq for r in live]
        assert seqs == list(range(seqs[0], per_thread + 1)), (t, seqs)
        assert [r.payload for r in live] == [payload(t, q - 1) for q in seqs], t
        latest = store.latest(f"snap-{t}")
        assert latest is not None
        assert (latest.seq, latest.payload) == (per_thread, payload(t, per_thread - 1))


def test_eight_threads_appending_reading_pruning_and_compacting_at_once_keep_every_invariant(
    store_path: Path,
) -> None:
    """Each of 8 threads appends (alone and in batches), reads, prunes and compacts, all at once."""
    store = SegmentStore(store_path, segment_bytes=SMALL_SEGMENT)
    per_thread = 150
    start = threading.Barrier(THREADS)
    errors: list[tuple[int, BaseException]] = []
    shared_seqs: dict[int, list[int]] = {t: [] for t in range(THREADS)}
    ops = {"read": 0, "prune": 0, "compact": 0}

    def worker(t: int) -> None:
        rng = random.Random(t)
        own, snaps = f"thread-{t}", f"snap-{t}"
        try:
            start.wait()
            for i in range(per_thread):
                p = payload(t, i)
                if i % 4 == 0:
                    seqs = store.append_many([(own, p), (snaps, p, Kind.SNAPSHOT), (SHARED, p)])
                else:
                    seqs = [store.append(own, p), store.append(snaps, p, Kind.SNAPSHOT), store.append(SHARED, p)]
                assert seqs[:2] == [i + 1, i + 1]
                shared_seqs[t].append(seqs[2])
                op = rng.choice(("read", "read", "prune", "compact", "none"))
                if op == "read":
                    _check_prefix(store, rng.choice([SHARED, *(f"thread-{u}" for u in range(THREADS))]))
                elif op == "prune":
                    store.prune(snaps, Kind.SNAPSHOT, keep_last=2)
                    assert [r.seq for r in store.read(snaps)] == list(range(max(1, i), i + 2))
                elif op == "compact":
                    store.compact(min_dead_ratio=0.3)
                ops[op] = ops.get(op, 0) + 1
        except BaseException as exc:
            errors.append((t, exc))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=100)
        assert not any(th.is_alive() for th in threads), "a thread is stuck"
        assert errors == []
        assert min(ops["read"], ops["prune"], ops["compact"]) > 0, ops
        _check_final(store, per_thread, shared_seqs)
        _check_snaps(store, per_thread)
        assert store.verify().ok
    finally:
        store.close()
    with SegmentStore(store_path) as reopened:
        _check_final(reopened, per_thread, shared_seqs)
        _check_snaps(reopened, per_thread)
        assert reopened.verify().ok
        assert reopened.open_report.damaged == ()
