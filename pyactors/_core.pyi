"""Type stubs for the native module `pyactors._core` (private: use `pyactors.store`)."""

from collections.abc import Iterator, Sequence
from typing import Any, TypeAlias, final

__all__ = [
    "FLAG_ZSTD",
    "FORMAT_VERSION",
    "INDEX_MAGIC",
    "KIND_TOMBSTONE",
    "MAX_STREAM_LEN",
    "RECORD_HEADER_LEN",
    "SEGMENT_HEADER_LEN",
    "SEGMENT_MAGIC",
    "RecordIter",
    "SegmentLog",
    "__version__",
]

__version__: str
FORMAT_VERSION: int
SEGMENT_MAGIC: bytes
INDEX_MAGIC: bytes
SEGMENT_HEADER_LEN: int
RECORD_HEADER_LEN: int
MAX_STREAM_LEN: int
FLAG_ZSTD: int
KIND_TOMBSTONE: int

# (stream, kind, seq, timestamp_us, payload)
_RawRecord: TypeAlias = tuple[str, int, int, int, bytes]

@final
class RecordIter(Iterator[_RawRecord]):
    def __iter__(self) -> RecordIter: ...
    def __next__(self) -> _RawRecord: ...

@final
class SegmentLog:
    def __new__(
        cls,
        path: str,
        *,
        durability: str = "process",
        group_commit_ms: float = 5.0,
        segment_bytes: int = 67108864,
        compression_level: int = 3,
        compress_min_bytes: int = 256,
        tolerant: bool = False,
    ) -> SegmentLog: ...
    @property
    def path(self) -> str: ...
    @property
    def durability(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def open_report(self) -> dict[str, Any]: ...
    def append(self, stream: str, kind: int, payload: bytes) -> tuple[int, int]: ...
    def append_many(self, records: Sequence[tuple[str, int, bytes]]) -> list[int]: ...
    def latest(self, stream: str, kind: int) -> _RawRecord | None: ...
    def latest_many(self, streams: Sequence[str], kind: int) -> list[_RawRecord | None]: ...
    def read(
        self, stream: str, after_seq: int = 0, kinds: Sequence[int] | None = None, limit: int | None = None
    ) -> RecordIter: ...
    def streams(self) -> list[str]: ...
    def last_seq(self, stream: str) -> int: ...
    def prune(self, stream: str, kind: int, keep_last: int) -> int: ...
    def delete_stream(self, stream: str) -> int: ...
    def compact(self, min_dead_ratio: float = 0.5) -> dict[str, int]: ...
    def verify(self) -> dict[str, Any]: ...
    def stats(self) -> dict[str, int]: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
