"""Hostile and careless files in the store directory (issue 14, part "files").

A lost first page of the active segment, symlinks and a FIFO in place of store files,
a deleted LOCK file under a live writer, a world-writable store directory: each is done
for real to real files, and the store must refuse with a typed error, lose nothing
acknowledged and write nothing outside its directory.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _segfile import index_files, segment_files

from pyactors import (
    CorruptSegmentError,
    MsgpackSerializer,
    SegmentStore,
    StoreIOError,
)

CHILD = Path(__file__).with_name("_crash_child.py")
HEADER = 32  # SEGMENT_HEADER_LEN
KEY = b"a secret key of 32 bytes, really"
TINY_SEGMENT = 4096
VICTIM = b"precious bytes outside the store, never to be touched\n" * 20


def _files(path: Path) -> dict[str, bytes]:
    """Every file of the store but LOCK, by name."""
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != "LOCK"}


def _zero_active_header(path: Path, records: int = 300) -> Path:
    """Append `records` acknowledged records, close, zero the active segment's header."""
    with SegmentStore(path) as s:
        for i in range(records):
            assert s.append("s", b"record %d" % i) == i + 1
    active = segment_files(path)[-1]
    with active.open("r+b") as f:
        f.write(bytes(HEADER))
    return active


# -- 1. a zeroed active-segment header ----------------------------------------------------


def test_a_zeroed_active_header_with_records_after_it_raises_and_changes_nothing(
    tmp_path: Path, store_path: Path
) -> None:
    # A header-only file of zeros is what a torn creation can leave: restarted, not damage.
    torn = tmp_path / "torn"
    SegmentStore(torn).close()
    segment_files(torn)[-1].write_bytes(bytes(HEADER))
    with SegmentStore(torn) as s:
        assert s.open_report.dropped_records == 0
        assert s.append("s", b"first") == 1

    active = _zero_active_header(store_path)
    before = _files(store_path)
    for options in ({}, {"read_only": True}):
        with pytest.raises(CorruptSegmentError) as excinfo:
            SegmentStore(store_path, **options)
        assert excinfo.value.path == str(active)
        assert excinfo.value.offset == 0
        assert "magic" in excinfo.value.reason
        assert _files(store_path) == before, "a refused open changed nothing on disk"


@pytest.mark.parametrize("read_only", [False, True])
def test_a_tolerant_open_keeps_every_record_after_a_zeroed_active_header(store_path: Path, *, read_only: bool) -> None:
    active = _zero_active_header(store_path)
    with SegmentStore(store_path, tolerant=True, read_only=read_only) as s:
        assert [r.payload for r in s.read("s")] == [b"record %d" % i for i in range(300)]
        report = s.open_report
        assert report.dropped_records == 0
        assert report.truncated_bytes == 0
        assert [(d.path, d.offset, d.length) for d in report.damaged] == [(str(active), 0, HEADER)]
        if not read_only:
            assert s.append("s", b"after") == 301
    if not read_only:
        # The header was written anew: a strict open reads every record again.
        with SegmentStore(store_path) as s:
            assert s.open_report.damaged == ()
            assert s.last_seq("s") == 301
            assert s.verify().ok


def test_verify_reports_the_zeroed_header_where_the_open_does(store_path: Path) -> None:
    active = _zero_active_header(store_path)
    with pytest.raises(CorruptSegmentError) as excinfo:
        SegmentStore(store_path, read_only=True)
    with SegmentStore(store_path, read_only=True, tolerant=True) as view:
        report = view.verify()
    assert [(d.path, d.offset) for d in report.damaged] == [(str(active), 0)]
    assert (excinfo.value.path, excinfo.value.offset) == (str(active), 0)
    assert excinfo.value.reason in report.damaged[0].reason
    assert report.records == 300, "the records after a damaged header are checked too"


# -- 2. symlinks and other non-regular files in place of store files ------------------------

OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "auth_key": {"auth_key": KEY},
    "msgpack": {"serializer": MsgpackSerializer()},
}
MODES: dict[str, dict[str, Any]] = {
    "writer": {},
    "tolerant writer": {"tolerant": True},
    "read-only": {"read_only": True},
}


def _rolled_store(path: Path, options: dict[str, Any]) -> None:
    with SegmentStore(path, segment_bytes=TINY_SEGMENT, **options) as s:
        for i in range(200):
            s.append(f"s{i % 3}", b"payload %d " % i * 8)
    assert len(segment_files(path)) >= 3


def _target(path: Path, which: str) -> Path:
    if which == "active segment":
        return segment_files(path)[-1]
    if which == "sealed segment":
        return segment_files(path)[0]
    return path / which


# A read-only view takes no lock and never opens LOCK.
CASES = [
    (which, option, mode)
    for which in ("active segment", "sealed segment", "MANIFEST", "LOCK")
    for option in OPTIONS
    for mode in MODES
    if (which, mode) != ("LOCK", "read-only")
]


@pytest.mark.parametrize(("which", "option", "mode"), CASES)
def test_a_symlink_in_place_of_a_store_file_is_refused_and_its_target_untouched(
    tmp_path: Path, store_path: Path, which: str, option: str, mode: str
) -> None:
    options = OPTIONS[option]
    _rolled_store(store_path, options)
    link = _target(store_path, which)
    # The victim holds what the file held (an attacker moved it out and linked to it), so
    # that following the link would succeed silently, and then write to it.
    victim = tmp_path / "victim"
    victim.write_bytes(link.read_bytes() if link.exists() else VICTIM)
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(StoreIOError) as excinfo:
        SegmentStore(store_path, **options, **MODES[mode])
    assert excinfo.value.filename == str(link)
    assert "symbolic link" in str(excinfo.value)
    assert victim.read_bytes() == before
    assert link.is_symlink()


def test_a_symlinked_index_file_is_rebuilt_in_its_place_and_its_target_untouched(
    tmp_path: Path, store_path: Path
) -> None:
    _rolled_store(store_path, {})
    link = index_files(store_path)[0]
    victim = tmp_path / "victim"
    victim.write_bytes(link.read_bytes())
    link.unlink()
    link.symlink_to(victim)
    with SegmentStore(store_path) as s:
        assert str(link) in s.open_report.rebuilt_indexes
        assert s.last_seq("s0") == 67
    assert victim.read_bytes() == link.read_bytes()
    assert not link.is_symlink(), "the link was replaced by a regular index file, never written through"


def test_a_fifo_in_place_of_the_active_segment_is_refused_without_hanging(store_path: Path) -> None:
    _rolled_store(store_path, {})
    active = segment_files(store_path)[-1]
    active.unlink()
    os.mkfifo(active)
    # In a child: an open that blocks on the FIFO would hang the test run, not fail it.
    script = (
        "import sys\n"
        "from pyactors import SegmentStore, StoreIOError\n"
        "for ro in (True, False):\n"
        "    try:\n"
        "        SegmentStore(sys.argv[1], read_only=ro)\n"
        "    except StoreIOError as e:\n"
        "        print(type(e).__name__, 'regular file' in str(e))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(store_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == ["StoreIOError True", "StoreIOError True", ""]
    assert stat.S_ISFIFO(os.lstat(active).st_mode)


# -- 3. a deleted LOCK file under a live writer -----------------------------------------------


def _try_open_in_child(path: Path) -> str:
    done = subprocess.run([sys.executable, str(CHILD), "try", str(path)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


def test_a_deleted_lock_file_lets_no_second_writer_in(store_path: Path) -> None:
    with SegmentStore(store_path) as first:
        assert first.append("a", b"1") == 1
        (store_path / "LOCK").unlink()
        assert _try_open_in_child(store_path) == "StoreLockedError"
        assert _try_open_in_child(store_path) == "StoreLockedError", "the child's LOCK file changed nothing"
        with SegmentStore(store_path, read_only=True) as view:
            assert view.last_seq("a") == 1
        assert first.append("a", b"2") == 2
    assert _try_open_in_child(store_path) == "opened"
    with SegmentStore(store_path) as again:
        assert [r.payload for r in again.read("a")] == [b"1", b"2"]


# -- 4. the store directory's mode --------------------------------------------------------------


def test_a_writer_open_tightens_a_world_writable_store_directory_to_0700(store_path: Path) -> None:
    store_path.mkdir()
    store_path.chmod(0o777)
    with SegmentStore(store_path) as s:
        s.append("a", b"x")
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o700
    store_path.chmod(0o755)
    with SegmentStore(store_path, read_only=True):
        pass
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o755, "a read-only view changes nothing"
    with SegmentStore(store_path) as s:
        assert s.last_seq("a") == 1
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o700
