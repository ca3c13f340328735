"""The SegmentStore API end to end: append, read, indexes, retention, reopen."""

from __future__ import annotations

import errno
import os
import random
import stat
import tempfile
import time
from typing import TYPE_CHECKING, Any

import pytest
from _segfile import dir_bytes, frames, index_files, segment_files
from _util import (
    DURABILITIES,
    SMALL_SEGMENT,
    assert_contents,
    fill_rolled,
    random_payload,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyactors import (
    CompactReport,
    CorruptSegmentError,
    InvalidArgumentError,
    Kind,
    OpenReport,
    PickleSerializer,
    Record,
    SegmentStore,
    StoreClosedError,
    StoreError,
    StoreIOError,
    VerifyReport,
    _core,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def _state(store: SegmentStore) -> dict[str, Any]:
    """Everything a caller can observe of the store's contents."""
    return {
        "streams": store.streams(),
        "records": {s: [(r.kind, r.seq, r.payload) for r in store.read(s)] for s in store.streams()},
        "last_seq": {s: store.last_seq(s) for s in store.streams()},
        "segment_sizes": [p.stat().st_size for p in segment_files(store.path)],
    }


# --- append and read -------------------------------------------------------------------


def test_append_assigns_gap_free_seqs_from_one_per_stream(store: SegmentStore) -> None:
    seqs: dict[str, list[int]] = {"a": [], "b": [], "wf/thread-7": []}
    for i in range(10):
        for stream, got in seqs.items():
            got.append(store.append(stream, b"x%d" % i))
    assert seqs == {stream: list(range(1, 11)) for stream in seqs}
    assert store.last_seq("a") == 10
    assert store.last_seq("never-written") == 0


def test_read_returns_records_in_seq_order_with_every_field(store: SegmentStore) -> None:
    t0 = time.time()
    store.append("s", b"one")
    store.append("s", b"two", kind=Kind.SNAPSHOT)
    store.append("s", b"three", kind=Kind.user(5))
    store.append("s", b"four", kind=Kind.CHECKPOINT)
    t1 = time.time()
    records = list(store.read("s"))
    assert all(isinstance(r, Record) for r in records)
    assert [(r.stream, r.kind, r.seq, r.payload) for r in records] == [
        ("s", Kind.MESSAGE, 1, b"one"),
        ("s", Kind.SNAPSHOT, 2, b"two"),
        ("s", 133, 3, b"three"),
        ("s", Kind.CHECKPOINT, 4, b"four"),
    ]
    # The timestamp is the append time (seconds since the epoch), not a counter.
    for r in records:
        assert t0 - 2 <= r.timestamp <= t1 + 2
    with pytest.raises(AttributeError):
        records[0].payload = b"changed"  # type: ignore[misc]


def test_read_of_an_unknown_stream_is_empty(store: SegmentStore) -> None:
    store.append("known", b"x")
    assert list(store.read("unknown")) == []
    assert store.latest("unknown") is None
    assert store.latest("unknown", Kind.MESSAGE) is None


_RNG = random.Random(1234)
PAYLOADS: dict[str, bytes] = {
    "empty": b"",
    "one zero byte": b"\x00",
    "below compress_min_bytes": b"x" * 63,
    "at compress_min_bytes": b"y" * 64,
    "compressible 300 KB": b"the same words again " * 15_000,
    "incompressible 64 KB": random_payload(_RNG, 64 * 1024),
    "every byte value once": bytes(range(256)),
    "every byte value, repeated": bytes(range(256)) * 64,
    "every byte value, shuffled": bytes(_RNG.sample(range(256), 256)) * 3,
}


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payload_round_trips_exactly_before_and_after_reopen(
    name: str, open_store: Callable[..., SegmentStore]
) -> None:
    payload = PAYLOADS[name]
    s = open_store()
    s.append("p", b"before")
    assert s.append("p", payload) == 2
    s.append("p", payload, kind=Kind.SNAPSHOT)
    s.append("p", b"after")
    assert [r.payload for r in s.read("p")] == [b"before", payload, payload, b"after"]
    latest = s.latest("p")
    assert latest is not None
    assert latest.payload == payload
    s.close()
    s = open_store()
    assert [r.payload for r in s.read("p")] == [b"before", payload, payload, b"after"]
    assert s.latest_many(["p"])["p"].payload == payload  # type: ignore[union-attr]


@pytest.mark.parametrize(("compress_min_bytes", "compression_level"), [(0, 1), (64, 3), (1024, 19), (1 << 20, 3)])
def test_payloads_of_every_size_round_trip_under_any_compression_setting(
    compress_min_bytes: int, compression_level: int, open_store: Callable[..., SegmentStore]
) -> None:
    rng = random.Random(compress_min_bytes)
    payloads = []
    for size in (0, 1, 2, 63, 64, 65, 1000, 1023, 1024, 1025, 70_000):
        payloads.append(b"ab" * (size // 2) + b"c" * (size % 2))
        payloads.append(random_payload(rng, size))
    s = open_store(compress_min_bytes=compress_min_bytes, compression_level=compression_level)
    assert s.append_many([("z", p) for p in payloads]) == list(range(1, len(payloads) + 1))
    assert [r.payload for r in s.read("z")] == payloads
    s.close()
    s = open_store()
    assert [r.payload for r in s.read("z")] == payloads


def test_five_megabyte_payloads_round_trip(open_store: Callable[..., SegmentStore]) -> None:
    rng = random.Random(5)
    random_5mb = random_payload(rng, 5 * 1024 * 1024)
    text_5mb = (b"0123456789abcdef" * 65536) * 5
    s = open_store()
    s.append("big", random_5mb, kind=Kind.SNAPSHOT)
    s.append("big", text_5mb)
    s.append("big", b"small after big")
    assert [r.payload for r in s.read("big")] == [random_5mb, text_5mb, b"small after big"]
    assert s.latest("big").payload == random_5mb  # type: ignore[union-attr]
    s.close()
    s = open_store()
    assert [r.payload for r in s.read("big", after_seq=1)] == [text_5mb, b"small after big"]
    assert s.latest("big").payload == random_5mb  # type: ignore[union-attr]
    assert s.verify().ok


def test_many_streams_are_listed_sorted_and_restored_by_latest_many(store: SegmentStore) -> None:
    rng = random.Random(3)
    names = [f"actor-{i}" for i in rng.sample(range(10_000), 300)]
    names += ["wf/thread-7", "ünïcødé-流", "a" * 255, "Z", "0"]
    for name in names:
        store.append(name, b"message of " + name.encode())
        store.append(name, b"old state", kind=Kind.SNAPSHOT)
        store.append(name, (b"state of " + name.encode()) * 10, kind=Kind.SNAPSHOT)
    assert store.streams() == sorted(names)
    result = store.latest_many([*names, "missing"])
    assert list(result) == [*names, "missing"]
    assert result["missing"] is None
    for name in names:
        record = result[name]
        assert record is not None
        assert (record.stream, record.kind, record.seq) == (name, Kind.SNAPSHOT, 3)
        assert record.payload == (b"state of " + name.encode()) * 10
    messages = store.latest_many(names[:50], Kind.MESSAGE)
    assert {n: (r.seq, r.payload) for n, r in messages.items() if r} == {
        n: (1, b"message of " + n.encode()) for n in names[:50]
    }
    assert store.latest_many([], Kind.SNAPSHOT) == {}
    assert store.latest_many(names[:3], Kind.CHECKPOINT) == dict.fromkeys(names[:3])


def test_latest_returns_the_newest_record_of_the_kind_or_none(store: SegmentStore) -> None:
    assert store.latest("s") is None
    store.append("s", b"m1")
    assert store.latest("s") is None
    store.append("s", b"state-1", kind=Kind.SNAPSHOT)
    store.append("s", b"m2")
    store.append("s", b"state-2", kind=Kind.SNAPSHOT)
    store.append("s", b"m3")
    snapshot = store.latest("s")
    assert snapshot is not None
    assert (snapshot.seq, snapshot.kind, snapshot.payload) == (4, Kind.SNAPSHOT, b"state-2")
    message = store.latest("s", Kind.MESSAGE)
    assert message is not None
    assert (message.seq, message.payload) == (5, b"m3")
    assert store.latest("s", Kind.CHECKPOINT) is None
    assert store.latest("other") is None


KIND_CYCLE = [Kind.MESSAGE, Kind.SNAPSHOT, Kind.CHECKPOINT, Kind.user(0), Kind.user(127)]


@pytest.mark.parametrize(
    "kinds",
    [
        [Kind.SNAPSHOT],
        [Kind.MESSAGE, Kind.CHECKPOINT],
        [Kind.user(127)],
        [Kind.user(0), Kind.SNAPSHOT],
        KIND_CYCLE,
        [200],
    ],
)
def test_read_with_kinds_yields_only_those_kinds_in_seq_order(store: SegmentStore, kinds: list[int]) -> None:
    for i in range(20):
        store.append("k", b"%d" % (i + 1), kind=KIND_CYCLE[i % 5])
    expected = [(i + 1, KIND_CYCLE[i % 5]) for i in range(20) if KIND_CYCLE[i % 5] in kinds]
    got = list(store.read("k", kinds=kinds))
    assert [(r.seq, r.kind) for r in got] == expected
    assert all(r.payload == b"%d" % r.seq for r in got)
    # A tuple or a generator works as well as a list.
    assert [r.seq for r in store.read("k", kinds=(k for k in kinds))] == [seq for seq, _ in expected]


@pytest.mark.parametrize("after_seq", [0, 1, 7, 19, 20, 25])
def test_read_after_seq_yields_only_later_records(store: SegmentStore, after_seq: int) -> None:
    for i in range(1, 21):
        store.append("r", b"%d" % i, kind=Kind.SNAPSHOT if i % 4 == 0 else Kind.MESSAGE)
    assert [r.seq for r in store.read("r", after_seq=after_seq)] == list(range(after_seq + 1, 21))
    snapshots = [r.seq for r in store.read("r", after_seq=after_seq, kinds=[Kind.SNAPSHOT])]
    assert snapshots == [s for s in range(after_seq + 1, 21) if s % 4 == 0]


@pytest.mark.parametrize(
    ("after_seq", "kinds"), [(0, None), (5, None), (0, [Kind.MESSAGE]), (9, [Kind.SNAPSHOT]), (20, None)]
)
def test_read_payloads_returns_what_read_yields_as_seq_kind_payload_triples(
    store: SegmentStore, after_seq: int, kinds: list[int] | None
) -> None:
    rng = random.Random(after_seq)
    for i in range(1, 21):
        payload = b"compressible %d " % i * 300 if i % 5 == 0 else random_payload(rng, 40)
        store.append("p", payload, kind=Kind.SNAPSHOT if i % 4 == 0 else Kind.MESSAGE)
    got = store.read_payloads("p", after_seq, kinds)
    assert got == [(r.seq, r.kind, r.payload) for r in store.read("p", after_seq=after_seq, kinds=kinds)]
    assert [seq for seq, _, _ in got] == [
        s for s in range(after_seq + 1, 21) if kinds is None or (Kind.SNAPSHOT if s % 4 == 0 else Kind.MESSAGE) in kinds
    ]


def _flip_last_record_byte(store: SegmentStore) -> None:
    path = segment_files(store.path)[-1]
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_latest_serves_a_stream_it_was_asked_for_from_memory_after_each_append(
    open_store: Callable[..., SegmentStore],
) -> None:
    store = open_store()
    assert store.latest("a") is None  # asked for: from now on its snapshots are kept
    store.append("a", b"state one " * 100, kind=Kind.SNAPSHOT)
    store.append("a", b"state two " * 100, kind=Kind.SNAPSHOT)
    # Damaged on disk after it was written: only a read from memory still returns it.
    _flip_last_record_byte(store)
    record = store.latest("a")
    assert record is not None
    assert (record.seq, record.payload) == (2, b"state two " * 100)


def test_a_store_without_cache_reads_latest_from_disk(open_store: Callable[..., SegmentStore]) -> None:
    store = open_store(cache_bytes=0)
    assert store.latest("a") is None
    store.append("a", b"state " * 100, kind=Kind.SNAPSHOT)
    _flip_last_record_byte(store)
    with pytest.raises(CorruptSegmentError):
        store.latest("a")


def test_latest_never_serves_a_pruned_or_deleted_snapshot_from_memory(store: SegmentStore) -> None:
    store.append("a", b"old", kind=Kind.SNAPSHOT)
    assert store.latest("a") is not None
    assert store.prune("a", Kind.SNAPSHOT, keep_last=0) == 1
    assert store.latest("a") is None
    store.append("a", b"new", kind=Kind.SNAPSHOT)
    assert store.delete_stream("a") == 1
    assert store.latest("a") is None


def test_read_is_a_lazy_iterator(store: SegmentStore) -> None:
    for i in range(5):
        store.append("it", b"%d" % i)
    it = store.read("it")
    assert iter(it) is it
    assert next(it).seq == 1
    assert [r.seq for r in it] == [2, 3, 4, 5]
    assert next(it, None) is None


def test_read_with_limit_yields_and_reads_only_that_many_records(store: SegmentStore) -> None:
    for i in range(1, 6):
        store.append("lim", b"record-%d" % i)
    store.append("lim", b"MARK-6-damaged-later")
    store.append("lim", b"record-7", kind=Kind.SNAPSHOT)
    assert [r.seq for r in store.read("lim", limit=3)] == [1, 2, 3]
    assert [r.seq for r in store.read("lim", after_seq=4, kinds=[Kind.SNAPSHOT], limit=1)] == [7]
    assert list(store.read("lim", limit=0)) == []
    # Damage record 6 on disk: a read limited to the records before it never touches it.
    (seg,) = segment_files(store.path)
    data = bytearray(seg.read_bytes())
    data[data.index(b"MARK-6")] ^= 0xFF
    seg.write_bytes(bytes(data))
    assert [r.payload for r in store.read("lim", after_seq=3, limit=2)] == [b"record-4", b"record-5"]
    with pytest.raises(CorruptSegmentError):
        list(store.read("lim", after_seq=3))
    with pytest.raises(InvalidArgumentError, match="limit"):
        store.read("lim", limit=-1)


# --- append_many -----------------------------------------------------------------------


def test_append_many_returns_seqs_in_order_across_streams_and_kinds(store: SegmentStore) -> None:
    store.append("a", b"0")
    seqs = store.append_many(
        [("a", b"1"), ("b", b"x", Kind.SNAPSHOT), ("a", b"2", Kind.CHECKPOINT), ("b", b"y"), ("a", b"3" * 500)]
    )
    assert seqs == [2, 1, 3, 2, 4]
    assert [(r.seq, r.kind, r.payload) for r in store.read("a")] == [
        (1, Kind.MESSAGE, b"0"),
        (2, Kind.MESSAGE, b"1"),
        (3, Kind.CHECKPOINT, b"2"),
        (4, Kind.MESSAGE, b"3" * 500),
    ]
    assert [(r.seq, r.kind, r.payload) for r in store.read("b")] == [(1, Kind.SNAPSHOT, b"x"), (2, Kind.MESSAGE, b"y")]
    assert store.append_many([]) == []
    assert store.append("b", b"z") == 3


@pytest.mark.parametrize(
    "bad",
    [("", b"x"), ("a" * 256, b"x"), ("é" * 128, b"x"), ("ok", b"x", 0), ("ok", b"x", 4)],
    ids=["empty stream", "256-byte stream", "256-byte utf8 stream", "kind 0", "kind 4 (tombstone)"],
)
def test_append_many_with_one_invalid_record_writes_none_of_them(store: SegmentStore, bad: tuple[Any, ...]) -> None:
    store.append("a", b"before")
    before = _state(store)
    with pytest.raises(InvalidArgumentError):
        store.append_many([("a", b"1"), ("b", b"2", Kind.SNAPSHOT), bad, ("c", b"3")])
    assert _state(store) == before
    assert store.append("a", b"after") == 2
    assert store.append("b", b"after") == 1


# --- invalid arguments -----------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    ["", "a" * 256, "é" * 128, "流" * 86, "x" * 10_000],
    ids=["empty", "256 ascii bytes", "256 utf8 bytes (2-byte chars)", "258 utf8 bytes (3-byte chars)", "10000 bytes"],
)
def test_invalid_stream_id_raises_invalid_argument_and_writes_nothing(
    store_path: Path, open_store: Callable[..., SegmentStore], stream: str
) -> None:
    s = open_store()
    s.append("ok", b"before")
    before = _state(s)
    with pytest.raises(InvalidArgumentError) as excinfo:
        s.append(stream, b"payload")
    assert isinstance(excinfo.value, ValueError)
    with pytest.raises(InvalidArgumentError):
        s.append(stream, b"payload", kind=Kind.SNAPSHOT)
    assert _state(s) == before
    assert s.append("ok", b"after") == 2
    s.close()
    s = open_store()
    assert s.streams() == ["ok"]
    assert s.open_report.records == 2
    assert s.verify().records == 2


@pytest.mark.parametrize("kind", [0, 4, 7, 64, 127])
def test_reserved_kind_raises_invalid_argument_and_writes_nothing(store: SegmentStore, kind: int) -> None:
    store.append("s", b"before")
    before = _state(store)
    with pytest.raises(InvalidArgumentError) as excinfo:
        store.append("s", b"payload", kind=kind)
    assert isinstance(excinfo.value, ValueError)
    with pytest.raises(InvalidArgumentError):
        store.append("new-stream", b"payload", kind=kind)
    assert _state(store) == before
    assert store.append("s", b"after") == 2


@pytest.mark.parametrize("stream", ["a" * 255, "é" * 127 + "a", "流" * 85, "x", "wf/thread-7", "space and\ttab"])
def test_longest_and_unusual_stream_ids_are_accepted(open_store: Callable[..., SegmentStore], stream: str) -> None:
    s = open_store()
    assert s.append(stream, b"1") == 1
    assert s.append(stream, b"2", kind=Kind.SNAPSHOT) == 2
    s.close()
    s = open_store()
    assert s.streams() == [stream]
    assert [(r.stream, r.payload) for r in s.read(stream)] == [(stream, b"1"), (stream, b"2")]
    assert s.latest(stream).payload == b"2"  # type: ignore[union-attr]


def test_user_kinds_are_128_to_255_and_round_trip(store: SegmentStore) -> None:
    assert Kind.user(0) == 128
    assert Kind.user(127) == 255
    for n in (-1, 128, 1000):
        with pytest.raises(InvalidArgumentError):
            Kind.user(n)
    for n in (0, 1, 127):
        store.append("u", b"user %d" % n, kind=Kind.user(n))
    assert [r.kind for r in store.read("u")] == [128, 129, 255]
    assert store.latest("u", Kind.user(1)).payload == b"user 1"  # type: ignore[union-attr]


def test_unknown_durability_raises_invalid_argument_and_leaves_no_lock(store_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        SegmentStore(store_path, durability="fast")  # type: ignore[arg-type]
    with SegmentStore(store_path) as s:
        assert s.append("a", b"x") == 1


def test_os_error_on_open_raises_store_io_error_with_errno(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_bytes(b"")
    with pytest.raises(StoreIOError) as excinfo:
        SegmentStore(not_a_dir / "store")
    assert isinstance(excinfo.value, OSError)
    assert isinstance(excinfo.value, StoreError)
    assert excinfo.value.errno == errno.ENOTDIR


# --- segments, reopen ------------------------------------------------------------------


def test_small_segment_bytes_rolls_segments_named_by_first_offset_each_sealed_one_indexed(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    s = open_store(segment_bytes=SMALL_SEGMENT)
    written = fill_rolled(s, records=240, size=1024)
    s.close()
    segs = segment_files(store_path)
    assert len(segs) >= 3
    for p in segs:
        assert len(p.stem) == 20
        assert p.stem.isdigit()
    sealed, active = segs[:-1], segs[-1]
    idx_stems = {p.stem for p in index_files(store_path)}
    assert {p.stem for p in sealed} <= idx_stems
    assert idx_stems <= {p.stem for p in segs}
    # Each file is named by the global offset of its first record; offsets run 0..n-1.
    offsets = []
    for p in segs:
        fs = frames(p.read_bytes())
        assert fs, p
        assert fs[0].offset == int(p.stem)
        offsets += [f.offset for f in fs]
    assert offsets == list(range(240))
    assert int(segs[0].stem) == 0
    # Sealed segments are about segment_bytes long (one record more or less).
    record_len = frames(active.read_bytes())[0].length
    for p in sealed:
        assert SMALL_SEGMENT - 2 * record_len <= p.stat().st_size <= SMALL_SEGMENT + 2 * record_len

    s = open_store()  # default segment_bytes: a rolled store reopens whatever the option
    report = s.open_report
    assert isinstance(report, OpenReport)
    assert report.segments == len(segs)
    assert report.records == 240
    assert (report.truncated_bytes, report.dropped_records, report.damaged, report.rebuilt_indexes) == (0, 0, (), ())
    assert report.elapsed_ms >= 0
    assert_contents(s, written)
    latest = s.latest_many(["alpha", "beta", "gamma"], Kind.MESSAGE)
    assert {k: v.payload for k, v in latest.items() if v} == {k: v[-1] for k, v in written.items()}


def test_reopen_keeps_everything_and_seqs_continue(store_path: Path, open_store: Callable[..., SegmentStore]) -> None:
    s = open_store(segment_bytes=SMALL_SEGMENT)
    written = fill_rolled(s, records=150)
    s.append("alpha", b"alpha state", kind=Kind.SNAPSHOT)
    written["alpha"].append(b"alpha state")
    s.close()
    for round_ in range(3):
        s = open_store(segment_bytes=SMALL_SEGMENT)
        assert_contents(s, written)
        assert s.latest("alpha").payload == b"alpha state"  # type: ignore[union-attr]
        for stream in ("alpha", "beta", "delta"):
            payload = b"round %d of %s" % (round_, stream.encode())
            assert s.append(stream, payload) == len(written.get(stream, [])) + 1
            written.setdefault(stream, []).append(payload)
        s.close()
    s = open_store()
    assert_contents(s, written)
    assert s.open_report.records == sum(len(v) for v in written.values())


def test_stats_count_segments_streams_and_records_appended_since_open(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    s = open_store(segment_bytes=SMALL_SEGMENT)
    fill_rolled(s, records=200)
    stats = s.stats()
    assert stats["appended"] == 200
    assert stats["streams"] == 3
    assert stats["segments"] == len(segment_files(store_path))
    seg_bytes = sum(p.stat().st_size for p in segment_files(store_path))
    assert seg_bytes <= stats["bytes"] <= dir_bytes(store_path)
    s.close()
    s = open_store()
    assert s.stats()["appended"] == 0
    s.append("new", b"x")
    assert s.stats()["appended"] == 1
    assert s.stats()["streams"] == 4


@pytest.mark.parametrize("durability", DURABILITIES)
def test_every_durability_policy_appends_flushes_and_reopens(
    durability: str, open_store: Callable[..., SegmentStore]
) -> None:
    s = open_store(durability=durability, group_commit_ms=2.0)
    assert s.durability == durability
    seqs = [s.append("d", b"%d" % i) for i in range(50)]
    seqs += s.append_many([("d", b"batch %d" % i) for i in range(50)])
    assert seqs == list(range(1, 101))
    s.flush()
    s.close()
    s = open_store(durability=durability)
    assert [r.seq for r in s.read("d")] == list(range(1, 101))
    assert s.verify().ok


# --- prune, delete, compact ------------------------------------------------------------


def test_prune_deletes_exactly_all_but_the_newest_of_the_kind(open_store: Callable[..., SegmentStore]) -> None:
    s = open_store()
    for i in range(1, 11):
        s.append("s", b"snap-%d" % i, kind=Kind.SNAPSHOT)
        s.append("s", b"msg-%d" % i)
    s.append("other", b"other snap", kind=Kind.SNAPSHOT)
    assert s.prune("s", Kind.SNAPSHOT, keep_last=3) == 7
    assert [r.payload for r in s.read("s", kinds=[Kind.SNAPSHOT])] == [b"snap-8", b"snap-9", b"snap-10"]
    assert [r.payload for r in s.read("s", kinds=[Kind.MESSAGE])] == [b"msg-%d" % i for i in range(1, 11)]
    assert s.latest("s").payload == b"snap-10"  # type: ignore[union-attr]
    assert s.prune("s", Kind.SNAPSHOT, keep_last=3) == 0
    assert s.prune("s", Kind.SNAPSHOT, keep_last=100) == 0
    assert s.prune("s", Kind.CHECKPOINT, keep_last=0) == 0
    assert s.prune("unknown", Kind.SNAPSHOT, keep_last=0) == 0
    assert [r.payload for r in s.read("other")] == [b"other snap"]
    s.close()

    s = open_store()
    assert [r.payload for r in s.read("s", kinds=[Kind.SNAPSHOT])] == [b"snap-8", b"snap-9", b"snap-10"]
    assert len(list(s.read("s", kinds=[Kind.MESSAGE]))) == 10
    assert s.latest("s").payload == b"snap-10"  # type: ignore[union-attr]
    assert s.prune("s", Kind.SNAPSHOT, keep_last=0) == 3
    assert s.latest("s") is None
    assert s.latest_many(["s", "other"]) == {"s": None, "other": s.latest("other")}
    new_seq = s.append("s", b"snap-11", kind=Kind.SNAPSHOT)
    assert new_seq > 20
    assert s.latest("s").seq == new_seq  # type: ignore[union-attr]
    s.close()
    s = open_store()
    assert [r.payload for r in s.read("s", kinds=[Kind.SNAPSHOT])] == [b"snap-11"]
    assert s.verify().ok


def test_delete_stream_returns_the_live_count_and_never_reuses_seqs(open_store: Callable[..., SegmentStore]) -> None:
    s = open_store()
    for i in range(5):
        s.append("victim", b"m%d" % i)
    s.append("victim", b"s1", kind=Kind.SNAPSHOT)
    s.append("victim", b"s2", kind=Kind.SNAPSHOT)
    for i in range(3):
        s.append("keep", b"k%d" % i)
    assert s.prune("victim", Kind.SNAPSHOT, keep_last=1) == 1
    assert s.delete_stream("victim") == 6
    assert s.streams() == ["keep"]
    assert list(s.read("victim")) == []
    assert s.latest("victim") is None
    assert s.latest_many(["victim"], Kind.MESSAGE) == {"victim": None}
    assert s.delete_stream("victim") == 0
    assert s.delete_stream("never-existed") == 0
    assert [r.payload for r in s.read("keep")] == [b"k0", b"k1", b"k2"]
    reborn = s.append("victim", b"again")
    assert reborn > 7
    assert [(r.seq, r.payload) for r in s.read("victim")] == [(reborn, b"again")]
    assert s.streams() == ["keep", "victim"]
    s.close()

    s = open_store()
    assert s.streams() == ["keep", "victim"]
    assert [(r.seq, r.payload) for r in s.read("victim")] == [(reborn, b"again")]
    assert s.append("victim", b"again 2") == reborn + 1
    assert [r.payload for r in s.read("keep")] == [b"k0", b"k1", b"k2"]


def test_delete_stream_then_reopen_still_does_not_reuse_seqs(open_store: Callable[..., SegmentStore]) -> None:
    s = open_store()
    for i in range(4):
        s.append("gone", b"%d" % i)
    assert s.delete_stream("gone") == 4
    s.close()
    s = open_store()
    assert s.streams() == []
    assert list(s.read("gone")) == []
    assert s.append("gone", b"new") > 4


def test_compact_after_delete_stream_shrinks_files_on_disk_and_keeps_live_data(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    rng = random.Random(11)
    s = open_store(segment_bytes=SMALL_SEGMENT)
    live: list[bytes] = []
    for i in range(400):
        s.append("dead", random_payload(rng, 1024))
        if i % 10 == 0:
            live.append(random_payload(rng, 512))
            s.append("live", live[-1])
    live.append(b"live state")
    s.append("live", live[-1], kind=Kind.SNAPSHOT)
    assert s.delete_stream("dead") == 400
    s.flush()
    before = dir_bytes(store_path)

    report = s.compact()

    after = dir_bytes(store_path)
    assert isinstance(report, CompactReport)
    assert report.segments_removed >= 1
    assert report.records_copied >= 1
    assert report.bytes_after < report.bytes_before
    assert after < before // 2, (before, after, report)
    assert_contents(s, {"live": live})
    assert list(s.read("dead")) == []
    s.close()

    s = open_store(segment_bytes=SMALL_SEGMENT)
    assert_contents(s, {"live": live})
    assert s.latest("live").payload == b"live state"  # type: ignore[union-attr]
    assert s.verify().ok
    assert dir_bytes(store_path) < before // 2
    assert s.append("live", b"more") == len(live) + 1
    assert s.append("dead", b"reborn") > 400


def test_compact_after_prune_shrinks_files_on_disk_and_the_latest_snapshot_survives(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    rng = random.Random(12)
    s = open_store(segment_bytes=SMALL_SEGMENT)
    snapshots = [random_payload(rng, 2048) for _ in range(150)]
    for snap in snapshots:
        s.append("actor", snap, kind=Kind.SNAPSHOT)
    s.append("actor", b"a message")
    assert s.prune("actor", Kind.SNAPSHOT, keep_last=1) == 149
    before = dir_bytes(store_path)
    report = s.compact(min_dead_ratio=0.5)
    assert report.segments_removed >= 1
    assert dir_bytes(store_path) < before // 2
    assert s.latest("actor").payload == snapshots[-1]  # type: ignore[union-attr]
    s.close()
    s = open_store()
    assert [(r.kind, r.payload) for r in s.read("actor")] == [
        (Kind.SNAPSHOT, snapshots[-1]),
        (Kind.MESSAGE, b"a message"),
    ]
    assert s.latest("actor").seq == 150  # type: ignore[union-attr]
    assert s.verify().ok


def test_compact_without_dead_records_removes_nothing(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    s = open_store(segment_bytes=SMALL_SEGMENT)
    written = fill_rolled(s, records=200)
    segs = [p.name for p in segment_files(store_path)]
    report = s.compact()
    assert (report.segments_removed, report.records_copied) == (0, 0)
    assert [p.name for p in segment_files(store_path)] == segs
    assert_contents(s, written)
    s.close()
    s = open_store()
    assert_contents(s, written)


def _stored_frames(store_path: Path, stream: str) -> list[tuple[int, int, bytes]]:
    """(flags, raw_len, stored payload) of every frame of `stream` on disk, in file order."""
    return [
        (f.flags, f.raw_len, f.payload)
        for path in segment_files(store_path)
        for f in frames(path.read_bytes())
        if f.stream == stream
    ]


@pytest.mark.parametrize("auth_key", [None, b"sixteen byte key"])
def test_append_with_compress_false_stores_the_payload_raw_until_compact_compresses_it(
    store_path: Path, open_store: Callable[..., SegmentStore], auth_key: bytes | None
) -> None:
    state = b"the whole workflow state, very compressible; " * 2000
    s = open_store(auth_key=auth_key)
    assert s.append("wf", state, Kind.CHECKPOINT, compress=False) == 1
    assert s.append_many([("wf", state, Kind.CHECKPOINT)], compress=False) == [2]
    assert s.append("wf", state, Kind.CHECKPOINT) == 3
    s.flush()
    raw_flags = [flags & _core.FLAG_ZSTD for flags, _, _ in _stored_frames(store_path, "wf")]
    assert raw_flags == [0, 0, _core.FLAG_ZSTD]
    on_disk = b"".join(p.read_bytes() for p in segment_files(store_path))
    assert on_disk.count(state) == 2, "both raw appends lie in the segment verbatim"
    assert [r.payload for r in s.read("wf")] == [state] * 3
    before = dir_bytes(store_path)

    report = s.compact(min_dead_ratio=0.0)

    assert report.records_copied == 3
    stored = _stored_frames(store_path, "wf")
    assert [(flags & _core.FLAG_ZSTD, raw_len) for flags, raw_len, _ in stored] == [(_core.FLAG_ZSTD, len(state))] * 3
    assert all(len(payload) < len(state) // 10 for _, _, payload in stored)
    assert state not in b"".join(p.read_bytes() for p in segment_files(store_path))
    assert dir_bytes(store_path) < before // 2
    assert [r.payload for r in s.read("wf")] == [state] * 3
    assert s.verify().ok
    s.close()
    s = open_store(auth_key=auth_key)
    assert [r.payload for r in s.read("wf")] == [state] * 3
    assert s.verify().ok


def test_an_incompressible_payload_appended_raw_stays_raw_through_compact(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    noise = random.Random(5).randbytes(50_000)
    s = open_store()
    s.append("n", noise, compress=False)
    s.compact(min_dead_ratio=0.0)
    assert [(flags & _core.FLAG_ZSTD, payload) for flags, _, payload in _stored_frames(store_path, "n")] == [(0, noise)]
    assert s.latest("n", Kind.MESSAGE).payload == noise  # type: ignore[union-attr]
    assert s.verify().ok


# --- verify, close, files --------------------------------------------------------------


def test_verify_is_clean_on_a_healthy_store(store_path: Path, open_store: Callable[..., SegmentStore]) -> None:
    s = open_store(segment_bytes=SMALL_SEGMENT)
    fill_rolled(s, records=240)
    report = s.verify()
    assert isinstance(report, VerifyReport)
    assert report.ok
    assert report.damaged == ()
    assert report.segments == len(segment_files(store_path))
    assert report.records == 240
    assert 0 < report.bytes <= sum(p.stat().st_size for p in segment_files(store_path))
    s.close()
    s = open_store()
    assert s.verify() == report


def test_every_call_after_close_raises_store_closed_error(store_path: Path) -> None:
    s = SegmentStore(store_path)
    s.append("a", b"x", kind=Kind.SNAPSHOT)
    s.close()
    assert s.closed
    calls: dict[str, Callable[[], object]] = {
        "append": lambda: s.append("a", b"y"),
        "append_many": lambda: s.append_many([("a", b"y")]),
        "latest": lambda: s.latest("a"),
        "latest_many": lambda: s.latest_many(["a"]),
        "read": lambda: list(s.read("a")),
        "streams": s.streams,
        "last_seq": lambda: s.last_seq("a"),
        "prune": lambda: s.prune("a", Kind.SNAPSHOT, 0),
        "delete_stream": lambda: s.delete_stream("a"),
        "compact": s.compact,
        "verify": s.verify,
        "flush": s.flush,
        "stats": s.stats,
    }
    outcomes: dict[str, str] = {}
    for name, call in calls.items():
        try:
            call()
            outcomes[name] = "returned"
        except StoreClosedError:
            outcomes[name] = "StoreClosedError"
        except Exception as exc:
            outcomes[name] = f"{type(exc).__name__}: {exc}"
    assert outcomes == dict.fromkeys(calls, "StoreClosedError")
    s.close()  # idempotent
    assert issubclass(StoreClosedError, StoreError)
    assert "closed" in repr(s)
    with SegmentStore(store_path) as again:  # nothing was written after close
        assert [r.payload for r in again.read("a")] == [b"x"]


def test_context_manager_closes_and_releases_the_store(store_path: Path) -> None:
    with SegmentStore(store_path) as s:
        assert not s.closed
        assert os.path.samefile(s.path, store_path)
        assert repr(s).startswith("SegmentStore(")
        assert "process" in repr(s)
        assert isinstance(s.serializer, PickleSerializer)
        s.append("a", b"x")
    assert s.closed
    with SegmentStore(store_path) as again:
        assert again.last_seq("a") == 1


def test_directory_is_0700_and_files_are_0600_whatever_the_umask(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    old_umask = os.umask(0)
    try:
        s = open_store(segment_bytes=SMALL_SEGMENT)
        fill_rolled(s, records=200)
        s.delete_stream("beta")
        s.compact(min_dead_ratio=0.0)
        s.close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(store_path).st_mode) == 0o700
    names = sorted(os.listdir(store_path))
    assert "LOCK" in names
    assert any(n.endswith(".seg") for n in names)
    assert any(n.endswith(".idx") for n in names)
    modes = {n: stat.S_IMODE(os.stat(store_path / n).st_mode) for n in names}
    assert modes == dict.fromkeys(names, 0o600)


# --- property tests --------------------------------------------------------------------

_payloads = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda chunk, n: chunk * n, st.binary(min_size=1, max_size=8), st.integers(1, 200)),
)


def _check_against_model(s: SegmentStore, model: dict[str, list[bytes]]) -> None:
    assert s.streams() == sorted(model)
    for stream, payloads in model.items():
        records = list(s.read(stream))
        assert [(r.stream, r.seq, r.kind, r.payload) for r in records] == [
            (stream, i + 1, Kind.MESSAGE, p) for i, p in enumerate(payloads)
        ]
        assert s.last_seq(stream) == len(payloads)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c/d", "é"]), _payloads), max_size=60))
def test_read_matches_a_python_model_for_any_appends(records: list[tuple[str, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "store")
        model: dict[str, list[bytes]] = {}
        with SegmentStore(path, compress_min_bytes=16) as s:
            for stream, payload in records:
                model.setdefault(stream, []).append(payload)
                assert s.append(stream, payload) == len(model[stream])
            _check_against_model(s, model)
        with SegmentStore(path) as s:
            _check_against_model(s, model)


_streams = st.sampled_from(["a", "b", "c"])
_kinds = st.sampled_from([Kind.SNAPSHOT, Kind.MESSAGE, Kind.user(1)])
_ops = st.one_of(
    st.tuples(st.just("append"), _streams, _kinds, st.one_of(_payloads, st.binary(min_size=500, max_size=3000))),
    st.tuples(st.just("many"), st.lists(st.tuples(_streams, _payloads, _kinds), max_size=5)),
    st.tuples(st.just("prune"), _streams, _kinds, st.integers(0, 3)),
    st.tuples(st.just("delete"), _streams),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("compact"), st.sampled_from([0.0, 0.5, 0.9])),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ops, max_size=50))
def test_store_matches_a_model_under_appends_prunes_deletes_reopens_and_compactions(ops: list[tuple[Any, ...]]) -> None:
    live: dict[str, list[tuple[int, int, bytes]]] = {}  # stream -> live (seq, kind, payload)
    last: dict[str, int] = {}  # last seq assigned per stream
    tombstoned: set[str] = set()  # streams that were pruned or deleted (seqs may skip there)
    deleted: set[str] = set()  # streams deleted and not written since

    def appended(stream: str, kind: int, payload: bytes, seq: int) -> None:
        if stream in tombstoned:
            assert seq > last.get(stream, 0)
        else:
            assert seq == last.get(stream, 0) + 1
        last[stream] = seq
        live.setdefault(stream, []).append((seq, kind, payload))
        deleted.discard(stream)

    def check(s: SegmentStore) -> None:
        listed = set(s.streams())
        assert s.streams() == sorted(listed)
        assert {st_ for st_, recs in live.items() if recs} <= listed
        assert not listed & deleted
        for stream in ("a", "b", "c"):
            recs = live.get(stream, [])
            assert [(r.seq, r.kind, r.payload) for r in s.read(stream)] == recs
            for kind in (Kind.SNAPSHOT, Kind.MESSAGE, Kind.user(1)):
                of_kind = [r for r in recs if r[1] == kind]
                got = s.latest(stream, kind)
                assert (None if got is None else (got.seq, got.kind, got.payload)) == (of_kind[-1] if of_kind else None)

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "store")
        s = SegmentStore(path, segment_bytes=SMALL_SEGMENT)
        try:
            for op in ops:
                if op[0] == "append":
                    _, stream, kind, payload = op
                    appended(stream, kind, payload, s.append(stream, payload, kind=kind))
                elif op[0] == "many":
                    seqs = s.append_many([(stream, payload, kind) for stream, payload, kind in op[1]])
                    assert len(seqs) == len(op[1])
                    for (stream, payload, kind), seq in zip(op[1], seqs, strict=True):
                        appended(stream, kind, payload, seq)
                elif op[0] == "prune":
                    _, stream, kind, keep = op
                    of_kind = [r for r in live.get(stream, []) if r[1] == kind]
                    doomed = {r[0] for r in of_kind[: max(0, len(of_kind) - keep)]}
                    assert s.prune(stream, kind, keep_last=keep) == len(doomed)
                    live[stream] = [r for r in live.get(stream, []) if r[0] not in doomed]
                    tombstoned.add(stream)
                elif op[0] == "delete":
                    _, stream = op
                    assert s.delete_stream(stream) == len(live.get(stream, []))
                    live[stream] = []
                    tombstoned.add(stream)
                    deleted.add(stream)
                elif op[0] == "reopen":
                    s.close()
                    s = SegmentStore(path, segment_bytes=SMALL_SEGMENT)
                    assert s.open_report.damaged == ()
                else:
                    s.compact(min_dead_ratio=op[1])
                    check(s)
            check(s)
            assert s.verify().ok
            s.close()
            s = SegmentStore(path)
            check(s)
            for stream in ("a", "b", "c"):
                appended(stream, Kind.MESSAGE, b"final", s.append(stream, b"final"))
            check(s)
        finally:
            s.close()


def test_verify_and_compact_report_progress_up_to_the_total_and_stop_when_it_raises(tmp_path: Path) -> None:
    with SegmentStore(tmp_path / "s", segment_bytes=4096) as store:
        for i in range(300):
            store.append("a" if i % 2 else "b", b"record %d " % i * 10)
        store.delete_stream("b")
        for op in (store.verify, store.compact):
            calls: list[tuple[int, int]] = []
            op(progress=lambda done, total, calls=calls: calls.append((done, total)))  # type: ignore[operator]
            dones = [d for d, _ in calls]
            assert len(calls) > 3 and dones == sorted(dones), op
            assert len({t for _, t in calls}) == 1 and calls[-1][0] == calls[-1][1] > 0, op

        class Stop(Exception):
            pass

        def stop(done: int, total: int) -> None:
            if done > 0:
                raise Stop

        with pytest.raises(Stop):
            store.verify(progress=stop)
        assert store.verify().ok  # the store is untouched and still works
        assert [r.seq for r in store.read("a")] == list(range(1, 151))


def test_read_only_store_reads_beside_the_writer_refuses_writes_and_changes_no_file(tmp_path: Path) -> None:
    with SegmentStore(tmp_path / "s", segment_bytes=4096) as writer:
        for i in range(50):
            writer.append("a", b"record %d " % i * 20)
        before = {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()}
        with SegmentStore(tmp_path / "s", read_only=True) as reader:
            writer.append("a", b"appended after the reader opened")
            assert [r.seq for r in reader.read("a")] == list(range(1, 51))
            assert reader.verify().ok
            for write in (
                lambda: reader.append("a", b"x"),
                lambda: reader.prune("a", Kind.MESSAGE, keep_last=1),
                lambda: reader.delete_stream("a"),
                reader.compact,
            ):
                with pytest.raises(InvalidArgumentError, match="is open read-only"):
                    write()
        after = {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()}
        # Only the writer's own append changed a file.
        assert {n for n in before if before[n] != after.get(n)} <= {max(n for n in before if n.endswith(".seg"))}
        assert writer.last_seq("a") == 51
    with pytest.raises(StoreIOError):
        SegmentStore(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()
