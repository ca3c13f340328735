"""I/O errors and a full disk: through the fault layer, and on a real tiny tmpfs.

An append that fails raises `StoreIOError` (an `OSError` with the errno); nothing
acknowledged is lost; the store stays readable and appends work again once the cause
is gone; a snapshot that cannot be written leaves the previous one valid.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from typing import TYPE_CHECKING

import pykka
import pytest
from _actors import Recorder
from _faults import FaultFs, Seen, body, check_recovered, close_after_fault, count_ops, faulty_store, workload
from _native_guard import skip_for_environment

from pyactors import Kind, SegmentStore, StoreIOError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: Fault points per policy of the enumeration below (the Rust test
#: `an_error_at_every_operation_loses_nothing_acknowledged_and_the_store_stays_usable`
#: takes every one).
POINTS = 40


def _appended(store: SegmentStore, n: int) -> None:
    for seq in range(1, n + 1):
        assert store.append("a", body("a", seq)) == seq


@pytest.mark.parametrize(
    ("code", "short"), [(errno.ENOSPC, False), (errno.EIO, False), (errno.ENOSPC, True)], ids=["enospc", "eio", "short"]
)
def test_an_append_whose_write_fails_raises_store_io_error_and_loses_nothing(
    store_path: Path, code: int, short: bool
) -> None:
    fault = FaultFs()
    store = faulty_store(store_path, fault)
    try:
        _appended(store, 3)
        fault.fail_after("write", 1, code, short=short)
        with pytest.raises(StoreIOError) as caught:
            store.append("a", b"refused")
        assert isinstance(caught.value, OSError)
        assert caught.value.errno == code
        assert [r.seq for r in store.read("a")] == [1, 2, 3], "still readable"
        assert store.verify().ok, "the partial write was cut back"
        assert store.append("a", body("a", 4)) == 4, "the next append works and continues the sequence"
        assert fault.counts()["injected"] == 1
    finally:
        store.close()
    with SegmentStore(store_path) as again:
        assert [r.payload for r in again.read("a")] == [body("a", s) for s in range(1, 5)]
        assert again.open_report.truncated_bytes == 0


def test_a_full_disk_refuses_appends_until_space_is_freed_and_loses_nothing(store_path: Path) -> None:
    fault = FaultFs()
    store = faulty_store(store_path, fault, segment_bytes=4096)
    try:
        fault.set_space(20_000)
        acked = 0
        with pytest.raises(StoreIOError) as caught:
            for seq in range(1, 1000):
                store.append("a", body("a", seq))
                acked = seq
        assert caught.value.errno == errno.ENOSPC
        assert acked > 10, "the segments rolled before the disk filled"
        with pytest.raises(StoreIOError):
            store.append("a", body("a", acked + 1))
        assert [r.seq for r in store.read("a")] == list(range(1, acked + 1))
        assert store.verify().ok
        fault.set_space(None)
        assert store.append("a", body("a", acked + 1)) == acked + 1
    finally:
        store.close()
    with SegmentStore(store_path) as again:
        assert [r.payload for r in again.read("a")] == [body("a", s) for s in range(1, acked + 2)]
        assert again.verify().ok


def test_a_failed_fdatasync_refuses_later_appends_until_reopen_and_loses_nothing_acknowledged(store_path: Path) -> None:
    fault = FaultFs()
    store = faulty_store(store_path, fault, durability="sync")
    try:
        _appended(store, 5)
        fault.fail_after("fdatasync", 1, errno.EIO)
        with pytest.raises(StoreIOError) as caught:
            store.append("a", body("a", 6))
        assert caught.value.errno == errno.EIO
        with pytest.raises(StoreIOError, match="reopen the store"):
            store.append("a", body("a", 7))
        assert len(list(store.read("a"))) >= 5
    finally:
        close_after_fault(store)
    with SegmentStore(store_path, durability="sync") as again:
        seqs = [r.seq for r in again.read("a")]
        # The append whose fdatasync failed was written: it may be there, never a gap.
        assert seqs in ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6])
        assert again.verify().ok
        assert again.append("a", b"after reopen") == len(seqs) + 1


@pytest.mark.parametrize("durability", ["sync", "process"])
def test_an_error_at_each_write_fdatasync_rename_and_dirsync_of_a_workload_loses_nothing_acknowledged(
    tmp_path: Path, durability: str
) -> None:
    total = count_ops(tmp_path, durability)
    step = max(1, total // POINTS)
    points = checked = 0
    for k in range(1, total + 1, step):
        code = (errno.EIO, errno.ENOSPC)[k % 2]
        path = tmp_path / f"fail-{k}"
        fault = FaultFs()
        fault.fail_after("any", k, code, short=k % 3 == 0)
        seen = Seen()
        with contextlib.suppress(StoreIOError):  # a failed roll is retried, not raised
            workload(path, fault, durability, seen)
        assert fault.counts()["injected"] == 1
        seen.durable = dict(seen.acked)  # no power loss: every acknowledged append stays
        checked += check_recovered(path, seen, f"{durability}: errno {code} at op {k}/{total}")
        points += 1
    assert points >= POINTS
    print(f"{durability}: {points} fault points, {checked} acknowledged appends checked")


def _snapshot_written(store: SegmentStore, pid: str) -> bool:
    snap = store.latest(pid, Kind.SNAPSHOT)
    return snap is not None and snap.seq == store.last_seq(pid)


def _snapshot_state(store: SegmentStore, pid: str) -> object:
    snap = store.latest(pid, Kind.SNAPSHOT)
    assert snap is not None
    return store.serializer.loads(snap.payload[8:])  # after the 8-byte watermark


def test_an_actor_snapshot_that_cannot_be_written_leaves_the_previous_one_valid_and_the_actor_running(
    store_path: Path,
) -> None:
    fault = FaultFs()
    store = faulty_store(store_path, fault)
    try:
        ref = Recorder.start(persistence_id="r", store=store)
        ref.tell("m1")
        ref.tell("m2")
        assert ref.ask("get") == ["m1", "m2"]
        deadline = time.monotonic() + 10
        while not _snapshot_written(store, "r") and time.monotonic() < deadline:
            time.sleep(0.001)
        assert _snapshot_written(store, "r")
        # The 1st write journals m3, the 2nd is the snapshot after it: the disk is full.
        fault.fail_after("write", 2, errno.ENOSPC)
        ref.tell("m3")
        deadline = time.monotonic() + 10
        while fault.counts()["injected"] == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert fault.counts()["injected"] == 1, "the snapshot after m3 met the full disk"
        assert _snapshot_state(store, "r") == ["m1", "m2"], "the previous snapshot stays valid"
        assert ref.ask("get") == ["m1", "m2", "m3"], "the actor keeps running"
        deadline = time.monotonic() + 10
        while not _snapshot_written(store, "r") and time.monotonic() < deadline:
            time.sleep(0.001)
        assert _snapshot_state(store, "r") == ["m1", "m2", "m3"], "the next message retried the snapshot"
        ref.stop()
    finally:
        pykka.ActorRegistry.stop_all()
        store.close()
    with SegmentStore(store_path) as again:
        ref = Recorder.start(persistence_id="r", store=again)
        try:
            assert ref.ask("get") == ["m1", "m2", "m3"], "restored, with m3 replayed from the journal"
        finally:
            pykka.ActorRegistry.stop_all()


# -- a real small file system ----------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (needs root); always unmounted."""
    if os.geteuid() != 0:
        skip_for_environment("mounting a 4 MiB tmpfs needs root; this test runs only as root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, check=False
    )
    if done.returncode != 0:
        skip_for_environment(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mnt)], check=True)
            pytest.fail("the tmpfs was still busy after the test (files left open); unmounted lazily")


def test_a_real_full_disk_raises_enospc_keeps_everything_acknowledged_and_recovers(tiny_tmpfs: Path) -> None:
    ballast = tiny_tmpfs / "ballast"
    ballast.write_bytes(b"\0" * (1024 * 1024))  # freed later, to make room
    path = tiny_tmpfs / "store"
    payloads: list[bytes] = []
    with SegmentStore(path, segment_bytes=256 * 1024, compress_min_bytes=1 << 30) as store:
        snap = os.urandom(64 * 1024)
        store.append("s", snap, Kind.SNAPSHOT)
        with pytest.raises(StoreIOError) as caught:
            for _ in range(1000):
                p = os.urandom(16 * 1024)
                store.append("a", p)
                payloads.append(p)
        assert caught.value.errno == errno.ENOSPC
        assert len(payloads) > 50
        with pytest.raises(StoreIOError):
            store.append("s", os.urandom(256 * 1024), Kind.SNAPSHOT)
        latest = store.latest("s")
        assert latest is not None
        assert latest.payload == snap, "the snapshot that could not be written left the previous one valid"
        assert [r.payload for r in store.read("a")] == payloads, "readable, nothing acknowledged lost"
        assert store.verify().ok
        ballast.unlink()
        more = os.urandom(16 * 1024)
        store.append("a", more)
        payloads.append(more)
    with SegmentStore(path) as again:
        assert [r.payload for r in again.read("a")] == payloads
        latest = again.latest("s")
        assert latest is not None
        assert latest.payload == snap
        assert again.verify().ok
