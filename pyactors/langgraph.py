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
cost follows the size of the change. The headers of a thread are read once (values
stay on disk) and kept in memory as an index; values are read when a checkpoint is.

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
from collections import defaultdict
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
    import os
    from collections.abc import AsyncIterator, Iterator, Sequence
    from types import TracebackType

    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.serde.base import SerializerProtocol

__all__ = ["VALUE_KIND", "SegmentSaver"]

VALUE_KIND = LANGGRAPH_VALUE_KIND
"""The record kind of a channel value or a pending write's value (`Kind.user(16)`)."""

_FORMAT = 1
_EMPTY = "empty"  # LangGraph's type tag for a channel with a version but no value


@dataclass(slots=True)
class _Checkpoint:
    """A checkpoint header, as indexed: everything but the channel values."""

    parent: str | None
    checkpoint: tuple[str, bytes]
    metadata: tuple[str, bytes]


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

    def add(self, kind: int, seq: int, header: list[Any]) -> None:
        """Index one header record found at `seq` (its values are the records just before it)."""
        if header[0] != _FORMAT:
            msg = f"record format {header[0]!r}, expected {_FORMAT}"
            raise ValueError(msg)
        if kind == Kind.CHECKPOINT:
            _, ns, cid, parent, cp_type, cp, md_type, md, entries = header
            self.checkpoints[ns][cid] = _Checkpoint(parent, (cp_type, cp), (md_type, md))
            for (channel, version, type_), at in zip(entries, _value_seqs(seq, entries), strict=True):
                self.values[(ns, channel, version)] = (type_, at)
        else:
            _, ns, cid, task_id, task_path, entries = header
            stored = self.writes[(ns, cid)]
            for (idx, channel, type_), at in zip(entries, range(seq - len(entries), seq), strict=True):
                key = (task_id, idx)
                if idx >= 0 and key in stored:  # a regular write is kept; special ones are replaced
                    continue
                stored[key] = _Write(task_id, channel, type_, at, task_path)


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
        path: The store directory; created if missing.
        durability: The store's durability policy (``"process"``: survives kill -9;
            ``"sync"``: fdatasync before each write returns, like SQLite's default).
        serde: LangGraph serializer for values and checkpoints (default:
            LangGraph's ``JsonPlusSerializer``).
        compression_level: zstd level of the store.
        segment_bytes: Segment file size of the store.

    Raises:
        StoreLockedError: Another process has the store open.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "process",
        serde: SerializerProtocol | None = None,
        compression_level: int = 3,
        segment_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        super().__init__(serde=serde)
        self.store = SegmentStore(
            path, durability=durability, compression_level=compression_level, segment_bytes=segment_bytes
        )
        """The segment store the checkpoints live in."""
        self._threads: dict[str, _Thread] = {}
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
        """Close the store (flushes it and releases the writer lock). Idempotent."""
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

    def _append(self, thread_id: str, groups: list[tuple[int, list[Any], list[bytes]]]) -> None:
        """Append header groups (kind, header, values) in one write and index them (lock held)."""
        stream = LANGGRAPH_PREFIX + thread_id
        batch: list[tuple[str, bytes, int]] = []
        for kind, header, values in groups:
            batch.extend((stream, v, VALUE_KIND) for v in values)
            batch.append((stream, ormsgpack.packb(header), kind))
        seqs = self.store.append_many(batch)
        thread = self._thread(thread_id)
        at = 0
        for kind, header, values in groups:
            at += len(values) + 1
            thread.add(kind, seqs[at - 1], header)

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
            ref = thread.values.get((ns, channel, version))
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
        """Return the checkpoint named by `config` (its newest if no ``checkpoint_id``), or None."""
        thread_id = _thread_id(config)
        ns = config["configurable"].get("checkpoint_ns", "")
        with self._lock(thread_id):
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
        left = limit
        for thread_id in thread_ids:
            with self._lock(thread_id):
                thread = self._thread(thread_id)
                found = []
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
                        if left is not None:
                            if left <= 0:
                                break
                            left -= 1
                        found.append(self._tuple(thread_id, thread, ns, cid))
            yield from found
            if left is not None and left <= 0:
                return

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
        header = [
            _FORMAT,
            ns,
            checkpoint["id"],
            config["configurable"].get("checkpoint_id"),
            *self.serde.dumps_typed(rest),
            *self.serde.dumps_typed(get_checkpoint_metadata(config, metadata)),
            entries,
        ]
        with self._lock(thread_id):
            self._append(thread_id, [(Kind.CHECKPOINT, header, payloads)])
        return _config(thread_id, ns, checkpoint["id"])

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
        header = [_FORMAT, ns, config["configurable"]["checkpoint_id"], task_id, task_path, entries]
        with self._lock(thread_id):
            self._append(thread_id, [(Kind.WRITES, header, payloads)])

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of the thread (a tombstone; `SegmentStore.compact` frees the space)."""
        thread_id = str(thread_id)
        with self._lock(thread_id):
            self.store.delete_stream(LANGGRAPH_PREFIX + thread_id)
            self._threads.pop(thread_id, None)

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
        with self._lock(source):
            records = [(r.kind, r.payload) for r in self.store.read(LANGGRAPH_PREFIX + source)]
        if not records:
            return
        with self._lock(target):
            self.store.append_many([(LANGGRAPH_PREFIX + target, payload, kind) for kind, payload in records])
            self._threads.pop(target, None)

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

        Appends a self-contained copy of each kept checkpoint (values it needs that no
        earlier copy carries) and of its writes, then prunes every older record: the
        copies are the newest records of each kind.
        """
        stream = LANGGRAPH_PREFIX + thread_id
        if not keep:
            self.store.delete_stream(stream)
            self._threads.pop(thread_id, None)
            return
        groups: list[tuple[int, list[Any], list[bytes]]] = []
        copied: set[tuple[str, str, str | int | float]] = set()
        for ns, cid in sorted(keep, key=lambda k: k[1]):
            cp = thread.checkpoints[ns][cid]
            versions = self.serde.loads_typed(cp.checkpoint)["channel_versions"]
            refs = [(ch, v, *thread.values[(ns, ch, v)]) for ch, v in versions.items() if (ns, ch, v) in thread.values]
            refs = [r for r in refs if (ns, r[0], r[1]) not in copied]
            copied.update((ns, ch, v) for ch, v, _, _ in refs)
            stored = thread.writes.get((ns, cid), {})
            payloads = self._values(thread_id, [s for *_, s in refs] + [w.seq for w in stored.values()])
            present = [r for r in refs if r[2] == _EMPTY or r[3] in payloads]
            header = [
                _FORMAT,
                ns,
                cid,
                cp.parent,
                *cp.checkpoint,
                *cp.metadata,
                [[ch, v, t] for ch, v, t, _ in present],
            ]
            groups.append((Kind.CHECKPOINT, header, [payloads[s] for _, _, t, s in present if t != _EMPTY]))
            by_task: dict[tuple[str, str], list[tuple[int, _Write]]] = defaultdict(list)
            for (task_id, idx), w in stored.items():
                by_task[(task_id, w.task_path)].append((idx, w))
            for (task_id, task_path), ws in by_task.items():
                header = [_FORMAT, ns, cid, task_id, task_path, [[idx, w.channel, w.type] for idx, w in ws]]
                groups.append((Kind.WRITES, header, [payloads[w.seq] for _, w in ws]))
        self._append(thread_id, groups)
        counts = {Kind.CHECKPOINT: 0, Kind.WRITES: 0, VALUE_KIND: 0}
        for kind, _, values in groups:
            counts[kind] += 1
            counts[VALUE_KIND] += len(values)
        for kind, n in counts.items():
            self.store.prune(stream, kind, n)
        self._threads.pop(thread_id, None)

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
