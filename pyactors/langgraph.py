"""A LangGraph checkpointer on the segment store: `SegmentSaver`.

Needs the ``langgraph`` extra (``pip install pyactors-durable[langgraph]``); ``import pyactors``
never imports LangGraph, only ``import pyactors.langgraph`` does.

Each LangGraph thread is one stream of the store, ``lg/<thread_id>``, holding three
kinds of record (see ``docs/LANGGRAPH.md``):

* a *value* (`VALUE_KIND`): one channel value or one pending write, as LangGraph's
  ``serde`` made it (``serde.dumps_typed``: type tag in the header, bytes here);
* a *checkpoint header* (`Kind.CHECKPOINT`): namespace, id, parent, the checkpoint
  without its channel values, the metadata, and the ``(channel, version, type)`` of the
  values stored right before it, in the same atomic `SegmentStore.append_many`;
* a *writes header* (`Kind.WRITES`): one task's writes to a checkpoint, their values
  likewise right before it.

A checkpoint stores only the channels whose version changed (``new_versions``), so its
cost follows the size of the change; its header also names, for every other channel of
its ``channel_versions``, the seq of the value record it inherits, and the seq of the
namespace's previous header. So the newest checkpoint (`get_tuple`) is one
`SegmentStore.latest` plus the reads of its values and of the writes after it, and
`list(limit=k)` walks k headers back: neither reads the thread's history. Threads the
fast path cannot vouch for (several namespaces, ids out of write order, stores written
before format 2) are read through a full index of their headers, built once per thread.

Example:
    >>> import tempfile
    >>> from langgraph.graph import StateGraph
    >>> from pyactors.langgraph import SegmentSaver
    >>> builder = StateGraph(int)
    >>> _ = builder.add_node("add_one", lambda x: x + 1)
    >>> _ = builder.set_entry_point("add_one")
    >>> _ = builder.set_finish_point("add_one")
    >>> with SegmentSaver(tempfile.mkdtemp() + "/lg") as saver:
    ...     graph = builder.compile(checkpointer=saver)
    ...     graph.invoke(1, {"configurable": {"thread_id": "t1"}})
    2
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import OrderedDict, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

try:
    import ormsgpack
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
        get_checkpoint_metadata,
        writes_sort_key,
    )
except ModuleNotFoundError as exc:
    _missing = (exc.name or "").partition(".")[0]
    _msg = f"pyactors.langgraph needs {_missing}, of the langgraph extra: pip install 'pyactors-durable[langgraph]'"
    raise ModuleNotFoundError(_msg, name=_missing) from exc

from pyactors.errors import CheckpointCorruptError, InvalidArgumentError
from pyactors.store import LANGGRAPH_PREFIX, LANGGRAPH_VALUE_KIND, Durability, Kind, SegmentStore, stream_of

if TYPE_CHECKING:
    import builtins
    import os
    from collections.abc import AsyncIterator, Iterator, Sequence
    from types import TracebackType

    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.serde.base import SerializerProtocol

__all__ = ["VALUE_KIND", "SegmentSaver"]

VALUE_KIND = LANGGRAPH_VALUE_KIND
"""The record kind of a channel value or a pending write's value (`Kind.user(16)`)."""

_FORMAT = 2
"""Checkpoint headers of format 2 carry inherited value seqs, the previous header's seq
and the "ordered" flag; writes headers are still of format 1 (unchanged)."""
_WRITES_FORMAT = 1
_EMPTY = "empty"  # LangGraph's type tag for a channel with a version but no value
_HEADS_CACHED = 4096
"""Namespace heads kept in memory (least recently used dropped): a miss costs one read."""


@dataclass(slots=True)
class _Checkpoint:
    """A checkpoint header, as indexed: everything but the channel values."""

    parent: str | None
    checkpoint: tuple[str, bytes]
    metadata: tuple[str, bytes]
    refs: dict[str, tuple[Any, str, int]] = field(default_factory=dict)
    """The values its header names: channel -> (version, serde type, seq of the value
    record), those stored with it and (format 2) those it inherits."""


@dataclass(slots=True)
class _Write:
    task_id: str
    channel: str
    type: str
    seq: int
    task_path: str


@dataclass(slots=True)
class _Thread:
    """The index of one thread's stream: headers only, values stay on disk."""

    checkpoints: dict[str, dict[str, _Checkpoint]] = field(default_factory=lambda: defaultdict(dict))
    """namespace -> checkpoint id -> header."""
    values: dict[tuple[str, str, str | int | float], tuple[str, int]] = field(default_factory=dict)
    """(namespace, channel, version) -> (serde type, seq of the value record; 0 for "empty")."""
    writes: dict[tuple[str, str], dict[tuple[str, int], _Write]] = field(default_factory=lambda: defaultdict(dict))
    """(namespace, checkpoint id) -> (task id, idx) -> write."""

    def resolve(self, ns: str, cid: str | None, channel: str, version: Any) -> tuple[str, int] | None:
        """(serde type, seq) of the value of `channel` at `version` that checkpoint `cid` reads.

        The one its own header names, else the newest record of that version in the
        namespace (format 1 headers name only the channels they changed).
        """
        cp = self.checkpoints.get(ns, {}).get(cid) if cid is not None else None
        own = cp.refs.get(channel) if cp is not None else None
        if own is not None and own[0] == version:
            return own[1], own[2]
        return self.values.get((ns, channel, version))

    def add(self, kind: int, seq: int, header: list[Any]) -> None:
        """Index one header record found at `seq` (its values are the records just before it)."""
        if kind == Kind.CHECKPOINT:
            _, ns, cid, parent, cp_type, cp, md_type, md, entries, *rest = _checked(header)
            refs = {ch: (ver, t, at) for (ch, ver, t), at in zip(entries, _value_seqs(seq, entries), strict=True)}
            for channel, (version, type_, at) in refs.items():
                self.values[(ns, channel, version)] = (type_, at)
            refs.update({ch: (ver, t, at) for ch, ver, t, at in (rest[0] if rest else ())})
            self.checkpoints[ns][cid] = _Checkpoint(parent, (cp_type, cp), (md_type, md), refs)
        else:
            if header[0] != _WRITES_FORMAT:
                msg = f"writes record format {header[0]!r}, expected {_WRITES_FORMAT}"
                raise ValueError(msg)
            _, ns, cid, task_id, task_path, entries = header
            stored = self.writes[(ns, cid)]
            for (idx, channel, type_), at in zip(entries, range(seq - len(entries), seq), strict=True):
                key = (task_id, idx)
                if idx >= 0 and key in stored:  # a regular write is kept; special ones are replaced
                    continue
                stored[key] = _Write(task_id, channel, type_, at, task_path)


def _checked(header: list[Any]) -> list[Any]:
    """A checkpoint header of format 1 (9 fields) or 2 (13: ..., inherited, prev, ordered, late).

    Raises:
        ValueError: It is neither.
    """
    fields = {1: 9, 2: 13}.get(header[0]) if isinstance(header, list) and header else None
    if fields is None or len(header) != fields:
        msg = f"checkpoint record format {header[0] if header else None!r} of {len(header)} fields, expected 1 or 2"
        raise ValueError(msg)
    return header


@dataclass(slots=True)
class _Head:
    """The newest checkpoint header of one namespace of a thread: what the fast path reads.

    `ordered` (stored in the header): every checkpoint of the namespace, back along
    `prev`, is of format 2 and has a smaller id than the one written after it. The
    writes of a checkpoint lie between it and the next header of its namespace, except
    *late* ones, written after that next header (LangGraph's ``durability="async"``
    saves a superstep's writes in the background): the next header written lists them
    (`late`, ``[checkpoint id, seq of the writes header]``), and until it is, they are
    here (in memory; found again in the store's tail on a reload).
    """

    seq: int
    header: list[Any]
    channels: dict[str, tuple[Any, str, int]]
    """channel -> (version, serde type, seq of its value record; 0 for "empty")."""
    late: list[list[Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.header[2])

    @property
    def ordered(self) -> bool:
        return bool(self.header[11])

    @classmethod
    def of(cls, seq: int, header: list[Any]) -> _Head:
        """The head for a format-2 header at `seq`."""
        entries, inherited = header[8], header[9]
        channels = {ch: (ver, t, at) for (ch, ver, t), at in zip(entries, _value_seqs(seq, entries), strict=True)}
        channels.update({ch: (ver, t, at) for ch, ver, t, at in inherited})
        return cls(seq, header, channels)


_NO_CHECKPOINT: Any = object()
"""`_newest`'s answer for a thread without any checkpoint."""


def _value_seqs(seq: int, entries: list[Any]) -> list[int]:
    """Seqs of the value records of a checkpoint header at `seq`: its non-empty entries, right before it."""
    n = sum(1 for e in entries if e[2] != _EMPTY)
    out = []
    at = seq - n
    for e in entries:
        if e[2] == _EMPTY:
            out.append(0)
        else:
            out.append(at)
            at += 1
    return out


def _thread_id(config: RunnableConfig) -> str:
    """The thread id of `config`, checked against the store's limit for it (252 UTF-8 bytes).

    Raises:
        InvalidArgumentError: It is too long, or empty.
    """
    thread_id = str(config["configurable"]["thread_id"])
    stream_of(thread_id, "thread id", LANGGRAPH_PREFIX)
    return thread_id


def _config(thread_id: str, ns: str, cid: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}


class SegmentSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer (``BaseCheckpointSaver``) storing in a `SegmentStore`.

    A drop-in for ``SqliteSaver``: ``graph.compile(checkpointer=SegmentSaver(path))``.
    Values are serialised by LangGraph's ``serde`` (default ``JsonPlusSerializer``),
    record headers by msgpack; the store adds zstd and a CRC32C per record. Holds the
    store's writer lock: use it as a context manager or call `close()`. The async
    methods run the sync ones in a worker thread (`asyncio.to_thread`); the store
    releases the GIL during I/O and compression.

    Args:
        path: The store directory; created if missing (or pass `store=`).
        durability: The store's durability policy (``"process"``: survives kill -9;
            ``"sync"``: fdatasync before each write returns, like SQLite's default).
        serde: LangGraph serializer for values and checkpoints (default:
            LangGraph's ``JsonPlusSerializer``).
        compression_level: zstd level of the store.
        segment_bytes: Segment file size of the store.
        store: An already open store to use instead of opening `path` (shared with
            actors or a `FileCheckpointer`: its threads are ``lg/`` streams); `close()`
            then leaves it open.
        auth_key: The `auth_key` of the store it opens at `path` (see `SegmentStore`):
            every record is then authenticated; a tampered one raises
            `AuthenticationError`.

    Raises:
        StoreLockedError: Another process has the store open.
        InvalidArgumentError: Neither `path` nor `store`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        durability: Durability = "process",
        serde: SerializerProtocol | None = None,
        compression_level: int = 3,
        segment_bytes: int = 64 * 1024 * 1024,
        store: SegmentStore | None = None,
        auth_key: bytes | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self._owns_store = store is None
        if store is None:
            if path is None:
                msg = "SegmentSaver needs a path or a store"
                raise InvalidArgumentError(msg)
            store = SegmentStore(
                path,
                durability=durability,
                compression_level=compression_level,
                segment_bytes=segment_bytes,
                auth_key=auth_key,
            )
        self.store = store
        """The segment store the checkpoints live in."""
        self._threads: dict[str, _Thread] = {}
        """Full indexes, built for the threads the fast path cannot serve."""
        self._heads: OrderedDict[tuple[str, str], _Head] = OrderedDict()
        """(thread, namespace) -> its newest header, for the fast path (guarded by `_heads_guard`:
        the threads' own locks order each thread's calls, not the cache they share)."""
        self._heads_guard = threading.Lock()
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @classmethod
    @contextmanager
    def from_conn_string(cls, path: str, *, durability: Durability = "process") -> Iterator[SegmentSaver]:
        """Open a saver on the store directory `path` and close it on exit (as ``SqliteSaver``'s).

        Example:
            >>> import tempfile
            >>> with SegmentSaver.from_conn_string(tempfile.mkdtemp() + "/lg") as saver:
            ...     saver.get_tuple({"configurable": {"thread_id": "none"}}) is None
            True
        """
        saver = cls(path, durability=durability)
        try:
            yield saver
        finally:
            saver.close()

    # -- plumbing ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if this saver opened it (flushes it, releases the writer lock). Idempotent."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Self:
        """Return the saver."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the saver."""
        self.close()

    async def __aenter__(self) -> Self:
        """Return the saver."""
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the saver."""
        self.close()

    def _lock(self, thread_id: str) -> threading.Lock:
        """The lock that orders one thread's appends with its index updates."""
        with self._guard:
            lock = self._locks.get(thread_id)
            if lock is None:
                lock = self._locks[thread_id] = threading.Lock()
            return lock

    def _thread(self, thread_id: str) -> _Thread:
        """The thread's index, read from its headers on first use (call with its lock held).

        Raises:
            CheckpointCorruptError: A header is not one this saver wrote.
        """
        thread = self._threads.get(thread_id)
        if thread is None:
            thread = _Thread()
            for rec in self.store.read(LANGGRAPH_PREFIX + thread_id, kinds=[Kind.CHECKPOINT, Kind.WRITES]):
                try:
                    thread.add(rec.kind, rec.seq, ormsgpack.unpackb(rec.payload))
                except (ValueError, TypeError, KeyError, IndexError) as exc:  # MsgpackDecodeError is a ValueError
                    raise CheckpointCorruptError(thread_id, None, f"record {rec.seq}: {exc}") from exc
            self._threads[thread_id] = thread
        return thread

    def _append(self, thread_id: str, groups: list[tuple[int, list[Any], list[bytes]]]) -> list[int]:
        """Append header groups (kind, header, values) in one write; return the headers' seqs.

        A loaded full index is updated too (lock held).
        """
        stream = LANGGRAPH_PREFIX + thread_id
        batch: list[tuple[str, bytes, int]] = []
        for kind, header, values in groups:
            batch.extend((stream, v, VALUE_KIND) for v in values)
            batch.append((stream, ormsgpack.packb(header), kind))
        seqs = self.store.append_many(batch)
        thread = self._threads.get(thread_id)
        at = 0
        out = []
        for kind, header, values in groups:
            at += len(values) + 1
            out.append(seqs[at - 1])
            if thread is not None:
                thread.add(kind, seqs[at - 1], header)
        return out

    def _unpack(self, thread_id: str, seq: int, payload: bytes) -> list[Any]:
        """A header record's fields.

        Raises:
            CheckpointCorruptError: It is not a header this saver wrote.
        """
        try:
            header = ormsgpack.unpackb(payload)
        except ValueError as exc:  # MsgpackDecodeError is a ValueError
            raise CheckpointCorruptError(thread_id, None, f"record {seq}: {exc}") from exc
        if not isinstance(header, list) or not header:
            raise CheckpointCorruptError(thread_id, None, f"record {seq}: not a header")
        return header

    def _newest(self, thread_id: str, ns: str) -> _Head | None:
        """The newest header of namespace `ns` of the thread, for the fast path (lock held).

        One `latest` read on a cache miss (and one read of the writes after it). Returns
        `_NO_CHECKPOINT` for a thread without checkpoints, None when the newest header is
        another namespace's or of format 1: the full index must answer.
        """
        key = (thread_id, ns)
        head = self._cached(key)
        if head is not None:
            return head
        rec = self.store.latest(LANGGRAPH_PREFIX + thread_id, Kind.CHECKPOINT)
        if rec is None:
            return _NO_CHECKPOINT  # type: ignore[no-any-return]
        header = self._unpack(thread_id, rec.seq, rec.payload)
        try:
            _checked(header)
        except ValueError as exc:
            raise CheckpointCorruptError(thread_id, None, f"record {rec.seq}: {exc}") from exc
        if header[0] != _FORMAT or header[1] != ns:
            return None
        try:
            head = _Head.of(rec.seq, header)
        except (ValueError, TypeError) as exc:
            raise CheckpointCorruptError(thread_id, None, f"record {rec.seq}: {exc}") from exc
        head.late = [[w[2], at] for at, w in self._writes_after(thread_id, rec.seq) if w[1] == ns and w[2] != head.id]
        self._remember(key, head)
        return head

    def _cached(self, key: tuple[str, str]) -> _Head | None:
        with self._heads_guard:
            head = self._heads.get(key)
            if head is not None:
                self._heads.move_to_end(key)
            return head

    def _remember(self, key: tuple[str, str], head: _Head) -> None:
        with self._heads_guard:
            self._heads[key] = head
            self._heads.move_to_end(key)
            while len(self._heads) > _HEADS_CACHED:
                self._heads.popitem(last=False)

    def _forget(self, thread_id: str) -> None:
        """Drop what is kept in memory of a thread (its records were rewritten or deleted)."""
        self._threads.pop(thread_id, None)
        with self._heads_guard:
            for key in [k for k in self._heads if k[0] == thread_id]:
                del self._heads[key]

    def _writes_after(self, thread_id: str, seq: int, upto: int | None = None) -> list[tuple[int, list[Any]]]:
        """(seq, header) of the writes headers after `seq` (and before `upto`)."""
        out = []
        limit = None if upto is None else upto - seq  # at most every record in between
        for rec in self.store.read(LANGGRAPH_PREFIX + thread_id, seq, kinds=[Kind.WRITES], limit=limit):
            if upto is not None and rec.seq > upto:
                break
            out.append((rec.seq, self._unpack(thread_id, rec.seq, rec.payload)))
        return out

    def _writes_at(self, thread_id: str, seqs: builtins.list[int]) -> builtins.list[tuple[int, builtins.list[Any]]]:
        """(seq, header) of the writes headers at `seqs` (one read each)."""
        out = []
        for at in seqs:
            got = list(self.store.read(LANGGRAPH_PREFIX + thread_id, at - 1, kinds=[Kind.WRITES], limit=1))
            if not got or got[0].seq != at:
                raise CheckpointCorruptError(thread_id, None, f"the late writes record {at} is missing")
            out.append((at, self._unpack(thread_id, at, got[0].payload)))
        return out

    def _one(self, thread_id: str, seq: int, header: list[Any], writes: list[tuple[int, list[Any]]]) -> _Thread:
        """An index of one checkpoint and its writes (the fast path builds its tuples from it)."""
        one = _Thread()
        try:
            one.add(Kind.CHECKPOINT, seq, header)
            for at, w in writes:
                one.add(Kind.WRITES, at, w)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise CheckpointCorruptError(thread_id, None, f"record {seq}: {exc}") from exc
        return one

    def _values(self, thread_id: str, seqs: Sequence[int]) -> dict[int, bytes]:
        """Payloads of the value records at `seqs` (a run of adjacent seqs is one read of just those)."""
        wanted = sorted({s for s in seqs if s})
        out: dict[int, bytes] = {}
        i = 0
        while i < len(wanted):
            j = i + 1
            while j < len(wanted) and wanted[j] == wanted[j - 1] + 1:
                j += 1
            for rec in self.store.read(LANGGRAPH_PREFIX + thread_id, wanted[i] - 1, kinds=[VALUE_KIND], limit=j - i):
                out[rec.seq] = rec.payload
            i = j
        return out

    def _tuple(self, thread_id: str, thread: _Thread, ns: str, cid: str) -> CheckpointTuple:
        """Build a checkpoint tuple: load its channel values and pending writes (lock held)."""
        cp = thread.checkpoints[ns][cid]
        checkpoint: Checkpoint = self.serde.loads_typed(cp.checkpoint)
        refs = {}
        for channel, version in checkpoint["channel_versions"].items():
            ref = thread.resolve(ns, cid, channel, version)
            if ref is not None and ref[0] != _EMPTY:
                refs[channel] = ref
        stored = thread.writes.get((ns, cid), {})
        writes = [stored[k] for k in sorted(stored, key=lambda k: writes_sort_key(stored[k].task_path, *k))]
        payloads = self._values(thread_id, [s for _, s in refs.values()] + [w.seq for w in writes])
        loads = self.serde.loads_typed
        checkpoint["channel_values"] = {ch: loads((t, payloads[s])) for ch, (t, s) in refs.items() if s in payloads}
        return CheckpointTuple(
            config=_config(thread_id, ns, cid),
            checkpoint=checkpoint,
            metadata=loads(cp.metadata),
            parent_config=_config(thread_id, ns, cp.parent) if cp.parent else None,
            pending_writes=[(w.task_id, w.channel, loads((w.type, payloads[w.seq]))) for w in writes],
        )

    # -- BaseCheckpointSaver -------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Return the checkpoint named by `config` (its newest if no ``checkpoint_id``), or None.

        The newest checkpoint (or one named by the newest's id) costs a bounded number
        of reads, whatever the thread's length: its header, its values, the writes after it.
        """
        thread_id = _thread_id(config)
        ns = config["configurable"].get("checkpoint_ns", "")
        with self._lock(thread_id):
            head = self._newest(thread_id, ns)
            if head is _NO_CHECKPOINT:
                return None
            want = get_checkpoint_id(config)
            if head is not None and (want == head.id or (want is None and head.ordered)):
                one = self._one(thread_id, head.seq, head.header, self._writes_after(thread_id, head.seq))
                return self._tuple(thread_id, one, ns, head.id)
            thread = self._thread(thread_id)
            cps = thread.checkpoints.get(ns)
            if not cps:
                return None
            cid = get_checkpoint_id(config) or max(cps)
            return self._tuple(thread_id, thread, ns, cid) if cid in cps else None

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Yield checkpoints, newest first (by id), of one thread or of all.

        Args:
            config: ``thread_id`` (None: every thread), optionally ``checkpoint_ns``
                and ``checkpoint_id``.
            filter: Keep checkpoints whose metadata has these key/values.
            before: Keep checkpoints with an id below this config's.
            limit: At most this many.
        """
        if config is not None:
            thread_ids = [str(config["configurable"]["thread_id"])]
            want_ns = config["configurable"].get("checkpoint_ns")
            want_id = get_checkpoint_id(config)
        else:
            thread_ids = [s[len(LANGGRAPH_PREFIX) :] for s in self.store.streams() if s.startswith(LANGGRAPH_PREFIX)]
            want_ns = want_id = None
        before_id = get_checkpoint_id(before) if before else None
        if config is not None and want_ns is not None and not want_id and not filter:
            walked = self._walk(thread_ids[0], want_ns, before_id, limit)
            if walked is not None:
                yield from walked
                return
        left = limit
        for thread_id in thread_ids:
            found = self._indexed(
                thread_id, want_ns=want_ns, want_id=want_id, before_id=before_id, filter=filter, limit=left
            )
            yield from found
            if left is not None:
                left -= len(found)
                if left <= 0:
                    return

    def _indexed(
        self,
        thread_id: str,
        *,
        want_ns: str | None,
        want_id: str | None,
        before_id: str | None,
        filter: dict[str, Any] | None,
        limit: int | None,
    ) -> builtins.list[CheckpointTuple]:
        """`list` of one thread through its full index: every namespace, newest id first."""
        found: builtins.list[CheckpointTuple] = []
        with self._lock(thread_id):
            thread = self._thread(thread_id)
            for ns, cps in thread.checkpoints.items():
                if want_ns is not None and ns != want_ns:
                    continue
                for cid in sorted(cps, reverse=True):
                    if (want_id and cid != want_id) or (before_id and cid >= before_id):
                        continue
                    if filter:
                        md = self.serde.loads_typed(cps[cid].metadata)
                        if not all(md.get(k) == v for k, v in filter.items()):
                            continue
                    if limit is not None and len(found) >= limit:
                        return found
                    found.append(self._tuple(thread_id, thread, ns, cid))
        return found

    def _walk(
        self, thread_id: str, ns: str, before_id: str | None, limit: int | None
    ) -> builtins.list[CheckpointTuple] | None:
        """`list` of one namespace, newest first, along the headers' `prev` (None: the full index must answer).

        Reads the headers it passes (at most `limit` plus those newer than `before_id`)
        and each listed checkpoint's values and writes: not the rest of the thread.
        """
        found: builtins.list[CheckpointTuple] = []
        with self._lock(thread_id):
            head = self._newest(thread_id, ns)
            if head is _NO_CHECKPOINT:
                return found
            if head is None or not head.ordered:
                return None
            seq, header, upto = head.seq, head.header, None
            late: dict[str, builtins.list[int]] = defaultdict(list)
            for cid, at in head.late:
                late[cid].append(at)
            while limit is None or len(found) < limit:
                for cid, at in header[12]:  # late writes to older checkpoints, listed here
                    late[cid].append(at)
                if before_id is None or header[2] < before_id:
                    writes = self._writes_after(thread_id, seq, upto) + self._writes_at(thread_id, late[header[2]])
                    one = self._one(thread_id, seq, header, writes)
                    found.append(self._tuple(thread_id, one, ns, str(header[2])))
                prev = int(header[10])
                if not prev:
                    break
                got = list(self.store.read(LANGGRAPH_PREFIX + thread_id, prev - 1, kinds=[Kind.CHECKPOINT], limit=1))
                older = self._unpack(thread_id, prev, got[0].payload) if got and got[0].seq == prev else None
                if older is None or older[0] != _FORMAT or older[1] != ns or not older[2] < header[2]:
                    msg = f"record {seq}: its previous header (record {prev}) is missing or not its namespace's"
                    raise CheckpointCorruptError(thread_id, str(header[2]), msg)
                seq, header, upto = prev, older, seq
        return found

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint with the values of the channels in `new_versions`; return its config."""
        thread_id = _thread_id(config)
        ns = config["configurable"].get("checkpoint_ns", "")
        rest = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        values = checkpoint["channel_values"]
        entries, payloads = [], []
        for channel, version in new_versions.items():
            if channel in values:
                type_, data = self.serde.dumps_typed(values[channel])
                payloads.append(data)
            else:
                type_ = _EMPTY
            entries.append([channel, version, type_])
        cid = checkpoint["id"]
        with self._lock(thread_id):
            head = self._newest(thread_id, ns)
            parent = config["configurable"].get("checkpoint_id")
            inherited = self._inherited(
                thread_id,
                ns,
                head=head,
                parent=parent,
                versions=checkpoint["channel_versions"],
                new_versions=new_versions,
            )
            header = [
                _FORMAT,
                ns,
                cid,
                parent,
                *self.serde.dumps_typed(rest),
                *self.serde.dumps_typed(get_checkpoint_metadata(config, metadata)),
                entries,
                inherited,
                head.seq if isinstance(head, _Head) else 0,
                head is _NO_CHECKPOINT or (isinstance(head, _Head) and head.ordered and cid > head.id),
                head.late if isinstance(head, _Head) else [],
            ]
            (seq,) = self._append(thread_id, [(Kind.CHECKPOINT, header, payloads)])
            self._remember((thread_id, ns), _Head.of(seq, header))
        return _config(thread_id, ns, cid)

    def _inherited(
        self,
        thread_id: str,
        ns: str,
        *,
        head: _Head | None,
        parent: str | None,
        versions: ChannelVersions,
        new_versions: ChannelVersions,
    ) -> builtins.list[builtins.list[Any]]:
        """Return ``[channel, version, type, seq]`` of each value a checkpoint keeps from before.

        Found in the namespace's head, else in the full index (lock held).
        """
        out = []
        for channel, version in versions.items():
            if channel in new_versions:
                continue
            got = head.channels.get(channel) if isinstance(head, _Head) and head.id == parent else None
            if got is not None and got[0] == version:
                ref: tuple[str, int] | None = (got[1], got[2])
            elif head is _NO_CHECKPOINT:
                ref = None
            else:
                ref = self._thread(thread_id).resolve(ns, parent, channel, version)
            if ref is not None:
                out.append([channel, version, *ref])
        return out

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Store a task's writes to the checkpoint named by `config`."""
        thread_id = _thread_id(config)
        ns = config["configurable"].get("checkpoint_ns", "")
        entries, payloads = [], []
        for idx, (channel, value) in enumerate(writes):
            type_, data = self.serde.dumps_typed(value)
            entries.append([WRITES_IDX_MAP.get(channel, idx), channel, type_])
            payloads.append(data)
        cid = config["configurable"]["checkpoint_id"]
        header = [_WRITES_FORMAT, ns, cid, task_id, task_path, entries]
        with self._lock(thread_id):
            (seq,) = self._append(thread_id, [(Kind.WRITES, header, payloads)])
            head = self._cached((thread_id, ns))
            if head is not None and head.id != cid:
                head.late.append([cid, seq])  # to an older checkpoint: the next header lists it

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of the thread (a tombstone; `SegmentStore.compact` frees the space)."""
        thread_id = str(thread_id)
        with self._lock(thread_id):
            self.store.delete_stream(LANGGRAPH_PREFIX + thread_id)
            self._forget(thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata ``run_id`` is one of `run_ids`, with their writes.

        The thread's other checkpoints are copied forward and the older records pruned
        (crash-safe: a crash in between leaves duplicates, never a loss).
        """
        runs = set(run_ids)
        if not runs:
            return
        for stream in self.store.streams():
            if not stream.startswith(LANGGRAPH_PREFIX):
                continue
            thread_id = stream[len(LANGGRAPH_PREFIX) :]
            with self._lock(thread_id):
                thread = self._thread(thread_id)
                keep = []
                for ns, cps in thread.checkpoints.items():
                    for cid, cp in cps.items():
                        if self.serde.loads_typed(cp.metadata).get("run_id") not in runs:
                            keep.append((ns, cid))
                if len(keep) < sum(len(cps) for cps in thread.checkpoints.values()):
                    self._rewrite(thread_id, thread, keep)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of one thread to another (appended to the target)."""
        source, target = str(source_thread_id), str(target_thread_id)
        if source == target:
            return
        first, second = sorted([source, target])  # one lock order for every pair of threads
        with self._lock(first), self._lock(second):
            thread = self._thread(source)
            keep = [(ns, cid) for ns, cps in thread.checkpoints.items() for cid in cps]
            empty = self.store.latest(LANGGRAPH_PREFIX + target, Kind.CHECKPOINT) is None
            self._copy(source, thread, keep, target, ordered=empty)
            self._forget(target)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: ``"keep_latest"`` keeps the newest checkpoint of each namespace, ``"delete"`` none.

        Raises:
            InvalidArgumentError: An unknown strategy.
        """
        if strategy not in {"keep_latest", "delete"}:
            msg = f"unknown prune strategy {strategy!r} (use 'keep_latest' or 'delete')"
            raise InvalidArgumentError(msg)
        for thread_id in map(str, thread_ids):
            if strategy == "delete":
                self.delete_thread(thread_id)
                continue
            with self._lock(thread_id):
                thread = self._thread(thread_id)
                keep = [(ns, max(cps)) for ns, cps in thread.checkpoints.items() if cps]
                if sum(len(cps) for cps in thread.checkpoints.values()) > len(keep):
                    self._rewrite(thread_id, thread, keep)

    def _rewrite(self, thread_id: str, thread: _Thread, keep: Sequence[tuple[str, str]]) -> None:
        """Keep only the checkpoints `keep` (and their writes) of a thread (lock held).

        Appends a copy of each kept checkpoint and of its writes (`_copy`), then prunes
        every older record: the copies are the newest records of each kind.
        """
        stream = LANGGRAPH_PREFIX + thread_id
        if not keep:
            self.store.delete_stream(stream)
            self._forget(thread_id)
            return
        counts = self._copy(thread_id, thread, keep, thread_id, ordered=True)
        for kind, n in counts.items():
            self.store.prune(stream, kind, n)
        self._forget(thread_id)

    def _copy(
        self, source: str, thread: _Thread, keep: Sequence[tuple[str, str]], target: str, *, ordered: bool
    ) -> dict[int, int]:
        """Append to `target` a copy of checkpoints `keep` of `source` and of their writes.

        Oldest id first, in one write (both locks held); `thread` is `source`'s index.
        Each value is copied once: a later copy names the earlier copy's record among its
        inherited values, and links to the previous copy of its namespace, so the copies
        serve the fast path by themselves (`ordered`: nothing of the namespace precedes
        them, as after a prune or into an empty thread). Returns the records written per kind.
        """
        groups: list[tuple[int, list[Any], list[bytes]]] = []
        at = self.store.last_seq(LANGGRAPH_PREFIX + target)  # the writer lock and the thread lock: the seqs to come
        copied: dict[tuple[str, int], int] = {}
        """(serde type, source seq) of a value copied already -> its seq in `target`."""
        prev: dict[str, int] = {}
        for ns, cid in sorted(keep, key=lambda k: k[1]):
            cp = thread.checkpoints[ns][cid]
            versions = self.serde.loads_typed(cp.checkpoint)["channel_versions"]
            refs = [(ch, v, *ref) for ch, v in versions.items() if (ref := thread.resolve(ns, cid, ch, v)) is not None]
            fresh = [r for r in refs if r[2] == _EMPTY or (r[2], r[3]) not in copied]
            stored = thread.writes.get((ns, cid), {})
            payloads = self._values(source, [s for *_, s in fresh] + [w.seq for w in stored.values()])
            present = [r for r in fresh if r[2] == _EMPTY or r[3] in payloads]
            inherited = [[ch, v, t, copied[(t, s)]] for ch, v, t, s in refs if t != _EMPTY and (t, s) in copied]
            values = [payloads[s] for _, _, t, s in present if t != _EMPTY]
            entries = [[ch, v, t] for ch, v, t, _ in present]
            header_seq = at + len(values) + 1
            for (_, _, t, s), value_seq in zip(present, _value_seqs(header_seq, entries), strict=True):
                if t != _EMPTY:
                    copied[(t, s)] = value_seq
            header = [_FORMAT, ns, cid, cp.parent, *cp.checkpoint, *cp.metadata, entries, inherited]
            header += [prev.get(ns, 0), ordered, []]  # each copy's writes follow it: none is late
            prev[ns] = at = header_seq
            groups.append((Kind.CHECKPOINT, header, values))
            by_task: dict[tuple[str, str], list[tuple[int, _Write]]] = defaultdict(list)
            for (task_id, idx), w in stored.items():
                by_task[(task_id, w.task_path)].append((idx, w))
            for (task_id, task_path), ws in by_task.items():
                header = [_WRITES_FORMAT, ns, cid, task_id, task_path, [[idx, w.channel, w.type] for idx, w in ws]]
                groups.append((Kind.WRITES, header, [payloads[w.seq] for _, w in ws]))
                at += len(ws) + 1
        counts = {Kind.CHECKPOINT: 0, Kind.WRITES: 0, VALUE_KIND: 0}
        if not groups:
            return counts
        seqs = self._append(target, groups)
        if seqs[-1] != at:  # pragma: no cover - another writer of a locked thread
            msg = f"copies ended at record {seqs[-1]}, expected {at}"
            raise CheckpointCorruptError(target, None, msg)
        for kind, _, values in groups:
            counts[kind] += 1
            counts[VALUE_KIND] += len(values)
        return counts

    def get_next_version(self, current: str | None, channel: None) -> str:
        """A new channel version: a counter plus a random part, so forks never reuse one."""
        n = 0 if current is None else int(str(current).split(".", maxsplit=1)[0])
        return f"{n + 1:032}.{random.random():016}"

    # -- async: the sync methods in a worker thread ----------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async `get_tuple`."""
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async `list`."""
        found = await asyncio.to_thread(lambda: [*self.list(config, filter=filter, before=before, limit=limit)])
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async `put`."""
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Async `put_writes`."""
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async `delete_thread`."""
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async `delete_for_runs`."""
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async `copy_thread`."""
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async `prune`."""
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
