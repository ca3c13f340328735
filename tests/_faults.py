"""Stores on the fault layer (`pyactors._core.FaultFs`, built by `make build`; not collected).

`FaultFs` exists only in builds with the cargo feature ``fault-injection``: the dev
build has it, a release wheel does not. These helpers reach it through the private
``_fault`` keyword of `pyactors._core.SegmentLog`; `SegmentStore` has no such argument.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from unittest import mock

from pyactors import Kind, SegmentStore, _core

if TYPE_CHECKING:
    from pathlib import Path

# Fails the run (never skips) if the dev build lacks the feature.
FaultFs = _core.FaultFs


def faulty_store(path: Path, fault: _core.FaultFs, **options: Any) -> SegmentStore:
    """Open a `SegmentStore` at `path` whose file operations all go through `fault`."""
    log_class = functools.partial(_core.SegmentLog, _fault=fault)
    with mock.patch.object(_core, "SegmentLog", log_class):
        return SegmentStore(path, **options)


def close_after_fault(store: SegmentStore) -> None:
    """Close a store whose file system failed or lost power (its final flush may fail)."""
    with contextlib.suppress(OSError):
        store.close()
    assert store.closed


#: Options of the workload: small segments, so it rolls many times.
WORKLOAD_OPTIONS: dict[str, Any] = {"segment_bytes": 4096, "group_commit_ms": 2.0}


def body(stream: str, seq: int) -> bytes:
    """The payload of record `seq` of `stream`: known from its place, so a reader can check it."""
    head = f"{stream}#{seq}:".encode()
    return head + bytes([97 + seq % 26]) * (300 - len(head))


@dataclass
class Seen:
    """What a workload saw, per stream: the last seq acknowledged, the last that must
    survive a power loss under the store's policy, and the last attempted."""

    acked: dict[str, int] = field(default_factory=dict)
    durable: dict[str, int] = field(default_factory=dict)
    attempted: dict[str, int] = field(default_factory=dict)


def workload(path: Path, fault: _core.FaultFs, durability: str, seen: Seen, rounds: int = 60) -> None:
    """Append to ``a`` (never deleted) and snapshots to ``s`` (pruned to the last 2);
    every 20 rounds fill a throwaway stream, delete it and compact; under ``group``,
    `flush()` every 15 rounds. Stops at the first `StoreIOError`, which it raises.
    The store is closed (or abandoned after a fault) when it returns.
    """
    store = faulty_store(path, fault, durability=durability, **WORKLOAD_OPTIONS)
    try:
        for i in range(rounds):
            for stream, kind in (("a", Kind.MESSAGE), ("s", Kind.SNAPSHOT)):
                if stream == "s" and i % 10:
                    continue
                seq = seen.attempted.get(stream, 0) + 1
                seen.attempted[stream] = seq
                assert store.append(stream, body(stream, seq), kind) == seq
                seen.acked[stream] = seq
                if durability == "sync":
                    seen.durable[stream] = seq
                if stream == "s":
                    store.prune("s", Kind.SNAPSHOT, keep_last=2)
            if i % 20 == 19:
                store.append_many([("junk", body("junk", j)) for j in range(20)])
                store.delete_stream("junk")
                store.compact(0.3)
            if durability == "group" and i % 15 == 14:
                store.flush()
                seen.durable = dict(seen.acked)
    finally:
        close_after_fault(store)


def count_ops(tmp: Path, durability: str) -> int:
    """How many counted operations a whole run of `workload` makes."""
    fault = FaultFs()
    workload(tmp / f"count-{durability}", fault, durability, Seen())
    return fault.counts()["any"]


def check_recovered(path: Path, seen: Seen, context: str) -> int:
    """Reopen `path` on the real file system and check the promises; return how many
    acknowledged appends had to be there (and were)."""
    with SegmentStore(path) as store:
        a = [r.seq for r in store.read("a")]
        assert a == list(range(1, len(a) + 1)), f"{context}: gaps or duplicates: {a}"
        assert len(a) >= seen.durable.get("a", 0), f"{context}: lost a durable append ({len(a)} < {seen.durable})"
        assert len(a) <= seen.attempted.get("a", 0), f"{context}: records that were never written"
        for stream in ("a", "s"):
            for r in store.read(stream):
                assert r.payload == body(stream, r.seq), f"{context}: {stream} #{r.seq} damaged"
        snap = store.latest("s")
        assert (0 if snap is None else snap.seq) >= seen.durable.get("s", 0), f"{context}: lost a durable snapshot"
        assert store.last_seq("s") <= seen.attempted.get("s", 0), context
        report = store.verify()
        assert report.ok, f"{context}: verify after recovery: {report.damaged}"
        assert store.append("a", body("a", len(a) + 1)) == len(a) + 1, context
    return seen.durable.get("a", 0) + seen.durable.get("s", 0)
