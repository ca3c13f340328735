"""The segment store: a typed Python API over the Rust segment log.

A store is a directory of append-only segment files. Each record belongs to a
*stream* (a short UTF-8 id such as ``"counter-1"`` or ``"wf/thread-7"``), has a
*kind* (snapshot, message, checkpoint, or a user kind), a per-stream sequence
number assigned by the log, a timestamp, and a payload stored as a standard zstd
frame with a CRC32C over the whole record. See ``docs/FORMAT.md``.

Example:
    >>> import tempfile
    >>> from pyactors import Kind, SegmentStore
    >>> with SegmentStore(tempfile.mkdtemp() + "/store") as store:
    ...     store.append("counter-1", b"+1")
    ...     store.append("counter-1", b"state=1", kind=Kind.SNAPSHOT)
    ...     store.latest("counter-1").payload
    1
    2
    b'state=1'
"""

from __future__ import annotations

import enum
import errno
import os
import weakref
from typing import TYPE_CHECKING, Literal, NamedTuple, Self

from pyactors import _core
from pyactors.errors import InvalidArgumentError, StoreIOError
from pyactors.serialization import PickleSerializer, Serializer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from types import TracebackType

__all__ = [
    "LANGGRAPH_PREFIX",
    "LANGGRAPH_VALUE_KIND",
    "MAX_STREAM_BYTES",
    "RESERVED_PREFIXES",
    "WORKFLOW_PREFIX",
    "CompactReport",
    "Damage",
    "Durability",
    "Kind",
    "KindStats",
    "OpenReport",
    "Record",
    "SegmentStore",
    "VerifyReport",
    "stream_of",
]

Durability = Literal["process", "group", "sync"]
"""When `append` returns, the record is: ``"process"`` written to the kernel
(survives the process being killed, not a power loss); ``"group"`` as process,
and fdatasynced by a background flusher within ``group_commit_ms``; ``"sync"``
fdatasynced (concurrent appenders share one fdatasync)."""


MAX_STREAM_BYTES: int = _core.MAX_STREAM_LEN
"""The longest stream id, in UTF-8 bytes (255)."""

WORKFLOW_PREFIX = "wf/"
"""The streams of workflow threads: ``wf/<thread_id>`` (`FileCheckpointer`)."""
LANGGRAPH_PREFIX = "lg/"
"""The streams of LangGraph threads: ``lg/<thread_id>`` (`SegmentSaver`)."""
RESERVED_PREFIXES = (WORKFLOW_PREFIX, LANGGRAPH_PREFIX)
"""Stream prefixes of the layers above the store: no persistence id may start with one."""


def stream_of(name: object, what: str, prefix: str = "") -> str:
    """Return the stream id of `name` in the namespace `prefix` (``prefix + name``).

    One store holds actors (a persistence id is its stream), workflow threads and
    LangGraph threads (`RESERVED_PREFIXES`), so that none can write into another's.

    Args:
        name: A persistence id or a thread id.
        what: What `name` is, for the error message (``"thread id"``).
        prefix: The namespace: `WORKFLOW_PREFIX`, `LANGGRAPH_PREFIX`, or ``""`` for actors.

    Raises:
        InvalidArgumentError: `name` is not a str of 1 to ``MAX_STREAM_BYTES - len(prefix)``
            UTF-8 bytes, or, outside a namespace, it starts with a reserved prefix.
    """
    limit = MAX_STREAM_BYTES - len(prefix)
    if not isinstance(name, str):
        msg = f"{what} must be a str of 1 to {limit} UTF-8 bytes, got {type(name).__name__} {name!r}"
        raise InvalidArgumentError(msg)
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        msg = f"{what} must be valid UTF-8 text (no lone surrogates), got {name!r}"
        raise InvalidArgumentError(msg) from None
    if not 1 <= size <= limit:
        msg = f"{what} must be 1 to {limit} UTF-8 bytes, got {size}"
        raise InvalidArgumentError(msg)
    if not prefix and (taken := next((p for p in RESERVED_PREFIXES if name.startswith(p)), None)):
        owner = "workflow threads" if taken == WORKFLOW_PREFIX else "LangGraph threads"
        msg = f"{what} {name!r} starts with {taken!r}, the prefix of the store's {owner}: choose another"
        raise InvalidArgumentError(msg)
    return prefix + name


class Kind(enum.IntEnum):
    """Record kinds. Kinds 128-255 are free for applications (`Kind.user(n)`)."""

    SNAPSHOT = 1
    """An actor's state (or any "latest value wins" record)."""
    MESSAGE = 2
    """A journaled mailbox message, tagged: an ask, a proxy call or set (and, before
    `TOLD` existed, a told message)."""
    CHECKPOINT = 3
    """A workflow checkpoint."""
    WRITES = 5
    """A workflow node's writes, recorded the moment it finishes."""
    TOLD = 6
    """A journaled message given to `tell`, stored as the serialized message alone."""

    @staticmethod
    def user(n: int) -> int:
        """Return user kind number `n` (0-127) as a record kind (128-255)."""
        if not 0 <= n <= 127:  # noqa: PLR2004
            msg = f"user kind must be in 0..127, got {n}"
            raise InvalidArgumentError(msg)
        return 128 + n


LANGGRAPH_VALUE_KIND = Kind.user(16)
"""The kind of SegmentSaver's channel values and pending writes in ``lg/`` streams
(``pyactors.langgraph.VALUE_KIND``)."""


class Record(NamedTuple):
    """One record read back from the store.

    Attributes:
        stream: The stream id.
        kind: The record kind (a `Kind` value or a user kind).
        seq: Its sequence number within the stream (1, 2, 3, ...).
        timestamp: When it was appended, in seconds since the epoch.
        payload: The payload bytes, decompressed.
    """

    stream: str
    kind: int
    seq: int
    timestamp: float
    payload: bytes


class Damage(NamedTuple):
    """A damaged byte range found in a store file.

    Attributes:
        path: The file.
        offset: Where the damage starts, in bytes from the start of the file.
        length: How many bytes were skipped or truncated.
        reason: What is wrong.
        tampered: True when the bytes are intact (their checksum matches) but fail
            authentication in a store opened with an ``auth_key``: tampering or
            another key, not accidental damage.
    """

    path: str
    offset: int
    length: int
    reason: str
    tampered: bool = False


class OpenReport(NamedTuple):
    """What opening the store found and repaired.

    Attributes:
        segments: Segment files in the store.
        records: Records found in the active segment scan plus the sealed indexes.
        truncated_bytes: Bytes cut from a torn tail of the active segment.
        dropped_records: Records (whole or partial) those bytes held.
        damaged: Damaged ranges: the torn tail, and in tolerant mode every
            damaged range that was skipped.
        rebuilt_indexes: Index files that were missing or damaged and were
            rebuilt from their segment.
        elapsed_ms: How long the open took.
    """

    segments: int
    records: int
    truncated_bytes: int
    dropped_records: int
    damaged: tuple[Damage, ...]
    rebuilt_indexes: tuple[str, ...]
    elapsed_ms: float


class KindStats(NamedTuple):
    """What a stream holds of one record kind (counted by `SegmentStore.verify()`).

    Attributes:
        stream: The stream id.
        kind: The record kind.
        live: Records not deleted.
        dead: Deleted records whose space `compact()` has not reclaimed yet.
        stored_bytes: Payload bytes of the live records as stored (zstd or raw).
        raw_bytes: Payload bytes of the live records once decompressed.
    """

    stream: str
    kind: int
    live: int
    dead: int
    stored_bytes: int
    raw_bytes: int

    @property
    def compression_ratio(self) -> float:
        """Raw bytes per stored byte (1.0 when nothing is stored)."""
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 1.0


class VerifyReport(NamedTuple):
    """The result of `SegmentStore.verify()`: a read-only scan of every record.

    Attributes:
        segments: Segment files scanned.
        records: Valid records found.
        bytes: Bytes scanned.
        damaged: Every damaged range, with file and offset.
        kinds: What the valid records hold, per stream and kind.
    """

    segments: int
    records: int
    bytes: int
    damaged: tuple[Damage, ...]
    kinds: tuple[KindStats, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no damage was found."""
        return not self.damaged


class CompactReport(NamedTuple):
    """The result of `SegmentStore.compact()`.

    Attributes:
        segments_removed: Sealed segments unlinked.
        records_copied: Live records copied forward into the active segment.
        bytes_before: Bytes of segment files before compaction.
        bytes_after: Bytes of segment files after compaction.
    """

    segments_removed: int
    records_copied: int
    bytes_before: int
    bytes_after: int


def _damage(items: Iterable[tuple[str, int, int, str, bool]]) -> tuple[Damage, ...]:
    return tuple(Damage(*item) for item in items)


def _record(raw: tuple[str, int, int, int, bytes]) -> Record:
    stream, kind, seq, ts_us, payload = raw
    return Record(stream, kind, seq, ts_us / 1_000_000, payload)


_opened: weakref.WeakSet[SegmentStore] = weakref.WeakSet()
"""The stores opened in this process and not yet freed (see `_after_fork_in_child`)."""


def _after_fork_in_child() -> None:
    """Let go, in a forked child, of the stores the parent had open.

    Closing a store in the child closes only the child's copies of its file
    descriptors, taking no lock another thread may hold (see `StoreForkedError`):
    without it, the child's copy of the lock file's descriptor would keep the store
    locked after the parent closed it, for as long as the child lives.
    """
    for store in list(_opened):
        store.close()
    _opened.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class SegmentStore:
    """A directory of append-only, compressed, checksummed segment files.

    One process at a time may open a store for writing (a second one gets
    `StoreLockedError`); inside it, any number of threads may append and read at
    once. Any number of processes may open it ``read_only`` beside the writer.
    A process forked from the one that opened it may not use it: there every call
    raises `StoreForkedError` (see there what to do instead), and it is closed for
    the child right after the fork.
    The GIL is released during file I/O, compression and decompression; a small append
    that needs no wait (one write into the page cache) keeps it, which is cheaper.

    Args:
        path: The store directory; created (mode 0700) if missing. A writer
            tightens an existing one that group or others may enter to 0700.
        durability: ``"process"``, ``"group"`` or ``"sync"`` (see `Durability`).
        group_commit_ms: Under ``"group"``, the longest time between a write
            and its fdatasync.
        segment_bytes: Roll to a new segment file once the active one reaches
            this size.
        compression_level: zstd level for payloads (1-22).
        compress_min_bytes: Payloads shorter than this are stored raw.
        tolerant: Open a store with damaged sealed segments, skipping and
            reporting the damage instead of raising `CorruptSegmentError`.
        read_only: Open without the writer lock and write nothing, not even
            repairs (a torn tail is reported in `open_report` but left in place):
            a view of the store as it was at open, for tools and readers beside
            a live writer. Appending, pruning and compacting raise
            `InvalidArgumentError`. The view sees one consistent set of files
            beside a writer that compacts: its open starts again if a compaction
            removed a file it listed, it holds the newest 128 sealed segments
            (and their index files) open while it lives, and its `verify` skips a
            segment compacted away since. Only in a store of more sealed segments
            may a read of an older one that a compaction removed since the open
            raise `StoreIOError` (ENOENT): open again for a fresh view.
        serializer: The serializer the layers above use for this store
            (default: pickle protocol 5). The store itself stores bytes.
        auth_key: A secret of at least 16 bytes: every record written gets an
            HMAC-SHA256 tag over its header fields and stored payload, and every
            record read (and every segment header) must check out with this key,
            or `AuthenticationError` is raised. A store is keyed or not for its
            whole life: a keyed store refuses to open without its key, and an
            unkeyed one refuses to open with a key. The key is kept in Rust memory
            only, never logged nor readable from the store; key rotation is not
            supported (copy the records into a new store). The safe configuration
            for bytes that may come from an untrusted source is `MsgpackSerializer`
            plus a key: pickle must never read untrusted segments, since unpickling
            runs code. See docs/RELIABILITY.md, "Untrusted data".
        cache_bytes: Memory for the newest record of each ``(stream, kind)`` that
            `latest` was asked for. From then on each append of that kind to that
            stream replaces it, so asking again is a lookup, not a read and a
            decompression: a persistent actor restarted in the same process gets
            its snapshot from here. Only a record the index names as newest is
            served, so pruned, deleted or compacted records never are. Least
            recently used entries go first; 0 turns it off.

    Raises:
        StoreLockedError: Another process has the store open.
        CorruptSegmentError: Damage outside the active segment's tail (strict mode).
        FormatVersionError: A file was written by an unknown format version.
        AuthenticationError: A segment's key id does not match `auth_key`, or a
            record of the active segment fails authentication (strict mode).
        InvalidArgumentError: An option is out of range (`auth_key` shorter than 16 bytes).
        StoreIOError: The operating system refused an operation, or a store
            file is a symbolic link or not a regular file (never followed).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "process",
        group_commit_ms: float = 5.0,
        segment_bytes: int = 64 * 1024 * 1024,
        compression_level: int = 3,
        compress_min_bytes: int = 256,
        tolerant: bool = False,
        read_only: bool = False,
        serializer: Serializer | None = None,
        auth_key: bytes | None = None,
        cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if serializer is not None and not isinstance(serializer, Serializer):
            msg = f"serializer must have name, dumps and loads (a Serializer), got {type(serializer).__name__}"
            raise InvalidArgumentError(msg)
        if os.path.exists(path) and not os.path.isdir(path):
            msg = f"{os.fspath(path)} is a file, not a store directory (a store is a directory, created if missing)"
            raise StoreIOError(errno.ENOTDIR, msg, os.fspath(path))
        self._log = _core.SegmentLog(
            os.fspath(path),
            durability=durability,
            group_commit_ms=group_commit_ms,
            segment_bytes=segment_bytes,
            compression_level=compression_level,
            compress_min_bytes=compress_min_bytes,
            tolerant=tolerant,
            read_only=read_only,
            auth_key=auth_key,
            cache_bytes=cache_bytes,
        )
        _opened.add(self)
        self.serializer: Serializer = serializer or PickleSerializer()
        report = self._log.open_report()
        self.open_report = OpenReport(
            segments=report["segments"],
            records=report["records"],
            truncated_bytes=report["truncated_bytes"],
            dropped_records=report["dropped_records"],
            damaged=_damage(report["damaged"]),
            rebuilt_indexes=tuple(report["rebuilt_indexes"]),
            elapsed_ms=report["elapsed_us"] / 1000,
        )
        """What opening the store found and repaired."""

    @property
    def path(self) -> str:
        """The store directory."""
        return self._log.path

    @property
    def durability(self) -> Durability:
        """The durability policy the store was opened with."""
        return self._log.durability  # type: ignore[return-value]

    @property
    def closed(self) -> bool:
        """True once `close()` has been called."""
        return self._log.closed

    def append(self, stream: str, payload: bytes, kind: int = Kind.MESSAGE, *, compress: bool = True) -> int:
        """Append one record and return its sequence number in `stream`.

        When this returns, the record is as durable as the store's policy says.

        Args:
            stream: The stream id (1 to 255 UTF-8 bytes).
            payload: The bytes to store.
            kind: The record kind (see `Kind`; 0 and the tombstone kind are reserved).
            compress: False stores the payload raw (no zstd on the caller's path: a
                memcpy and a CRC instead of ~0.5 ms per 100 KB), as a payload under
                ``compress_min_bytes`` is. `compact()` compresses a raw record it
                copies forward (if zstd shrinks it), so the space comes back once
                its segment is compacted. Reads are the same either way.

        Raises:
            InvalidArgumentError: Bad stream id or kind (nothing written).
            StoreIOError: The write failed (nothing acknowledged is lost).
        """
        return self._log.append(stream, kind, payload, compress=compress)[0]

    def append_many(
        self, records: Iterable[tuple[str, bytes] | tuple[str, bytes, int]], *, compress: bool = True
    ) -> list[int]:
        """Append many records in one write; return their sequence numbers.

        Each item is ``(stream, payload)`` (a `Kind.MESSAGE`) or
        ``(stream, payload, kind)``. All records are validated before any is
        written: either all are appended or none, also when a crash (even
        SIGKILL, or a power loss) cuts the write: every record but the last says
        more of its batch follow, and open drops a batch cut short whole.
        `compress` applies to every record of the batch (see `append`).

        Raises:
            InvalidArgumentError: An item that is not such a tuple, or a bad stream id
                or kind (nothing written).
        """
        batch = []
        for item in records:
            if len(item) not in (2, 3):
                msg = f"each record must be (stream, payload) or (stream, payload, kind), got {len(item)} items"
                raise InvalidArgumentError(msg)
            batch.append((item[0], item[2] if len(item) == 3 else Kind.MESSAGE, item[1]))  # noqa: PLR2004
        return self._log.append_many(batch, compress=compress)

    def latest(self, stream: str, kind: int = Kind.SNAPSHOT, *, head: int | None = None) -> Record | None:
        """Return the newest live record of `kind` in `stream`, or None.

        Reads only that record (found through the index), or takes it from memory
        when an earlier call asked for it (see ``cache_bytes``).

        Args:
            stream: The stream id.
            kind: The record kind.
            head: Return only the first `head` bytes of the payload (all of a shorter
                one), and decompress only those: a header of a payload of any size
                (a snapshot's watermark) costs `head` bytes of memory.
        """
        raw = self._log.latest(stream, kind, head)
        return None if raw is None else _record(raw)

    def latest_many(self, streams: Sequence[str], kind: int = Kind.SNAPSHOT) -> dict[str, Record | None]:
        """Return the newest record of `kind` for each stream.

        The payloads are read and decompressed on Rust threads in parallel.
        """
        raws = self._log.latest_many(list(streams), kind)
        return {stream: None if raw is None else _record(raw) for stream, raw in zip(streams, raws, strict=True)}

    def read(
        self, stream: str, after_seq: int = 0, kinds: Iterable[int] | None = None, limit: int | None = None
    ) -> Iterator[Record]:
        """Iterate over the live records of `stream` with ``seq > after_seq``, in order.

        Args:
            stream: The stream id.
            after_seq: Yield only records after this sequence number.
            kinds: Yield only records of these kinds (default: every kind).
            limit: Yield at most this many records; no record after them is read.

        Records are read lazily, in chunks of adjacent ones, from their positions in the index.

        Raises:
            InvalidArgumentError: A negative `after_seq` or `limit`, or a bad kind.
        """
        it = self._log.read(stream, after_seq, None if kinds is None else list(kinds), limit)
        return (_record(raw) for raw in it)

    def read_payloads(
        self, stream: str, after_seq: int = 0, kinds: Iterable[int] | None = None
    ) -> list[tuple[int, int, bytes]]:
        """Return ``(seq, kind, payload)`` of every live record of `stream` with ``seq > after_seq``, in order.

        The eager form of `read` for a caller that wants them all at once (a
        restarting actor's journal): one call reads and decompresses them with the
        GIL released, and builds no `Record`.

        Args:
            stream: The stream id.
            after_seq: Only records after this sequence number.
            kinds: Only records of these kinds (default: every kind).
        """
        return self._log.read_payloads(stream, after_seq, None if kinds is None else list(kinds))

    def count(self, stream: str, after_seq: int = 0, kinds: Iterable[int] | None = None) -> int:
        """Return how many records `read` would yield, from the index alone (no record is read)."""
        return self._log.count(stream, after_seq, None if kinds is None else list(kinds))

    def streams(self) -> list[str]:
        """Return the ids of every stream not deleted, sorted."""
        return self._log.streams()

    def last_seq(self, stream: str) -> int:
        """Return the last sequence number assigned in `stream` (0 if none)."""
        return self._log.last_seq(stream)

    def prune(self, stream: str, kind: int, keep_last: int) -> int:
        """Delete all but the newest `keep_last` records of `kind` in `stream`.

        Writes a tombstone; the space comes back with `compact()`.

        Returns:
            How many records were deleted.
        """
        return self._log.prune(stream, kind, keep_last)

    def delete_stream(self, stream: str) -> int:
        """Delete every record of `stream` (a tombstone); return how many were deleted.

        Sequence numbers are not reused: a later append continues after the
        last one assigned.
        """
        return self._log.delete_stream(stream)

    def compact(
        self, min_dead_ratio: float = 0.5, progress: Callable[[int, int], object] | None = None
    ) -> CompactReport:
        """Reclaim the space of deleted records.

        Sealed segments in which at least `min_dead_ratio` of the bytes are dead
        have their live records copied into the active segment, then are
        unlinked. Crash-safe at every step: a record is never only in a file
        that is about to be removed. A record stored raw (``compress=False``, at
        least ``compress_min_bytes`` long) is compressed as it is copied, if zstd
        shrinks it.

        Args:
            min_dead_ratio: Compact a sealed segment when at least this share of its bytes is dead.
            progress: Called as ``progress(done, total)`` with bytes of sealed segments
                examined, before each segment and at the end. If it raises (or Ctrl-C
                arrives), compaction stops after the segment in hand, every segment
                handled so far complete, and the exception propagates.
        """
        return CompactReport(**self._log.compact(min_dead_ratio, progress))

    def verify(self, progress: Callable[[int, int], object] | None = None) -> VerifyReport:
        """Scan every segment, read-only: report every damaged record, and count what the valid ones hold.

        Args:
            progress: Called as ``progress(done, total)`` with bytes scanned, before
                each segment and at the end. If it raises (or Ctrl-C arrives), the scan
                stops and the exception propagates.
        """
        report = self._log.verify(progress)
        return VerifyReport(
            segments=report["segments"],
            records=report["records"],
            bytes=report["bytes"],
            damaged=_damage(report["damaged"]),
            kinds=tuple(KindStats(*k) for k in report["kinds"]),
        )

    def stats(self) -> dict[str, int]:
        """Return counters.

        Keys: ``segments`` (files), ``bytes`` (in segment files), ``streams`` (not
        deleted), ``appended`` (records appended since open, tombstones and
        compaction copies included) and ``syncs`` (fdatasyncs since open).
        """
        return self._log.stats()

    def flush(self) -> None:
        """Make every record appended so far durable (fdatasync), whatever the policy."""
        self._log.flush()

    def close(self) -> None:
        """Flush, stop the background flusher and release the writer lock. Idempotent.

        In a process forked from the one that opened the store, it writes nothing and
        only closes this process's copies of the store's file descriptors (see
        `StoreForkedError`).
        """
        self._log.close()

    def __enter__(self) -> Self:
        """Return the store itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()

    def __repr__(self) -> str:
        """Show the path and policy."""
        state = "closed" if self.closed else self.durability
        return f"SegmentStore({self.path!r}, {state})"
