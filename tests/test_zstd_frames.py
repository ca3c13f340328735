"""The bytes on disk: standard zstd frames, the record and segment headers, CRC32C."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest
import zstandard
from _segfile import crc32c, frames, segment_files, segment_header
from _util import SMALL_SEGMENT, fill_rolled

from pyactors import Kind, SegmentStore, _core

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _decompress(frame: bytes) -> bytes:
    # Streaming decompression: works whether or not the frame records its content size.
    return zstandard.ZstdDecompressor().decompressobj().decompress(frame)


def _frames_of(store_path: Path) -> list:
    return [f for seg in segment_files(store_path) for f in frames(seg.read_bytes())]


def test_format_constants_are_the_documented_ones() -> None:
    assert _core.FORMAT_VERSION == 1
    assert _core.SEGMENT_MAGIC == b"PYASEG\r\n"
    assert _core.SEGMENT_HEADER_LEN == 32
    assert _core.RECORD_HEADER_LEN == 40
    assert _core.FLAG_ZSTD == 0x01
    assert _core.KIND_TOMBSTONE == 4
    assert _core.MAX_STREAM_LEN == 255
    assert len(_core.INDEX_MAGIC) == 8
    assert isinstance(_core.__version__, str)


@pytest.mark.parametrize("level", [1, 3, 19])
def test_a_compressible_payload_is_a_standard_zstd_frame_the_zstandard_package_decodes(
    store_path: Path, open_store: Callable[..., SegmentStore], level: int
) -> None:
    original = b"The quick brown fox jumps over the lazy dog. " * 400
    s = open_store(compression_level=level)
    s.append("fox", b"raw")
    seq = s.append("fox", original, kind=Kind.SNAPSHOT)
    s.close()

    (frame,) = [f for f in _frames_of(store_path) if f.stream == "fox" and f.seq == seq]
    assert frame.kind == Kind.SNAPSHOT
    assert frame.flags & _core.FLAG_ZSTD
    assert frame.raw_len == len(original)
    assert frame.payload.startswith(ZSTD_MAGIC)
    assert len(frame.payload) < len(original) // 10
    assert _decompress(frame.payload) == original
    # The payload is exactly one frame: the package sees it end where the record ends.
    params = zstandard.get_frame_parameters(frame.payload)
    assert params.content_size in (len(original), zstandard.CONTENTSIZE_UNKNOWN)


def test_every_compressed_payload_of_a_rolled_store_decodes_to_what_was_appended(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    rng = random.Random(8)
    s = open_store(segment_bytes=SMALL_SEGMENT, compress_min_bytes=64)
    appended: dict[tuple[str, int], bytes] = {}
    for i in range(300):
        stream = f"s{i % 4}"
        word = rng.randbytes(rng.randint(1, 12))
        p = word * rng.randint(64, 400)
        appended[stream, s.append(stream, p)] = p
    s.close()
    found = _frames_of(store_path)
    assert len(found) == 300
    for f in found:
        assert f.flags & _core.FLAG_ZSTD, (f.stream, f.seq)
        assert _decompress(f.payload) == appended[f.stream, f.seq]


def test_a_five_megabyte_payload_is_one_zstd_frame(store_path: Path, open_store: Callable[..., SegmentStore]) -> None:
    original = bytes(range(256)) * (5 * 4096)
    s = open_store()
    s.append("big", original)
    s.close()
    (frame,) = _frames_of(store_path)
    assert frame.flags & _core.FLAG_ZSTD
    assert frame.raw_len == len(original)
    assert _decompress(frame.payload) == original


@pytest.mark.parametrize(
    ("name", "payload", "zstd"),
    [
        ("empty", b"", False),
        ("below compress_min_bytes", b"a" * 63, False),
        ("at compress_min_bytes", b"a" * 64, True),
        ("incompressible", random.Random(3).randbytes(4096), False),
    ],
)
def test_small_or_incompressible_payloads_are_stored_raw_and_others_compressed(
    store_path: Path, open_store: Callable[..., SegmentStore], name: str, payload: bytes, zstd: bool
) -> None:
    s = open_store(compress_min_bytes=64)
    s.append("p", payload)
    s.close()
    (frame,) = _frames_of(store_path)
    assert bool(frame.flags & _core.FLAG_ZSTD) is zstd, name
    assert frame.raw_len == len(payload)
    if zstd:
        assert _decompress(frame.payload) == payload
    else:
        assert frame.payload == payload


def test_record_headers_hold_offset_seq_timestamp_kind_stream_and_a_crc32c(
    store_path: Path, open_store: Callable[..., SegmentStore]
) -> None:
    s = open_store(segment_bytes=SMALL_SEGMENT)
    fill_rolled(s, records=150, size=700)
    s.append("k", b"checkpoint" * 20, kind=Kind.CHECKPOINT)
    s.append("k", b"user", kind=Kind.user(9))
    records = {(r.stream, r.seq): r for stream in s.streams() for r in s.read(stream)}
    s.close()

    segs = segment_files(store_path)
    assert len(segs) >= 2
    offset = 0
    for seg in segs:
        data = seg.read_bytes()
        magic, version, reserved, base, created_us = segment_header(data)
        assert (magic, version, reserved) == (_core.SEGMENT_MAGIC, _core.FORMAT_VERSION, 0)
        assert base == int(seg.stem) == offset
        assert created_us > 0
        fs = frames(data)
        assert fs[-1].end == len(data)  # nothing after the last record
        for f in fs:
            assert f.offset == offset
            offset += 1
            record = records[f.stream, f.seq]
            assert f.kind == record.kind
            assert f.timestamp_us == round(record.timestamp * 1_000_000)
            assert f.length == _core.RECORD_HEADER_LEN + len(f.stream.encode()) + len(f.payload)
            assert f.flags & ~_core.FLAG_ZSTD == 0
            assert crc32c(f.raw[4:]) == f.crc, (seg.name, f.pos)
    assert offset == 152
