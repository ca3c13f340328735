"""The writer lock across processes, with real child processes and SIGKILL (crash safety: tests/crash/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyactors import SegmentStore, StoreError, StoreLockedError

CHILD = Path(__file__).with_name("_crash_child.py")


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _try_open_in_child(path: Path) -> str:
    done = subprocess.run([sys.executable, str(CHILD), "try", str(path)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


def test_a_second_process_gets_store_locked_error_until_the_holder_is_sigkilled(store_path: Path) -> None:
    with _spawn("hold", str(store_path)) as holder:
        assert holder.stdout is not None
        assert holder.stderr is not None
        try:
            line = holder.stdout.readline()
            assert line == b"locked\n", line or holder.stderr.read().decode()
            with pytest.raises(StoreLockedError) as excinfo:
                SegmentStore(store_path)
            assert isinstance(excinfo.value, StoreError)
            # It names the holder, as the holder wrote its id into LOCK.
            assert f"locked by another writer (process {holder.pid}, as its LOCK file says)" in str(excinfo.value)
            assert _try_open_in_child(store_path) == "StoreLockedError"
        finally:
            if holder.returncode is None:
                os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    with SegmentStore(store_path) as store:
        assert [r.payload for r in store.read("holder")] == [b"written by the holder"]
        assert store.append("holder", b"after the holder died") == 2


def test_a_child_process_gets_store_locked_error_while_this_process_holds_the_store(store_path: Path) -> None:
    with SegmentStore(store_path) as store:
        store.append("a", b"x")
        assert _try_open_in_child(store_path) == "StoreLockedError"
    assert _try_open_in_child(store_path) == "opened"


def test_a_second_open_in_the_same_process_gets_store_locked_error_and_keeps_the_first_lock(
    store_path: Path,
) -> None:
    with SegmentStore(store_path) as first:
        first.append("a", b"1")
        for _ in range(2):
            with pytest.raises(StoreLockedError):
                SegmentStore(store_path)
        # The refused opens released nothing: the first store still holds the lock and works.
        assert _try_open_in_child(store_path) == "StoreLockedError"
        assert first.append("a", b"2") == 2
    with SegmentStore(store_path) as again:
        assert [r.payload for r in again.read("a")] == [b"1", b"2"]


_OLD_WRITER = """
import fcntl, os, sys
lock = os.open(os.path.join(sys.argv[1], "LOCK"), os.O_RDWR | os.O_CREAT, 0o600)
os.write(lock, b"not a process id")
fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_holder_that_names_no_process_in_lock_is_still_refused_plainly(store_path: Path) -> None:
    # A writer of an earlier release flocks LOCK alone and writes nothing into it.
    SegmentStore(store_path).close()
    (store_path / "LOCK").write_bytes(b"")
    with subprocess.Popen(
        [sys.executable, "-c", _OLD_WRITER, str(store_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as old:
        assert old.stdout is not None
        assert old.stdin is not None
        try:
            assert old.stdout.readline() == b"locked\n"
            with pytest.raises(StoreLockedError) as excinfo:
                SegmentStore(store_path)
            assert str(excinfo.value).endswith("the store is locked by another writer")
        finally:
            old.stdin.close()
            old.wait(timeout=30)
    with SegmentStore(store_path) as store:
        assert store.append("a", b"x") == 1
    assert (store_path / "LOCK").read_text() == f"{os.getpid()}\n"
