"""Simulated power loss (the fault layer's model): what each durability policy keeps.

The fault layer rewrites the store's files to what a machine would find after the
power came back: every file as of its last completed fdatasync, every name as of its
directory's last fsync (see `rust_core/src/fault.rs`). The store is then reopened on the
real file system and checked by `_faults.check_recovered`.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import pytest
from _faults import FaultFs, Seen, body, check_recovered, close_after_fault, count_ops, faulty_store, workload
from _util import DURABILITIES

from pyactors import SegmentStore, StoreIOError

if TYPE_CHECKING:
    from pathlib import Path

#: Cut points per policy (spread evenly over the workload's operations; the Rust test
#: `power_loss_at_every_operation_keeps_what_each_policy_promises` takes every one).
CUTS = 40


@pytest.mark.parametrize("durability", DURABILITIES)
def test_power_loss_at_cut_points_through_rolls_prunes_and_compactions_keeps_what_the_policy_promises(
    tmp_path: Path, durability: str
) -> None:
    total = count_ops(tmp_path, durability)
    assert total > 100, f"the workload rolls, prunes and compacts: {total} ops"
    step = max(1, total // CUTS)
    cuts = checked = 0
    for k in range(1, total + 1, step):
        path = tmp_path / f"cut-{k}"
        fault = FaultFs()
        fault.power_loss_after("any", k)
        seen = Seen()
        with contextlib.suppress(StoreIOError):
            workload(path, fault, durability, seen)
        if not fault.powered_off:  # the group flusher's timing moves the count a little
            fault.power_loss()
        checked += check_recovered(path, seen, f"{durability} power loss at op {k}/{total}")
        cuts += 1
    assert cuts >= CUTS
    if durability == "sync":
        assert checked > 0, "some acknowledged appends had to survive"
    print(f"{durability}: {cuts} power-loss cut points, {checked} acknowledged appends checked")


def test_group_commit_makes_an_append_survive_power_loss_without_flush(store_path: Path) -> None:
    fault = FaultFs()
    store = faulty_store(store_path, fault, durability="group", group_commit_ms=2.0)
    try:
        syncs = fault.counts()["fdatasync"]
        assert store.append("a", body("a", 1)) == 1
        deadline = time.monotonic() + 10
        while fault.counts()["fdatasync"] == syncs and time.monotonic() < deadline:
            time.sleep(0.001)
        assert fault.counts()["fdatasync"] > syncs, "the background flusher never synced"
        fault.power_loss()
    finally:
        close_after_fault(store)
    with SegmentStore(store_path) as store:
        assert [r.payload for r in store.read("a")] == [body("a", 1)]


def test_process_policy_loses_unsynced_appends_on_power_loss_but_opens_clean(store_path: Path) -> None:
    fault = FaultFs()
    store = faulty_store(store_path, fault, durability="process")
    try:
        for seq in range(1, 4):
            store.append("a", body("a", seq))
        store.flush()
        for seq in range(4, 10):
            store.append("a", body("a", seq))
        fault.power_loss()
        with pytest.raises(StoreIOError):
            store.append("a", b"after the power loss")
    finally:
        close_after_fault(store)
    with SegmentStore(store_path) as store:
        assert [r.seq for r in store.read("a")] == [1, 2, 3], "what flush() synced, and nothing after"
        assert store.verify().ok


def test_a_new_store_directory_survives_power_loss_once_a_sync_append_returned(tmp_path: Path) -> None:
    # Opening a new store fsyncs its parent directory: the store survives.
    fault = FaultFs()
    store = faulty_store(tmp_path / "store", fault, durability="sync")
    store.append("a", body("a", 1))
    fault.power_loss()
    close_after_fault(store)
    with SegmentStore(tmp_path / "store") as again:
        assert [r.seq for r in again.read("a")] == [1]
