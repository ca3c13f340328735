"""Damaged files: torn tails, flipped bytes, cut segments, foreign versions, lost indexes."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _segfile import frames, index_files, segment_files
from _util import SMALL_SEGMENT, assert_contents, fill_rolled, random_payload

from pyactors import (
    CorruptSegmentError,
    Damage,
    FormatVersionError,
    Kind,
    SegmentStore,
    StoreError,
    _core,
)

if TYPE_CHECKING:
    from collections.abc import Callable


def _same(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _rolled(store_path: Path, records: int = 240) -> dict[str, list[bytes]]:
    """A closed store with several sealed segments; returns what it holds."""
    with SegmentStore(store_path, segment_bytes=SMALL_SEGMENT) as s:
        written = fill_rolled(s, records=records)
    assert len(segment_files(store_path)) >= 3
    return written


def _with_tail(store_path: Path) -> tuple[dict[str, list[bytes]], Path]:
    """A rolled store whose active segment ends with records of stream "t"; returns contents and active file."""
    rng = random.Random(99)
    with SegmentStore(store_path, segment_bytes=SMALL_SEGMENT) as s:
        written = fill_rolled(s, records=200)
        written["t"] = []
        for i in range(8):
            payload = random_payload(rng, 300) if i % 2 else b"tail record %d " % i * 30
            written["t"].append(payload)
            s.append("t", payload)
    active = segment_files(store_path)[-1]
    last = frames(active.read_bytes())[-1]
    assert (last.stream, last.seq, last.end) == ("t", 8, active.stat().st_size)
    return written, active


def _flip(path: Path, at: int, mask: int = 0x40) -> None:
    with path.open("r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ mask]))


# --- the active segment's tail ---------------------------------------------------------

TORN_CUTS = {
    "inside the crc": 2,
    "inside the length": 6,
    "after the length": 8,
    "inside the header": 33,
    "after the header": _core.RECORD_HEADER_LEN,
    "inside the stream id": _core.RECORD_HEADER_LEN + 1,
    "half the record": None,
    "one byte short": -1,
}


@pytest.mark.parametrize("cut", list(TORN_CUTS))
def test_torn_last_record_is_truncated_and_reported_and_appends_continue(
    store_path: Path, open_store: Callable[..., SegmentStore], cut: str
) -> None:
    written, active = _with_tail(store_path)
    last = frames(active.read_bytes())[-1]
    kept = TORN_CUTS[cut]
    kept = last.length // 2 if kept is None else kept % last.length
    os.truncate(active, last.pos + kept)

    s = open_store(segment_bytes=SMALL_SEGMENT)
    report = s.open_report
    assert report.truncated_bytes == kept
    assert report.dropped_records == 1
    assert len(report.damaged) == 1
    damage = report.damaged[0]
    assert isinstance(damage, Damage)
    assert _same(damage.path, active)
    assert (damage.offset, damage.length) == (last.pos, kept)
    assert damage.reason
    assert active.stat().st_size == last.pos
    written["t"].pop()
    assert_contents(s, written)
    assert s.append("t", b"written after recovery") == 8
    written["t"].append(b"written after recovery")
    s.close()

    s = open_store()
    assert (s.open_report.truncated_bytes, s.open_report.dropped_records, s.open_report.damaged) == (0, 0, ())
    assert_contents(s, written)
    assert s.verify().ok


def _garbage(name: str, active: Path) -> bytes:
    last = frames(active.read_bytes())[-1]
    if name == "random bytes":
        return random.Random(5).randbytes(100)
    if name == "zeros":
        return bytes(4096)
    if name == "ff bytes":
        return b"\xff" * 7
    if name == "a copy of the last record with a flipped payload byte":
        raw = bytearray(last.raw)
        raw[last.payload_pos - last.pos + 3] ^= 0x01
        return bytes(raw)
    raise AssertionError(name)


@pytest.mark.parametrize(
    "garbage", ["random bytes", "zeros", "ff bytes", "a copy of the last record with a flipped payload byte"]
)
def test_garbage_after_the_last_record_is_truncated_and_reported(
    store_path: Path, open_store: Callable[..., SegmentStore], garbage: str
) -> None:
    written, active = _with_tail(store_path)
    size = active.stat().st_size
    junk = _garbage(garbage, active)
    with active.open("ab") as f:
        f.write(junk)

    s = open_store(segment_bytes=SMALL_SEGMENT)
    report = s.open_report
    assert report.truncated_bytes == len(junk)
    assert report.dropped_records >= 1
    assert [(Path(d.path).name, d.offset, d.length) for d in report.damaged] == [(active.name, size, len(junk))]
    assert active.stat().st_size == size
    assert_contents(s, written)
    assert s.append("t", b"next") == 9
    written["t"].append(b"next")
    s.close()
    s = open_store()
    assert s.open_report.damaged == ()
    assert_contents(s, written)


def test_corrupt_last_record_is_truncated_and_reported(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    written, active = _with_tail(store_path)
    last = frames(active.read_bytes())[-1]
    _flip(active, last.payload_pos + 5)
    s = open_store()
    report = s.open_report
    assert (report.truncated_bytes, report.dropped_records) == (last.length, 1)
    assert [(Path(d.path).name, d.offset) for d in report.damaged] == [(active.name, last.pos)]
    written["t"].pop()
    assert_contents(s, written)


def test_flipped_byte_in_the_middle_of_the_active_segment_raises_and_truncates_nothing(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    """Valid records follow the damage, so it is not a torn tail: a strict open refuses."""
    _, active = _with_tail(store_path)
    in_active = frames(active.read_bytes())
    assert len(in_active) >= 5
    victim = in_active[-4]
    _flip(active, victim.payload_pos + 2)
    damaged = active.read_bytes()
    with pytest.raises(CorruptSegmentError) as excinfo:
        open_store()
    assert _same(excinfo.value.path, active)
    assert excinfo.value.offset == victim.pos
    assert active.read_bytes() == damaged


def test_active_segment_cut_inside_its_header_is_recovered(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    """A crash right after a roll can leave a new segment shorter than its header."""
    written = _rolled(store_path)
    segs = segment_files(store_path)
    active = segs[-1]
    # Drop the active segment's records from what the store must hold, then cut it.
    lost = frames(active.read_bytes())
    assert lost
    for f in reversed(lost):
        assert written[f.stream].pop() == f.payload
    os.truncate(active, _core.SEGMENT_HEADER_LEN // 2)
    s = open_store(segment_bytes=SMALL_SEGMENT)
    assert [Path(d.path).name for d in s.open_report.damaged] == [active.name]
    assert_contents(s, written)
    assert s.append("alpha", b"after") == len(written["alpha"]) + 1
    written["alpha"].append(b"after")
    s.close()
    s = open_store()
    assert_contents(s, written)
    assert s.verify().ok


# --- sealed segments -------------------------------------------------------------------

FLIP_AT = {
    "crc field": lambda f: f.pos + 1,
    "seq field": lambda f: f.pos + 16,
    "stream id": lambda f: f.pos + _core.RECORD_HEADER_LEN,
    "payload": lambda f: f.payload_pos + len(f.payload) // 2,
}


@pytest.mark.parametrize("where", list(FLIP_AT))
def test_flipped_byte_in_a_sealed_segment_is_found_by_verify_and_by_a_read_that_reaches_it(
    store_path: Path, open_store: Callable[..., SegmentStore], where: str
) -> None:
    written = _rolled(store_path)
    sealed = segment_files(store_path)[1]
    victims = frames(sealed.read_bytes())
    victim = victims[len(victims) // 2]
    _flip(sealed, FLIP_AT[where](victim))
    damaged_bytes = sealed.read_bytes()

    s = open_store()
    report = s.verify()
    assert not report.ok
    assert len(report.damaged) == 1
    damage = report.damaged[0]
    assert _same(damage.path, sealed)
    assert victim.pos <= damage.offset < victim.end
    assert report.records == 239

    seen = []
    with pytest.raises(CorruptSegmentError) as excinfo:
        for record in s.read(victim.stream):
            seen.append(record.seq)
    assert seen == list(range(1, victim.seq))
    err = excinfo.value
    assert isinstance(err, StoreError)
    assert _same(err.path, sealed)
    assert err.offset == victim.pos
    assert sealed.name in str(err)

    # Reads that do not reach the damaged record still work.
    after = list(s.read(victim.stream, after_seq=victim.seq))
    assert [r.payload for r in after] == written[victim.stream][victim.seq :]
    for stream in set(written) - {victim.stream}:
        assert [r.payload for r in s.read(stream)] == written[stream]
    assert s.latest_many(list(written), Kind.MESSAGE)[victim.stream].payload == written[victim.stream][-1]  # type: ignore[union-attr]
    assert sealed.read_bytes() == damaged_bytes  # nothing "repaired" behind the caller's back


def _cut(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 100)


def _extend(path: Path) -> None:
    with path.open("ab") as f:
        f.write(b"\x00" * 50)


def _bad_magic(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(b"NOTASEG!")


SEALED_DAMAGE = {"cut by 100 bytes": _cut, "extended by 50 bytes": _extend, "bad magic": _bad_magic}


@pytest.mark.parametrize("damage", list(SEALED_DAMAGE))
def test_damaged_sealed_segment_raises_at_open_and_tolerant_open_skips_and_reports(
    store_path: Path, open_store: Callable[..., SegmentStore], damage: str
) -> None:
    written = _rolled(store_path)
    sealed = segment_files(store_path)[1]
    in_sealed = frames(sealed.read_bytes())
    SEALED_DAMAGE[damage](sealed)
    damaged_bytes = sealed.read_bytes()

    with pytest.raises(CorruptSegmentError) as excinfo:
        open_store()
    assert _same(excinfo.value.path, sealed)
    assert 0 <= excinfo.value.offset <= len(damaged_bytes) + 100
    assert sealed.read_bytes() == damaged_bytes

    s = open_store(tolerant=True, segment_bytes=SMALL_SEGMENT)  # the failed open left no lock behind
    reported = [d for d in s.open_report.damaged if _same(d.path, sealed)]
    assert reported, s.open_report
    assert all(d.reason for d in reported)
    last_in_sealed = {f.stream: f.seq for f in in_sealed}
    for stream, payloads in written.items():
        after = list(s.read(stream, after_seq=last_in_sealed[stream]))
        assert [r.payload for r in after] == payloads[last_in_sealed[stream] :]
    assert s.append("alpha", b"after damage") == len(written["alpha"]) + 1
    assert s.latest("alpha", Kind.MESSAGE).payload == b"after damage"  # type: ignore[union-attr]


@pytest.mark.parametrize("which", ["sealed", "active", "only"])
def test_segment_header_with_version_99_raises_format_version_error(
    store_path: Path, open_store: Callable[..., SegmentStore], which: str
) -> None:
    if which == "only":
        with SegmentStore(store_path) as s:
            s.append("a", b"x")
        seg = segment_files(store_path)[0]
    else:
        _rolled(store_path)
        segs = segment_files(store_path)
        seg = segs[0] if which == "sealed" else segs[-1]
    with seg.open("r+b") as f:
        f.seek(8)
        assert struct.unpack("<I", f.read(4))[0] == _core.FORMAT_VERSION
        f.seek(8)
        f.write(struct.pack("<I", 99))
    before = seg.read_bytes()
    with pytest.raises(FormatVersionError) as excinfo:
        open_store()
    err = excinfo.value
    assert isinstance(err, StoreError)
    assert _same(err.path, seg)
    assert (err.found, err.supported) == (99, _core.FORMAT_VERSION)
    assert seg.read_bytes() == before


# --- index files -----------------------------------------------------------------------


def _delete(path: Path) -> None:
    path.unlink()


def _overwrite_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, min(mid + 16, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _overwrite_summary(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(60, 70):
        data[i] ^= 0x55
    path.write_bytes(bytes(data))


def _overwrite_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack("<Q", 123456)  # the base field
    path.write_bytes(bytes(data))


def _truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


INDEX_DAMAGE = {
    "deleted": _delete,
    "summary overwritten": _overwrite_summary,
    "header overwritten": _overwrite_header,
    "cut to half": _truncate_half,
    "emptied": _empty,
}


def test_damaged_index_entries_are_found_by_verify_and_rebuilt_by_the_read_that_needs_them(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    # Open reads only an index's header and summary (that is what keeps it fast), so
    # damage inside the per-stream entries blocks is caught by their CRC when used.
    written = _rolled(store_path)
    victim = index_files(store_path)[1]
    _overwrite_middle(victim)

    s = open_store(segment_bytes=SMALL_SEGMENT)
    assert s.open_report.rebuilt_indexes == ()
    report = s.verify()
    assert [Path(d.path).name for d in report.damaged] == [victim.name]
    assert_contents(s, written)  # the reads rebuild the index from its segment
    assert s.verify().ok
    s.close()

    s = open_store()
    assert s.open_report.rebuilt_indexes == ()
    assert s.open_report.damaged == ()
    assert_contents(s, written)


@pytest.mark.parametrize("damage", list(INDEX_DAMAGE))
def test_missing_or_damaged_index_is_rebuilt_at_open_and_reads_still_work(
    store_path: Path, open_store: Callable[..., SegmentStore], damage: str
) -> None:
    written = _rolled(store_path)
    victim = index_files(store_path)[1]
    INDEX_DAMAGE[damage](victim)

    s = open_store(segment_bytes=SMALL_SEGMENT)
    assert [Path(p).name for p in s.open_report.rebuilt_indexes] == [victim.name]
    assert s.open_report.records == 240
    assert s.open_report.damaged == ()
    assert_contents(s, written)
    latest = s.latest_many(list(written), Kind.MESSAGE)
    assert {k: v.payload for k, v in latest.items() if v} == {k: v[-1] for k, v in written.items()}
    assert s.verify().ok
    s.close()

    assert victim.exists()
    s = open_store()
    assert s.open_report.rebuilt_indexes == ()
    assert_contents(s, written)


def test_two_sealed_segments_with_swapped_names_raise_corrupt_segment_error(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    _rolled(store_path)
    first, second = segment_files(store_path)[:2]
    tmp = first.with_suffix(".swap")
    first.rename(tmp)
    second.rename(first)
    tmp.rename(second)
    with pytest.raises(CorruptSegmentError) as excinfo:
        open_store(segment_bytes=SMALL_SEGMENT)
    assert _same(excinfo.value.path, first)
    assert "base offset" in excinfo.value.reason


@pytest.mark.parametrize("which", ["first sealed", "middle sealed", "active"])
def test_a_deleted_segment_raises_at_open_and_tolerant_open_reports_it_and_keeps_the_rest(
    store_path: Path, open_store: Callable[..., SegmentStore], which: str
) -> None:
    written = _rolled(store_path)
    segs = segment_files(store_path)
    gone = {"first sealed": segs[0], "middle sealed": segs[1], "active": segs[-1]}[which]
    lost = {(f.stream, f.seq) for f in frames(gone.read_bytes())}
    gone.unlink()

    with pytest.raises(CorruptSegmentError) as excinfo:
        open_store(segment_bytes=SMALL_SEGMENT)
    assert _same(excinfo.value.path, gone)
    assert excinfo.value.offset == 0
    assert "listed in MANIFEST is missing" in excinfo.value.reason

    with open_store(tolerant=True, segment_bytes=SMALL_SEGMENT) as s:
        assert [_same(d.path, gone) for d in s.open_report.damaged] == [True]
        for stream, payloads in written.items():
            kept = {r.seq: r.payload for r in s.read(stream)}
            expected = {seq: p for seq, p in enumerate(payloads, 1) if (stream, seq) not in lost}
            assert kept == expected, stream
        s.append("alpha", b"after the loss")
    with open_store(segment_bytes=SMALL_SEGMENT) as s:  # the loss is recorded: strict opens work again
        assert s.open_report.damaged == ()
        assert s.latest("alpha", Kind.MESSAGE).payload == b"after the loss"  # type: ignore[union-attr]


def test_a_zeroed_4k_page_in_a_sealed_segment_is_reported_with_file_and_offset_and_the_rest_reads(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    written = _rolled(store_path)
    sealed = segment_files(store_path)[1]
    page = range(8192, 12288)  # the third 4 KiB page of the file: records only, no header
    hit = [f for f in frames(sealed.read_bytes()) if f.pos < page.stop and f.end > page.start]
    with sealed.open("r+b") as f:
        f.seek(page.start)
        f.write(bytes(len(page)))

    s = open_store()  # open reads sealed headers and indexes only: it stays fast and succeeds
    report = s.verify()
    assert not report.ok
    assert all(_same(d.path, sealed) for d in report.damaged)
    assert min(d.offset for d in report.damaged) == hit[0].pos
    assert report.records == 240 - len(hit)
    for victim in hit:
        with pytest.raises(CorruptSegmentError) as excinfo:
            list(s.read(victim.stream, after_seq=victim.seq - 1))
        assert _same(excinfo.value.path, sealed)
        assert excinfo.value.offset == victim.pos
    # Every record outside the page still reads, intact.
    last_hit = {f.stream: f.seq for f in hit}
    for stream, payloads in written.items():
        after = last_hit.get(stream, 0)
        assert [r.payload for r in s.read(stream, after_seq=after)] == payloads[after:], stream
    assert sealed.read_bytes()[page.start : page.stop] == bytes(len(page))  # nothing repaired behind the caller's back


def _tail_store(store_path: Path) -> tuple[dict[str, list[bytes]], Path, bytes]:
    """Sealed segments and an active one ending in small records: contents, the active file, its bytes."""
    rng = random.Random(5)
    with SegmentStore(store_path, segment_bytes=SMALL_SEGMENT) as s:
        written = fill_rolled(s, records=200)
        written["t"] = [random_payload(rng, 60 + 10 * i) for i in range(4)]
        for payload in written["t"]:
            s.append("t", payload)
    active = segment_files(store_path)[-1]
    return written, active, active.read_bytes()


def _reopened_holds(store_path: Path, written: dict[str, list[bytes]], t_kept: int) -> SegmentStore:
    """Open the store, check it holds everything but the last records of "t", and return it."""
    s = SegmentStore(store_path, segment_bytes=SMALL_SEGMENT)
    for stream, payloads in written.items():
        want = payloads[:t_kept] if stream == "t" else payloads
        assert [r.payload for r in s.read(stream)] == want, stream
    return s


def test_every_flipped_byte_of_the_last_record_drops_that_record_only_and_reports_it(store_path: Path) -> None:
    written, active, pristine = _tail_store(store_path)
    last = frames(pristine)[-1]
    for at in range(last.pos, last.end):
        damaged = bytearray(pristine)
        damaged[at] ^= 0x5A
        active.write_bytes(bytes(damaged))
        with _reopened_holds(store_path, written, t_kept=3) as s:
            report = s.open_report
            # dropped_records counts frames by their length fields, which the flip may have changed.
            assert report.truncated_bytes == last.length and report.dropped_records >= 1, at
            assert s.verify().ok, at
            assert s.append("t", b"next") == 4, at  # seq 4 replaces the dropped record


def test_a_cut_at_every_offset_of_the_last_two_records_keeps_every_whole_record(store_path: Path) -> None:
    written, active, pristine = _tail_store(store_path)
    second, last = frames(pristine)[-2:]
    for cut in range(second.pos, last.end + 1):
        active.write_bytes(pristine[:cut])
        whole = 4 if cut == last.end else 3 if cut >= second.end else 2
        with _reopened_holds(store_path, written, t_kept=whole) as s:
            report = s.open_report
            boundary = {second.pos, second.end, last.end}
            assert report.truncated_bytes == (0 if cut in boundary else cut - max(b for b in boundary if b < cut)), cut
            assert s.verify().ok, cut
