"""Many Python threads appending and reading one store at once."""

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


def test_threads_appending_while_others_prune_and_compact_lose_no_live_record(store_path: Path) -> None:
    """Retention running beside appenders never removes a record it was not asked to."""
    store = SegmentStore(store_path, segment_bytes=SMALL_SEGMENT)
    errors: list[BaseException] = []
    done = threading.Event()
    per_thread = 150

    def appender(t: int) -> None:
        try:
            for i in range(per_thread):
                assert store.append(f"thread-{t}", payload(t, i)) == i + 1
                store.append(f"snap-{t}", payload(t, i), kind=Kind.SNAPSHOT)
        except BaseException as exc:
            errors.append(exc)

    def janitor() -> None:
        try:
            while not done.is_set():
                for t in range(4):
                    store.prune(f"snap-{t}", Kind.SNAPSHOT, keep_last=1)
                store.compact(min_dead_ratio=0.3)
        except BaseException as exc:
            errors.append(exc)

    appenders = [threading.Thread(target=appender, args=(t,)) for t in range(4)]
    cleaner = threading.Thread(target=janitor)
    try:
        cleaner.start()
        for th in appenders:
            th.start()
        for th in appenders:
            th.join(timeout=100)
        done.set()
        cleaner.join(timeout=100)
        assert errors == []
        for t in range(4):
            _check_prefix(store, f"thread-{t}")
            assert store.last_seq(f"thread-{t}") == per_thread
            latest = store.latest(f"snap-{t}")
            assert latest is not None
            assert latest.payload == payload(t, per_thread - 1)
    finally:
        done.set()
        store.close()
    with SegmentStore(store_path) as reopened:
        for t in range(4):
            _check_prefix(reopened, f"thread-{t}")
            assert reopened.last_seq(f"thread-{t}") == per_thread
            assert reopened.latest(f"snap-{t}").payload == payload(t, per_thread - 1)  # type: ignore[union-attr]
        assert reopened.verify().ok
