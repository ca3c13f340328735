"""Child process of the real full-disk test (run as a script, not collected).

Usage (in a mount namespace of its own, e.g. under ``unshare --user --map-root-user
--mount``):
    python _full_disk.py DIR
        Mount a 4 MiB tmpfs on DIR and print ``mounted``, or exit with status 3 if it
        cannot (the machine's limit, not pyactors'). Then fill it through a store and
        check: the append that finds the disk full raises `StoreIOError` (ENOSPC),
        nothing acknowledged is lost, a snapshot that cannot be written leaves the
        previous one valid, and appends work again once there is room. Prints
        ``checked``; any failure exits non-zero with its traceback.

pyactors is imported only after the mount: whatever it does wrong fails the test,
which only a failed mount may skip.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

MOUNT_FAILED = 3


def fill_and_check(mnt: Path) -> None:
    """The scenario; raises AssertionError (or the store's error) on any failure."""
    from pyactors import Kind, SegmentStore, StoreIOError

    ballast = mnt / "ballast"
    ballast.write_bytes(b"\0" * (1024 * 1024))  # freed later, to make room
    path = mnt / "store"
    payloads: list[bytes] = []
    with SegmentStore(path, segment_bytes=256 * 1024, compress_min_bytes=1 << 30) as store:
        snap = os.urandom(64 * 1024)
        store.append("s", snap, Kind.SNAPSHOT)
        try:
            for _ in range(1000):
                p = os.urandom(16 * 1024)
                store.append("a", p)
                payloads.append(p)
        except StoreIOError as exc:
            assert exc.errno == errno.ENOSPC, exc
        else:
            raise AssertionError("1000 appends of 16 KiB fitted in a 4 MiB tmpfs")
        assert len(payloads) > 50, len(payloads)
        try:
            store.append("s", os.urandom(256 * 1024), Kind.SNAPSHOT)
        except StoreIOError:
            pass
        else:
            raise AssertionError("a 256 KiB snapshot fitted in a full disk")
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


def main(mnt: Path) -> None:
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        sys.stderr.write(mounted.stderr)
        sys.exit(MOUNT_FAILED)
    print("mounted", flush=True)
    fill_and_check(mnt)  # the mount goes with this process's namespace
    print("checked", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
