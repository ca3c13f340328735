"""I/O errors and a full disk: through the fault layer, and on a real tiny tmpfs.

An append that fails raises `StoreIOError` (an `OSError` with the errno); nothing
acknowledged is lost; the store stays readable and appends work again once the cause
is gone; a snapshot that cannot be written leaves the previous one valid.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pykka
import pytest
from _actors import Recorder
from _faults import FaultFs, Seen, body, check_recovered, close_after_fault, count_ops, faulty_store, workload
from _native_guard import skip_for_environment

from pyactors import Kind, SegmentStore, StoreIOError

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

_FULL_DISK = Path(__file__).with_name("_full_disk.py")


def _full_disk(tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `_full_disk.py` on a 4 MiB tmpfs in a mount namespace of its own.

    A user namespace maps the child to root, so no root is needed here, and the mount
    goes with the child. Skips (for the machine) only if the mount itself is refused:
    the child imports pyactors after mounting, so a broken build fails instead.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        skip_for_environment("no unshare(1) to mount a tmpfs with")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", sys.executable, str(_FULL_DISK), str(mnt)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    if "mounted" not in run.stdout.split():
        skip_for_environment(f"cannot mount a tmpfs in a namespace here: {run.stderr.strip()}")
    return run


def test_a_real_full_disk_raises_enospc_keeps_everything_acknowledged_and_recovers(tmp_path: Path) -> None:
    run = _full_disk(tmp_path)
    assert run.returncode == 0, f"the full-disk check failed:\n{run.stdout}{run.stderr}"
    assert run.stdout.split() == ["mounted", "checked"]


def test_a_broken_build_fails_the_full_disk_test_rather_than_skipping_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "pyactors"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('pyactors._core is missing')\n")
    run = _full_disk(tmp_path, env={**os.environ, "PYTHONPATH": str(broken.parent)})
    assert run.returncode != 0
    assert "pyactors._core is missing" in run.stderr
