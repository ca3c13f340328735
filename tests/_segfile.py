"""Read segment files byte by byte in Python (test helper, not collected).

The layout is the one of ``docs/FORMAT.md``; the sizes come from `pyactors._core`
so that a change of the format shows up here.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from pyactors import _core

__all__ = [
    "Frame",
    "crc32c",
    "dir_bytes",
    "frames",
    "index_files",
    "segment_files",
    "segment_header",
]

SEGMENT_HEADER = struct.Struct("<8sIIQq")  # magic, version, reserved, base, created_us
RECORD_HEADER = struct.Struct("<IIQQqBBHI")  # crc, body_len, offset, seq, ts, kind, flags, stream_len, raw_len
assert SEGMENT_HEADER.size == _core.SEGMENT_HEADER_LEN
assert RECORD_HEADER.size == _core.RECORD_HEADER_LEN


@dataclass(frozen=True)
class Frame:
    """One record frame as it lies in a segment file."""

    pos: int
    length: int
    crc: int
    offset: int
    seq: int
    timestamp_us: int
    kind: int
    flags: int
    raw_len: int
    stream: str
    payload: bytes
    raw: bytes

    @property
    def payload_pos(self) -> int:
        """Byte position of the stored payload in the file."""
        return self.pos + _core.RECORD_HEADER_LEN + len(self.stream.encode())

    @property
    def end(self) -> int:
        """Byte position just after the frame."""
        return self.pos + self.length


def segment_files(store_path: str | os.PathLike[str]) -> list[Path]:
    """The segment files of a store, oldest first."""
    return sorted(Path(store_path).glob("*.seg"))


def index_files(store_path: str | os.PathLike[str]) -> list[Path]:
    """The index files of a store, oldest first."""
    return sorted(Path(store_path).glob("*.idx"))


def dir_bytes(store_path: str | os.PathLike[str]) -> int:
    """Sum of the sizes (os.stat) of every file in the store directory."""
    total = 0
    for entry in os.scandir(store_path):
        if entry.is_file(follow_symlinks=False):
            total += os.stat(entry.path).st_size
    return total


def segment_header(data: bytes) -> tuple[bytes, int, int, int, int]:
    """(magic, version, reserved, base, created_us) of a segment file's bytes."""
    return SEGMENT_HEADER.unpack_from(data, 0)


def frames(data: bytes) -> list[Frame]:
    """Every complete frame of a segment file's bytes, in file order.

    Stops at the first frame that does not fit in `data` (no CRC check here).
    """
    out = []
    pos = _core.SEGMENT_HEADER_LEN
    while pos + _core.RECORD_HEADER_LEN <= len(data):
        crc, body_len, offset, seq, ts, kind, flags, stream_len, raw_len = RECORD_HEADER.unpack_from(data, pos)
        length = 8 + body_len
        if body_len == 0 or pos + length > len(data):
            break
        start = pos + _core.RECORD_HEADER_LEN
        stream = data[start : start + stream_len].decode()
        payload = data[start + stream_len : pos + length]
        out.append(
            Frame(pos, length, crc, offset, seq, ts, kind, flags, raw_len, stream, payload, data[pos : pos + length])
        )
        pos += length
    return out


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def _crc32c_py(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:  # the package is optional; the pure-Python version is slow but exact
    from crc32c import crc32c as _crc32c_fast  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _crc32c_fast = None


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`."""
    if _crc32c_fast is not None:
        return _crc32c_fast(data)
    return _crc32c_py(data)


assert _crc32c_py(b"123456789") == 0xE3069283  # the standard check value
