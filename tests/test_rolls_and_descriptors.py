"""Descriptors stay bounded however many segments a store has, and a roll cannot fail silently.

A store keeps open the active segment and at most `OPEN_SEALED` sealed ones (the
least recently read closed first), so hundreds of segments work under a low
``RLIMIT_NOFILE``. A roll that fails is the error of the next append, which writes
nothing: the active segment stays within ``segment_bytes`` plus one batch, and every
append is refused until the cause is gone (the fault layer, and a real read-only
directory).

The subprocess checks run this file as a script: ``python test_rolls_and_descriptors.py
descriptors DIR`` or ``read-only DIR [UID]`` print ``checked``, or fail with a traceback.
"""

from __future__ import annotations

import errno
import os
import pwd
import resource
import subprocess
import sys
from pathlib import Path

from _faults import FaultFs, close_after_fault, faulty_store

from pyactors import Kind, SegmentStore, StoreIOError

#: Sealed segment files a store keeps open (`OPEN_SEALED_SEGMENTS` in rust_core/src/log.rs).
OPEN_SEALED = 32
#: The descriptor limit of the subprocess: the default 1,024 made a store fail past ~1,017 segments.
FD_LIMIT = 64
SEGMENT_BYTES = 4096
#: Bytes a record of `_payload` takes in a segment, at most (header, stream id, payload).
FRAME = 64 + 8 + 200


def _payload(stream: str, seq: int) -> bytes:
    """200 bytes known from their place (appended raw: about 17 records per segment)."""
    return (f"{stream}#{seq}:".encode() * 30)[:200]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _segment_sizes(path: Path) -> list[int]:
    return [p.stat().st_size for p in sorted(path.glob("*.seg"))]


def _run_child(*args: str) -> None:
    run = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, f"the child failed:\n{run.stdout}{run.stderr}"
    assert run.stdout.split() == ["checked"], run.stdout


# -- descriptors --------------------------------------------------------------------


def _check_descriptors(path: Path) -> None:
    """Several hundred segments under ``RLIMIT_NOFILE`` = `FD_LIMIT`, in this process."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))
    baseline = _open_fds()
    # The active segment, LOCK, a file a roll writes, and the listing of /proc/self/fd.
    most = baseline + OPEN_SEALED + 4
    written: dict[str, list[bytes]] = {}
    with SegmentStore(path, segment_bytes=SEGMENT_BYTES) as store:
        for i in range(5400):
            stream = f"s{i // 40}"  # each stream spans about three segments
            payload = _payload(stream, len(written.get(stream, [])) + 1)
            written.setdefault(stream, []).append(payload)
            assert store.append(stream, payload, compress=False) == len(written[stream]), i
            if i % 100 == 0:
                assert _open_fds() <= most, f"after {i} appends: {_open_fds()} descriptors"
        sizes = _segment_sizes(path)
        assert len(sizes) >= 300, f"only {len(sizes)} segments: rolls failed"
        assert max(sizes) <= SEGMENT_BYTES + FRAME, max(sizes)
        # Every stream read back: sealed segments opened, evicted and opened again.
        for _ in range(2):
            for stream, payloads in written.items():
                assert [r.payload for r in store.read(stream)] == payloads, stream
                latest = store.latest(stream, Kind.MESSAGE)
                assert latest is not None
                assert latest.payload == payloads[-1]
                assert _open_fds() <= most, f"reading {stream}: {_open_fds()} descriptors"
        assert store.verify().ok
    assert _open_fds() == baseline, "close released every descriptor"
    with SegmentStore(path, segment_bytes=SEGMENT_BYTES) as store:
        assert store.open_report.segments == len(sizes)
        assert store.streams() == sorted(written)
        for stream, payloads in written.items():
            assert [r.payload for r in store.read(stream)] == payloads, stream
        # A read-only view beside the writer, under the same limit: it holds what the
        # limit leaves it room for, and its reads close its own files when they must.
        with SegmentStore(path, read_only=True) as view:
            for stream, payloads in written.items():
                assert [r.payload for r in view.read(stream)] == payloads, stream
            assert view.verify().ok
            assert [r.payload for r in store.read("s0")] == written["s0"]  # the writer still reads
        assert store.append("s0", b"after reopen") == len(written["s0"]) + 1
    print("checked")


def test_hundreds_of_segments_under_a_low_descriptor_limit_keep_descriptors_bounded_and_lose_nothing(
    tmp_path: Path,
) -> None:
    _run_child("descriptors", str(tmp_path / "store"))


# -- a roll that fails ----------------------------------------------------------------


def test_a_roll_that_keeps_failing_fails_every_append_past_the_limit_and_appends_resume_once_it_is_cleared(
    store_path: Path,
) -> None:
    fault = FaultFs()
    store = faulty_store(store_path, fault, segment_bytes=SEGMENT_BYTES)
    acked: list[bytes] = []
    try:
        for k in range(1, 101):  # every rename of the next 100 fails: no roll can finish
            fault.fail_after("rename", k, errno.EIO)
        for _ in range(100):
            payload = _payload("a", len(acked) + 1)
            try:
                assert store.append("a", payload, compress=False) == len(acked) + 1
            except StoreIOError as exc:
                assert exc.errno == errno.EIO, exc
                break
            acked.append(payload)
        else:
            raise AssertionError("100 appends of 200 bytes fitted in a 4 KiB segment")
        # The first refusal is the append after the one that filled the segment.
        (size,) = _segment_sizes(store_path)
        assert SEGMENT_BYTES <= size <= SEGMENT_BYTES + FRAME
        assert size - FRAME < SEGMENT_BYTES, "the append before the refusal was the first past the limit"
        for _ in range(10):  # a persistent failure is reported by every append, which writes nothing
            try:
                store.append("a", b"refused", compress=False)
            except StoreIOError as exc:
                assert exc.errno == errno.EIO, exc
            else:
                raise AssertionError("an append past the limit succeeded while no roll could")
            assert _segment_sizes(store_path) == [size]
        assert [r.payload for r in store.read("a")] == acked
        fault.clear()
        for _ in range(30):
            payload = _payload("a", len(acked) + 1)
            assert store.append("a", payload, compress=False) == len(acked) + 1
            acked.append(payload)
        assert len(_segment_sizes(store_path)) >= 2, "the roll happened once it could"
        assert fault.counts()["injected"] == 12  # the roll after the write that filled it, then 11 appends
    finally:
        close_after_fault(store)
    with SegmentStore(store_path) as again:
        assert [r.payload for r in again.read("a")] == acked
        assert again.verify().ok


# -- a real read-only directory ---------------------------------------------------------


def _check_read_only_dir(parent: Path, uid: int | None) -> None:
    """In `parent` (owned by `uid`, the user this process becomes if given): the store
    directory made read-only (mode 0500) while open."""
    os.chdir(parent)  # the path above may be closed to `uid`: everything is relative from here
    if uid is not None:
        os.setgroups([])
        os.setgid(pwd.getpwuid(uid).pw_gid)
        os.setuid(uid)
    acked: list[bytes] = []
    store = SegmentStore("store", segment_bytes=SEGMENT_BYTES)
    try:
        for _ in range(40):  # rolls twice while the directory is writable
            payload = _payload("a", len(acked) + 1)
            assert store.append("a", payload, compress=False) == len(acked) + 1
            acked.append(payload)
        os.chmod("store", 0o500)
        refused = 0
        for i in range(60):
            payload = _payload("a", len(acked) + 1)
            try:
                assert store.append("a", payload, compress=False) == len(acked) + 1
            except StoreIOError as exc:
                assert exc.errno == errno.EACCES, exc
                refused += 1
            else:
                assert refused == 0, f"append {i} succeeded after a refusal, the directory still read-only"
                acked.append(payload)
        assert refused >= 60 - SEGMENT_BYTES // 200, f"only {refused} of 60 appends refused"
        assert max(_segment_sizes(Path("store"))) <= SEGMENT_BYTES + FRAME
        os.chmod("store", 0o700)
        for _ in range(20):
            payload = _payload("a", len(acked) + 1)
            assert store.append("a", payload, compress=False) == len(acked) + 1
            acked.append(payload)
    finally:
        os.chmod("store", 0o700)
        store.close()
    with SegmentStore("store") as again:
        assert [r.payload for r in again.read("a")] == acked
        assert again.verify().ok
    print("checked")


def test_a_read_only_directory_fails_appends_past_the_limit_with_eacces_and_loses_nothing(tmp_path: Path) -> None:
    """Root ignores directory modes: as root, the child drops to ``nobody`` first."""
    parent = tmp_path / "ro"
    parent.mkdir()
    args = ["read-only", str(parent)]
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(parent, nobody.pw_uid, nobody.pw_gid)
        args.append(str(nobody.pw_uid))
    _run_child(*args)


if __name__ == "__main__":
    if sys.argv[1] == "descriptors":
        _check_descriptors(Path(sys.argv[2]))
    else:
        _check_read_only_dir(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
