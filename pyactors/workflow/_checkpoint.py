"""Checkpoints: how they are stored and read, and the two checkpointers.

A thread's records are one stream (``wf/<thread_id>``); `pyactors.workflow._record`
describes them. Every read starts from the store's index, never from the stream's start:

* the newest checkpoint is ``latest(CHECKPOINT)``; its state is its base (``latest(SNAPSHOT)``
  when it builds on the newest base, as every checkpoint but an old fork's does) plus the
  deltas between them (one read of at most `FULL_EVERY` - 1 records); node writes that a
  crash left after it are found with ``latest(WRITES)`` (and read only when there are some);
* a checkpoint named by id is found at the seq its id ends with (verified), then read the same way;
* history follows each checkpoint's ``prev`` (the one written before it), newest first.

Records written before issue 15 (versions 1 and 2, no base) and ids without a seq are
found by reading the thread's stream once (`_Reader.scan`); so are the checkpoints
before a damaged one, so that damage costs only what it hides.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import math
import operator
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from pyactors.errors import (
    AuthenticationError,
    CheckpointCorruptError,
    CheckpointNotFoundError,
    CorruptSegmentError,
    InvalidArgumentError,
    ResumeConflictError,
    SerializationError,
)
from pyactors.serialization import PickleSerializer, Serializer
from pyactors.store import WORKFLOW_PREFIX, Durability, Kind, SegmentStore, stream_of
from pyactors.workflow._record import (
    VERSION,
    CheckpointRecord,
    decode_checkpoint,
    decode_state,
    decode_writes,
    encode_base,
    encode_writes,
)

if TYPE_CHECKING:
    import builtins
    import os
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from types import TracebackType

__all__ = ["Checkpointer", "FileCheckpointer", "Head", "MemoryCheckpointer", "NodeError", "Snapshot"]

logger = logging.getLogger("pyactors.workflow")

FULL_EVERY = 32
"""A checkpoint starts a new base when its chain of deltas would reach this length."""
CHAIN_BYTES = 1 << 20
"""... or when its deltas since the base hold more bytes than the base and this."""

_CP, _BASE, _WRITES = Kind.CHECKPOINT, Kind.SNAPSHOT, Kind.WRITES
_APPENDABLE = (list, str, bytes)
_MISSING: Any = object()

Chain = tuple[tuple[int, bytes], ...]
"""The (kind, payload) records a checkpoint's state is built from: its base (or a legacy
full checkpoint), then each delta up to the checkpoint's own record."""


def _split_appends(parent: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the keys written since `parent` into whole values and appended tails.

    A value of the same type (list, str or bytes) as the parent's that starts with the
    parent's value is stored as the added tail only, so a growing list (a reducer such
    as ``operator.add``) costs what it gained. List items must be the very same objects
    (``is``): ``1 == True`` must not turn ``[True]`` into ``[1]``.
    """
    whole: dict[str, Any] = {}
    appended: dict[str, Any] = {}
    for key, new in values.items():
        old = parent.get(key, _MISSING)
        kind = type(new)
        n = len(old) if kind is type(old) and kind in _APPENDABLE else 0
        if n and len(new) > n and (all(map(operator.is_, old, new)) if kind is list else new.startswith(old)):
            appended[key] = new[n:]
        else:
            whole[key] = new
    return whole, appended


class NodeError(NamedTuple):
    """A node that raised.

    Attributes:
        node: The node's name.
        exc_type: The exception's class name.
        message: `str()` of the exception.
        traceback: The formatted traceback.
    """

    node: str
    exc_type: str
    message: str
    traceback: str


class Snapshot(NamedTuple):
    """One checkpoint of a workflow thread, with its state materialised.

    Attributes:
        thread_id: The thread.
        checkpoint_id: This checkpoint.
        parent_id: The checkpoint it follows (None for a thread's first).
        step: The superstep count (0: the input).
        state: The state (a copy: changing it changes nothing stored).
        completed_nodes: Every node that finished in this lineage, in order.
        next_nodes: The nodes the next superstep runs (empty: finished).
        pending_writes: Writes of nodes that finished in a superstep that did not.
        error: The node failure recorded here, if any.
        metadata: ``source`` (input, loop, update, resume, fork, error),
            ``created_at`` and, for resumes, ``recovery_ms``.
    """

    thread_id: str
    checkpoint_id: str
    parent_id: str | None
    step: int
    state: dict[str, Any]
    completed_nodes: tuple[str, ...]
    next_nodes: tuple[str, ...]
    pending_writes: dict[str, dict[str, Any]]
    error: NodeError | None
    metadata: dict[str, Any]
    node_states: dict[str, Any]
    """Own states of the stateful nodes."""

    @property
    def is_final(self) -> bool:
        """True when the run ended (no next nodes, no error)."""
        return not self.next_nodes and self.error is None


@dataclass(slots=True, eq=False)
class Head:
    """A checkpoint to continue from, with its state built (from `Checkpointer.load_head`).

    What a run holds between supersteps: the next `Checkpointer.write_checkpoint` gets it
    as the parent and returns the new head. Its `state` is the library's own: hand users
    `Checkpointer.snapshot(head)`, which decodes a fresh copy.

    Attributes:
        thread_id: The thread.
        record: The checkpoint's record.
        state: Its state.
        completed: Every node that finished in its lineage, in order.
        node_states: Stateful nodes' own states.
        writes: Writes of nodes that finished after it, in a superstep a crash cut short
            (only for the thread's newest checkpoint).
        node_writes: Those nodes' own states (stateful nodes only).
        is_latest: It is the thread's newest checkpoint.
    """

    thread_id: str
    record: CheckpointRecord
    state: dict[str, Any]
    completed: list[str]
    node_states: dict[str, Any]
    writes: dict[str, dict[str, Any]]
    node_writes: dict[str, Any]
    is_latest: bool
    chain: Chain
    """The records its state is built from (see `Chain`)."""
    writes_payloads: tuple[bytes, ...]
    """The writes records behind `writes`."""
    chain_bytes: int
    """Bytes of its deltas since its base."""
    newest_seq: int
    """Seq of the thread's newest checkpoint record (the next one's ``prev``)."""
    newest_base: int | None
    """Seq of the thread's newest base record."""


def _decode(thread_id: str, loads: Callable[[bytes], Any], payload: bytes) -> Any:
    try:
        return loads(payload)
    except SerializationError as exc:
        raise CheckpointCorruptError(thread_id, None, f"SerializationError: {exc}") from None


def _materialise(
    thread_id: str, loads: Callable[[bytes], Any], chain: Chain
) -> tuple[dict[str, Any], list[str], dict[str, Any], CheckpointRecord]:
    """(state, completed nodes, node states, the checkpoint's record) decoded from `chain`.

    Everything returned is decoded afresh, shared with nothing.
    """
    (kind, payload), *deltas = chain
    data = _decode(thread_id, loads, payload)
    if kind == _BASE:
        state, completed, nodes = decode_state(thread_id, data)
        last = None
    else:  # a legacy full checkpoint
        last = decode_checkpoint(thread_id, data, 0)
        state, completed, nodes = dict(last.values), list(last.completed), dict(last.nodes)
    grown: dict[str, list[Any]] = {}
    """Lists made here by an append, so extended in place by the next ones (a list decoded
    from a record may be shared by two keys: that one is copied)."""
    for _, payload in deltas:
        last = decode_checkpoint(thread_id, _decode(thread_id, loads, payload), 0)
        state.update(last.values)
        for key, tail in last.appended.items():
            try:
                own = grown.get(key)
                if own is not None and own is state[key] and type(tail) is list:
                    own.extend(tail)
                else:
                    state[key] = state[key] + tail
                    if type(state[key]) is list:
                        grown[key] = state[key]
            except (KeyError, TypeError) as exc:
                msg = f"appends to {key!r}, which its parent's state cannot take ({type(exc).__name__})"
                raise CheckpointCorruptError(thread_id, last.id, msg) from None
        completed.extend(last.completed)
        nodes.update(last.nodes)
    if last is None:
        raise CheckpointCorruptError(thread_id, None, "a base without its checkpoint")
    return state, completed, nodes, last


class _Scan(NamedTuple):
    """The valid checkpoint records of a whole stream, in order (the fallback read)."""

    order: list[CheckpointRecord]
    by_id: dict[str, CheckpointRecord]
    damage: CheckpointCorruptError | None


class _Reader:
    """Reads one thread's records for one call, each at most once (see the module docstring)."""

    def __init__(self, checkpointer: Checkpointer, thread_id: str) -> None:
        _check_thread_id(thread_id)
        self.cp, self.thread_id = checkpointer, thread_id
        self.loads = checkpointer.serializer.loads
        self.raw: dict[int, bytes] = {}
        """Checkpoint payloads read, by seq."""
        self.records: dict[int, CheckpointRecord] = {}
        self.bases: dict[int, bytes] = {}
        self.newest_base: Any = _MISSING
        """(seq, payload) of the newest base, None, or not read yet."""
        self._scan: _Scan | None = None

    def _store(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a storage method; store damage becomes `CheckpointCorruptError`, tampering stays what it is."""
        try:
            return fn(self.thread_id, *args)
        except AuthenticationError:
            raise  # tampering (or the wrong key) is not damage to resume around
        except CorruptSegmentError as exc:
            raise CheckpointCorruptError(self.thread_id, None, str(exc)) from None

    def _read(self, after_seq: int, kinds: tuple[int, ...], limit: int | None) -> list[tuple[int, int, bytes]]:
        return self._store(lambda t: list(self.cp._read(t, after_seq, kinds, limit)))  # type: ignore[no-any-return]

    def _record(self, seq: int) -> CheckpointRecord:
        if seq not in self.records:
            self.records[seq] = decode_checkpoint(
                self.thread_id, _decode(self.thread_id, self.loads, self.raw[seq]), seq
            )
        return self.records[seq]

    def newest(self) -> CheckpointRecord | None:
        """The newest checkpoint record (one read), or None for an unknown thread."""
        got = self._store(self.cp._latest, _CP)
        if got is None:
            return None
        self.raw[got[0]] = got[1]
        return self._record(got[0])

    def newest_base_seq(self) -> int | None:
        if self.newest_base is _MISSING:
            self.newest_base = self._store(self.cp._latest, _BASE)
        return None if self.newest_base is None else self.newest_base[0]

    def record_at(self, seq: int, checkpoint_id: str | None = None) -> CheckpointRecord | None:
        """The checkpoint record at `seq` (and with that id), or None."""
        if seq not in self.raw:
            got = self._read(seq - 1, (_CP,), 1)
            if not got or got[0][0] != seq:
                return None
            self.raw[seq] = got[0][2]
        rec = self._record(seq)
        return rec if checkpoint_id is None or rec.id == checkpoint_id else None

    def _base(self, rec: CheckpointRecord) -> bytes:
        seq = rec.base
        assert seq is not None
        if seq not in self.bases:
            if self.newest_base_seq() == seq:
                self.bases[seq] = self.newest_base[1]
            else:
                got = self._read(seq - 1, (_BASE,), 1)
                if not got or got[0][0] != seq:
                    raise CheckpointCorruptError(self.thread_id, rec.id, f"its base (record {seq}) is missing")
                self.bases[seq] = got[0][2]
        return self.bases[seq]

    def chain(self, rec: CheckpointRecord) -> Chain:
        """The records `rec`'s state is built from: its base and its deltas (one read for all the deltas)."""
        if rec.version != VERSION:
            return self._legacy_chain(rec)
        if rec.depth and rec.parent_seq not in self.raw and rec.base is not None:
            # Between a base and the next one the stream holds one line of checkpoints.
            for seq, _, payload in self._read(rec.base, (_CP,), rec.depth):
                self.raw.setdefault(seq, payload)
        line = [rec]
        at = rec
        while at.depth > 0:
            parent = None if at.parent_seq is None else self.record_at(at.parent_seq, at.parent)
            if parent is None or parent.base != rec.base or parent.depth != at.depth - 1:
                raise CheckpointCorruptError(self.thread_id, rec.id, f"its parent {at.parent} is missing")
            line.append(parent)
            at = parent
        return ((_BASE, self._base(rec)), *((_CP, self.raw[r.seq]) for r in reversed(line)))

    def _legacy_chain(self, rec: CheckpointRecord) -> Chain:
        by_id = self.scan().by_id
        line = [rec]
        while not line[-1].full:
            parent = by_id.get(line[-1].parent) if line[-1].parent is not None else None
            if parent is None or len(line) > len(by_id):
                raise CheckpointCorruptError(self.thread_id, rec.id, f"its parent {line[-1].parent} is missing")
            line.append(parent)
        return tuple((_CP, self.raw[r.seq]) for r in reversed(line))

    def scan(self) -> _Scan:
        """Every valid checkpoint record of the stream, read once (legacy records, lost ids, damage)."""
        if self._scan is None:
            started = time.perf_counter()
            order: list[CheckpointRecord] = []
            damage = None
            try:
                for seq, kind, payload in self.cp._read(self.thread_id, 0, (_CP, _BASE), None):
                    if kind == _BASE:
                        self.bases[seq] = payload
                        continue
                    self.raw[seq] = payload
                    try:
                        order.append(self._record(seq))
                    except CheckpointCorruptError as exc:
                        damage = exc
            except AuthenticationError:
                raise
            except CorruptSegmentError as exc:  # the records before the damage stay readable
                damage = CheckpointCorruptError(self.thread_id, None, str(exc))
            self._scan = _Scan(order, {r.id: r for r in order}, damage)
            logger.debug(
                "scan thread=%s checkpoints=%d bytes=%d ms=%.2f",
                self.thread_id,
                len(order),
                sum(map(len, self.raw.values())) + sum(map(len, self.bases.values())),
                (time.perf_counter() - started) * 1000,
            )
        return self._scan

    def find(self, checkpoint_id: str) -> CheckpointRecord:
        """A checkpoint by id: at the seq its id names, else by a scan.

        Raises:
            CheckpointNotFoundError: No such thread or checkpoint.
            CheckpointCorruptError: It is not found and the stream is damaged.
        """
        hint = _seq_of(checkpoint_id)
        if hint is not None:
            with contextlib.suppress(CheckpointCorruptError):  # the scan tells
                rec = self.record_at(hint, checkpoint_id)
                if rec is not None:
                    return rec
        scan = self.scan()
        found = scan.by_id.get(checkpoint_id)
        if found is None:
            if scan.damage is not None:
                raise scan.damage
            msg = f"thread {self.thread_id!r} has no checkpoint {checkpoint_id!r}" if scan.order else None
            raise CheckpointNotFoundError(msg or f"no workflow thread {self.thread_id!r}")
        return found

    def writes_after(self, rec: CheckpointRecord) -> tuple[bytes, ...]:
        """Writes records of `rec`'s superstep, recorded after it (a crash cut it short)."""
        newest = self._store(self.cp._latest, _WRITES)
        if newest is None or newest[0] < rec.seq:
            return ()
        out = []
        for _, _, payload in self._read(rec.seq, (_WRITES,), None):
            if decode_writes(self.thread_id, _decode(self.thread_id, self.loads, payload))[0] == rec.id:
                out.append(payload)
        return tuple(out)

    def history(self, before: CheckpointRecord | None = None) -> Iterator[CheckpointRecord]:
        """Checkpoint records newest first (after `before`, if given), forks included.

        Follows ``prev`` one record at a time (a record's chain, read to build its state,
        brings in the ones before it); past a legacy record, a pruned or a damaged one,
        it goes on with a scan.
        """
        seen: set[str] = set() if before is None else {before.id}
        rec: CheckpointRecord | None = before
        upto = math.inf
        if rec is None:
            try:
                rec = self.newest()
            except CheckpointCorruptError:
                rec = None
            else:
                if rec is None:
                    return
                seen.add(rec.id)
                yield rec
        while rec is not None:
            upto = rec.seq
            if rec.version == VERSION and rec.prev is None:
                return  # the thread's first
            prev = None
            if rec.version == VERSION:
                with contextlib.suppress(CheckpointCorruptError):
                    prev = self.record_at(rec.prev)  # type: ignore[arg-type]
            if prev is None or prev.id in seen:
                break
            seen.add(prev.id)
            yield prev
            rec = prev
        for older in reversed(self.scan().order):
            if older.seq < upto and older.id not in seen:
                seen.add(older.id)
                yield older


def _seq_of(checkpoint_id: str) -> int | None:
    """The seq a checkpoint id names (``<time>-<random>-<seq in hex>``), None for older ids."""
    parts = checkpoint_id.split("-")
    if len(parts) != 3:  # noqa: PLR2004
        return None
    try:
        return int(parts[2], 16)
    except ValueError:
        return None


def new_checkpoint_id(seq: int) -> str:
    """A new, unique checkpoint id (sortable by creation time) that names `seq`, where its record goes."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}-{seq:x}"


class Checkpointer:
    """Stores workflow checkpoints; see `FileCheckpointer` and `MemoryCheckpointer`.

    A run calls `claim`, `load_head`, `write_checkpoint`, `write_node_writes` and
    `snapshot`; users call the rest.
    """

    serializer: Serializer

    def __init__(self, serializer: Serializer) -> None:
        """Set up the shared machinery (locks per thread)."""
        self.serializer = serializer
        self._locks_guard = threading.Lock()
        self._running: set[str] = set()

    # -- storage, provided by subclasses -------------------------------------------------

    def _append(self, thread_id: str, kind: int, payload: bytes) -> int:
        """Store a record (compressed if worth it) and return its seq."""
        raise NotImplementedError

    def _append_many(self, thread_id: str, records: Iterable[tuple[int, bytes]]) -> builtins.list[int]:
        """Store (kind, payload) records all or none (uncompressed: they hold whole states); their seqs."""
        raise NotImplementedError

    def _latest(self, thread_id: str, kind: int) -> tuple[int, bytes] | None:
        """(seq, payload) of the thread's newest record of `kind`."""
        raise NotImplementedError

    def _read(
        self, thread_id: str, after_seq: int, kinds: Iterable[int], limit: int | None
    ) -> Iterator[tuple[int, int, bytes]]:
        """(seq, kind, payload) of the records after `after_seq` of `kinds`, in order, at most `limit`."""
        raise NotImplementedError

    def _last_seq(self, thread_id: str) -> int:
        raise NotImplementedError

    def _prune_kind(self, thread_id: str, kind: int, keep_last: int) -> int:
        raise NotImplementedError

    def _delete(self, thread_id: str) -> int:
        raise NotImplementedError

    def threads(self) -> list[str]:
        """Every thread with checkpoints, sorted."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the checkpointer holds (idempotent)."""

    def __enter__(self) -> Self:
        """Return the checkpointer."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close it."""
        self.close()

    # -- reading ---------------------------------------------------------------------

    def load_head(self, thread_id: str, checkpoint_id: str | None = None) -> Head | None:
        """The thread's newest checkpoint (or the one named) with its state, to continue from.

        Reads that checkpoint, its base and its deltas, and any node writes a crash left
        after it: a bounded number of reads, whatever the thread's length.

        Returns:
            The head, or None when the thread has no checkpoint (and none is named).

        Raises:
            CheckpointCorruptError: The checkpoint (or a record its state needs) is
                damaged; older checkpoints are still readable by id.
            CheckpointNotFoundError: No checkpoint `checkpoint_id`.
        """
        started = time.perf_counter()
        reader = _Reader(self, thread_id)
        found = self._find(reader, checkpoint_id)
        if found is None:
            return None
        rec, newest_seq = found
        head = self._head(reader, rec, newest_seq)
        logger.debug(
            "restore thread=%s checkpoint=%s records=%d bytes=%d ms=%.2f",
            thread_id,
            rec.id,
            len(head.chain),
            sum(len(p) for _, p in head.chain),
            (time.perf_counter() - started) * 1000,
        )
        return head

    def _find(self, reader: _Reader, checkpoint_id: str | None) -> tuple[CheckpointRecord, int] | None:
        """The newest checkpoint record (or the one named) and the seq of the newest; None: no thread."""
        if checkpoint_id is None:
            rec = reader.newest()
            return None if rec is None else (rec, rec.seq)
        try:
            newest = reader.newest()
        except CheckpointCorruptError:
            newest = None  # a damaged newest: the named one continues after it
        newest_seq = self._last_seq(reader.thread_id) if newest is None else newest.seq
        return reader.find(checkpoint_id), newest_seq

    def _read_snapshot(self, reader: _Reader, rec: CheckpointRecord, newest_seq: int) -> Snapshot:
        """`rec` as a `Snapshot`, its records decoded once (no `Head` is built)."""
        writes = reader.writes_after(rec) if rec.seq == newest_seq else ()
        return self._snapshot(reader.thread_id, reader.chain(rec), writes)

    def _head(self, reader: _Reader, rec: CheckpointRecord, newest_seq: int) -> Head:
        chain = reader.chain(rec)
        latest = rec.seq == newest_seq
        writes_payloads = reader.writes_after(rec) if latest else ()
        state, completed, nodes, _ = _materialise(reader.thread_id, reader.loads, chain)
        writes: dict[str, dict[str, Any]] = {}
        node_writes: dict[str, Any] = {}
        for payload in writes_payloads:
            _, node, w, node_state = decode_writes(reader.thread_id, _decode(reader.thread_id, reader.loads, payload))
            writes[node] = w
            if node_state is not None:
                node_writes[node] = node_state
        deltas = sum(len(p) for _, p in chain[2:])
        return Head(
            reader.thread_id,
            rec,
            state,
            completed,
            nodes,
            writes,
            node_writes,
            latest,
            chain,
            writes_payloads,
            deltas,
            newest_seq,
            reader.newest_base_seq(),
        )

    def snapshot(self, head: Head) -> Snapshot:
        """The user's view of `head`, decoded afresh from its records (it shares nothing)."""
        return self._snapshot(head.thread_id, head.chain, head.writes_payloads)

    def _snapshot(self, thread_id: str, chain: Chain, writes_payloads: tuple[bytes, ...]) -> Snapshot:
        loads = self.serializer.loads
        state, completed, nodes, rec = _materialise(thread_id, loads, chain)
        # Writes recorded after the newest checkpoint by a superstep that never finished:
        # those nodes did finish, so they count as completed.
        crashed = {}
        for payload in writes_payloads:
            _, node, writes, _ = decode_writes(thread_id, _decode(thread_id, loads, payload))
            crashed[node] = writes
        completed += [n for n in crashed if n not in completed]
        try:
            error = None if rec.error is None else NodeError(**rec.error)
        except TypeError as exc:
            raise CheckpointCorruptError(thread_id, rec.id, f"malformed error ({exc})") from None
        return Snapshot(
            thread_id=thread_id,
            checkpoint_id=rec.id,
            parent_id=rec.parent,
            step=rec.step,
            state=state,
            completed_nodes=tuple(completed),
            next_nodes=tuple(rec.next),
            pending_writes={**crashed, **rec.pending},
            error=error,
            metadata=rec.meta,
            node_states=nodes,
        )

    def list(self, thread_id: str, limit: int | None = None, before: str | None = None) -> list[Snapshot]:
        """The thread's checkpoints, forks included, newest first.

        Reads lazily: `limit` checkpoints cost the same however long the thread is.

        Args:
            thread_id: The thread.
            limit: At most this many (default: all).
            before: Start after this checkpoint (the one written before it comes first).

        Raises:
            CheckpointNotFoundError: No such thread (or no checkpoint `before`).
            InvalidArgumentError: A negative `limit`.
        """
        if limit is not None and limit < 0:
            msg = f"limit must be at least 0, got {limit}"
            raise InvalidArgumentError(msg)
        reader = _Reader(self, thread_id)
        start = None if before is None else reader.find(before)
        try:
            newest = reader.newest()
        except CheckpointCorruptError:
            newest = None
        newest_seq = -1 if newest is None else newest.seq

        def readable() -> Iterator[Snapshot]:
            for rec in reader.history(start):
                try:
                    yield self._read_snapshot(reader, rec, newest_seq)
                except CheckpointCorruptError:
                    continue  # its state needs a damaged record: left out, like the damaged record itself

        out = [*itertools.islice(readable(), limit)]
        if not out and start is None and limit != 0:
            scan = reader.scan()
            if scan.damage is not None:
                raise scan.damage
            msg = f"no workflow thread {thread_id!r}"
            raise CheckpointNotFoundError(msg)
        return out

    def get(self, thread_id: str, checkpoint_id: str) -> Snapshot:
        """One checkpoint by id.

        Raises:
            CheckpointNotFoundError: No such thread or checkpoint.
        """
        reader = _Reader(self, thread_id)
        found = self._find(reader, checkpoint_id)
        assert found is not None
        return self._read_snapshot(reader, *found)

    def latest(self, thread_id: str) -> Snapshot | None:
        """The thread's newest checkpoint, or None for an unknown thread.

        Raises:
            CheckpointCorruptError: The newest record is damaged (older ones are
                still readable with `get`).
        """
        reader = _Reader(self, thread_id)
        found = self._find(reader, None)
        return None if found is None else self._read_snapshot(reader, *found)

    def unfinished(self) -> builtins.list[str]:
        """The threads whose newest checkpoint is not final; reads one record per thread."""
        out = []
        for thread_id in self.threads():
            try:
                rec = _Reader(self, thread_id).newest()
            except Exception:  # noqa: BLE001 - a damaged thread is unfinished too
                out.append(thread_id)
                continue
            if rec is not None and (rec.next or rec.error is not None):
                out.append(thread_id)
        return out

    # -- writing ---------------------------------------------------------------------

    def write_checkpoint(
        self,
        thread_id: str,
        parent: Head | None,
        *,
        step: int,
        values: Mapping[str, Any],
        next: builtins.list[str],
        waiting: builtins.list[str] | None = None,
        completed: builtins.list[str] | None = None,
        nodes: Mapping[str, Any] | None = None,
        pending: Mapping[str, Any] | None = None,
        error: NodeError | None = None,
        source: str,
        meta: Mapping[str, Any] | None = None,
    ) -> Head:
        """Append a checkpoint after `parent` (None: the thread's first) and return it as the new head.

        Args:
            thread_id: The thread.
            parent: The checkpoint it follows.
            step: Its superstep count.
            values: The keys that changed since `parent`, with their new whole values.
            next: The nodes the next superstep runs.
            waiting: Joins scheduled but still waiting.
            completed: The nodes that finished since `parent`.
            nodes: Stateful nodes' own states that changed since `parent`.
            pending: Writes of nodes that finished in a superstep that did not.
            error: The node failure to record.
            source: What made it (input, loop, update, resume, fork, error).
            meta: More metadata (``source`` and ``created_at`` come first).

        It stores a delta (the keys written since the parent; for a value that extends
        the parent's, only the appended tail, see `_split_appends`), or a new base with
        the whole state when the parent is not the thread's newest checkpoint or not on
        its newest base, or when the chain would reach `FULL_EVERY` or `CHAIN_BYTES`.
        Nothing is decoded and nothing deep-copied: a checkpoint costs the size of its change.
        """
        started = time.perf_counter()
        if parent is None:
            state, all_completed, all_nodes = dict(values), list(completed or []), dict(nodes or {})
        else:
            state = {**parent.state, **values}
            all_completed = [*parent.completed, *(completed or [])]
            all_nodes = {**parent.node_states, **(nodes or {})}
        up = None if parent is None else parent.record
        rebase = (
            parent is None
            or up is None
            or not parent.is_latest
            or up.version != VERSION
            or up.base != parent.newest_base
            or up.depth + 1 >= FULL_EVERY
            or parent.chain_bytes > max(len(parent.chain[0][1]), CHAIN_BYTES)
        )
        whole, appended = ({}, {}) if rebase or parent is None else _split_appends(parent.state, values)
        rec = CheckpointRecord(
            # The id names the seq its record gets (after its base, if it starts one).
            id=new_checkpoint_id(self._last_seq(thread_id) + 1 + rebase),
            parent=None if up is None else up.id,
            step=step,
            values=whole,
            appended=appended,
            completed=[] if rebase else list(completed or []),
            nodes={} if rebase else dict(nodes or {}),
            next=list(next),
            waiting=list(waiting or []),
            pending=dict(pending or {}),
            error=None if error is None else error._asdict(),
            meta={"source": source, "created_at": time.time(), **(meta or {})},
            base=None if rebase or up is None else up.base,
            depth=0 if rebase or up is None else up.depth + 1,
            parent_seq=None if up is None else up.seq,
            prev=None if parent is None else parent.newest_seq,
        )
        head = self._write(thread_id, parent, rec, state=state, completed=all_completed, nodes=all_nodes, rebase=rebase)
        logger.debug(
            "checkpoint thread=%s checkpoint=%s step=%d base=%s bytes=%d ms=%.2f",
            thread_id,
            rec.id,
            step,
            rebase,
            sum(len(p) for _, p in head.chain[-1 if not rebase else 0 :]),
            (time.perf_counter() - started) * 1000,
        )
        return head

    def _write(
        self,
        thread_id: str,
        parent: Head | None,
        rec: CheckpointRecord,
        *,
        state: dict[str, Any],
        completed: builtins.list[str],
        nodes: dict[str, Any],
        rebase: bool,
    ) -> Head:
        """Append `rec` (after a new base holding `state`, if `rebase`); the new head."""
        dumps = self.serializer.dumps
        if rebase:
            base = dumps(encode_base(rec.id, state, completed, nodes))
            # The base and its checkpoint are one batch: a crash leaves both or neither,
            # never a thread whose only record is a base. Both are written raw: zstd would
            # cost ~0.5-1 ms per 100 KB of state on the path of the invoke; compact()
            # compresses them later, and restoring skips decompression.
            rec.base = self._last_seq(thread_id) + 1  # the thread is claimed: nobody appends meanwhile
            payload = dumps(rec.encode())
            seqs = self._append_many(thread_id, [(_BASE, base), (_CP, payload)])
            if seqs != [rec.base, rec.base + 1]:  # pragma: no cover - a second writer of a claimed thread
                msg = f"records {seqs} of thread {thread_id!r} were written while it was claimed"
                raise CheckpointCorruptError(thread_id, rec.id, msg)
            rec.seq = seqs[1]
            chain: Chain = ((_BASE, base),)
            chain_bytes = 0
        else:
            assert parent is not None
            chain, chain_bytes = parent.chain, parent.chain_bytes
            payload = dumps(rec.encode())
            rec.seq = self._append(thread_id, _CP, payload)
        newest_base = rec.base if rebase or parent is None else parent.newest_base
        return Head(
            thread_id,
            rec,
            state,
            completed,
            nodes,
            {},
            {},
            True,
            (*chain, (_CP, payload)),
            (),
            chain_bytes + (0 if rebase else len(payload)),
            rec.seq,
            newest_base,
        )

    def write_node_writes(
        self, thread_id: str, checkpoint_id: str, node: str, writes: Mapping[str, Any], node_state: Any
    ) -> None:
        """Record the writes of `node`, finished in the superstep that started from `checkpoint_id`.

        Args:
            thread_id: The thread.
            checkpoint_id: The checkpoint its superstep started from.
            node: The node.
            writes: Its updates.
            node_state: None, or ``[state]`` for a stateful node's own state.
        """
        rec = encode_writes(checkpoint_id, node, dict(writes), node_state)
        self._append(thread_id, _WRITES, self.serializer.dumps(rec))

    # -- retention -------------------------------------------------------------------

    def prune(self, thread_id: str, keep_last: int) -> int:
        """Delete all but the newest `keep_last` checkpoints of the thread.

        The kept ones are first copied, oldest first, each with its whole state (so
        none needs a deleted record), in one batch (a crash leaves all the copies or
        none), then the originals deleted: reads `keep_last` checkpoints, not the thread.
        The thread is claimed meanwhile, as by a run. The space comes back with the
        store's `compact()`.

        Returns:
            How many checkpoints were deleted.

        Raises:
            CheckpointNotFoundError: No such thread.
            InvalidArgumentError: `keep_last` is below 1.
            ResumeConflictError: The thread is running.
        """
        if keep_last < 1:
            msg = "keep_last must be at least 1 (use delete_thread to delete everything)"
            raise InvalidArgumentError(msg)
        with self.claim(thread_id):
            return self._prune(thread_id, keep_last)

    def _prune(self, thread_id: str, keep_last: int) -> int:
        reader = _Reader(self, thread_id)
        newest = list(itertools.islice(reader.history(), keep_last + 1))
        if not newest:
            raise reader.scan().damage or CheckpointNotFoundError(f"no workflow thread {thread_id!r}")
        if len(newest) <= keep_last:
            return 0
        dumps = self.serializer.dumps
        batch: builtins.list[tuple[int, bytes]] = []
        seq = self._last_seq(thread_id)  # the claim and the store's writer lock: no one else appends
        up: CheckpointRecord | None = None
        for rec in reversed(newest[:keep_last]):
            state, completed, nodes, _ = _materialise(thread_id, reader.loads, reader.chain(rec))
            twin = CheckpointRecord(
                id=rec.id,
                parent=rec.parent,
                step=rec.step,
                values={},
                appended={},
                completed=[],
                nodes={},
                next=rec.next,
                waiting=rec.waiting,
                pending=rec.pending,
                error=rec.error,
                meta=rec.meta,
                base=seq + 1,
                parent_seq=up.seq if up is not None and up.id == rec.parent else None,
                prev=None if up is None else up.seq,
                seq=seq + 2,
            )
            batch += [(_BASE, dumps(encode_base(rec.id, state, completed, nodes))), (_CP, dumps(twin.encode()))]
            seq, up = seq + 2, twin
        self._append_many(thread_id, batch)
        deleted = self._prune_kind(thread_id, _CP, keep_last) - keep_last  # the originals of the copies too
        self._prune_kind(thread_id, _BASE, keep_last)
        self._prune_kind(thread_id, _WRITES, 0)
        return deleted

    def delete_thread(self, thread_id: str) -> int:
        """Delete every checkpoint of the thread; return how many.

        Raises:
            CheckpointNotFoundError: No such thread.
        """
        _check_thread_id(thread_id)
        try:
            known = self._latest(thread_id, _CP) is not None
        except CorruptSegmentError:
            known = True
        if not known:
            msg = f"no workflow thread {thread_id!r}"
            raise CheckpointNotFoundError(msg)
        deleted = self._prune_kind(thread_id, _CP, 0)
        self._delete(thread_id)
        return deleted

    # -- one run per thread at a time ----------------------------------------------------

    @contextlib.contextmanager
    def claim(self, thread_id: str) -> Iterator[None]:
        """Hold the thread for one run (or update) at a time in this process.

        Raises:
            InvalidArgumentError: `thread_id` is not a valid thread id.
            ResumeConflictError: The thread is already running or resuming.
        """
        _check_thread_id(thread_id)
        with self._locks_guard:
            if thread_id in self._running:
                msg = f"workflow thread {thread_id!r} is already running or resuming"
                raise ResumeConflictError(msg)
            self._running.add(thread_id)
        try:
            yield
        finally:
            with self._locks_guard:
                self._running.discard(thread_id)


def _check_thread_id(thread_id: object) -> None:
    """Refuse what cannot be a thread id: a str of 1 to 252 UTF-8 bytes.

    Every checkpointer checks alike, so a thread that runs on `MemoryCheckpointer` runs
    on `FileCheckpointer`.

    Raises:
        InvalidArgumentError: Naming the limit; for a LangGraph-style config dict, saying
            where its thread id is.
    """
    if isinstance(thread_id, dict) and "configurable" in thread_id:
        msg = (
            "thread_id must be a str, got a LangGraph-style config: pass thread_id=config['configurable']['thread_id']"
        )
        raise InvalidArgumentError(msg)
    stream_of(thread_id, "thread id", WORKFLOW_PREFIX)


def _stream(thread_id: str) -> str:
    return WORKFLOW_PREFIX + thread_id


class FileCheckpointer(Checkpointer):
    """Checkpoints in a segment store (the default for real use).

    Holds the store's writer lock: use it as a context manager or call `close()`.

    Args:
        path: The store directory (or pass `store=` to share an open store).
        durability: The store's durability policy when it opens it.
        serializer: How checkpoints become bytes (default: the store's, pickle).
        store: An already open store to use instead of opening `path`.
        auth_key: The `auth_key` of the store it opens at `path` (see `SegmentStore`):
            every checkpoint is then authenticated, and a tampered one raises
            `AuthenticationError` instead of being resumed around.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        durability: Durability = "process",
        serializer: Serializer | None = None,
        store: SegmentStore | None = None,
        auth_key: bytes | None = None,
    ) -> None:
        if store is None:
            if path is None:
                msg = "FileCheckpointer needs a path or a store"
                raise InvalidArgumentError(msg)
            store = SegmentStore(path, durability=durability, serializer=serializer, auth_key=auth_key)
            self._owns_store = True
        else:
            self._owns_store = False
        self.store = store
        """The segment store the checkpoints live in."""
        super().__init__(serializer or store.serializer)

    def _append(self, thread_id: str, kind: int, payload: bytes) -> int:
        return self.store.append(_stream(thread_id), payload, kind)

    def _append_many(self, thread_id: str, records: Iterable[tuple[int, bytes]]) -> list[int]:
        stream = _stream(thread_id)
        return self.store.append_many([(stream, payload, kind) for kind, payload in records], compress=False)

    def _latest(self, thread_id: str, kind: int) -> tuple[int, bytes] | None:
        r = self.store.latest(_stream(thread_id), kind)
        return None if r is None else (r.seq, r.payload)

    def _read(
        self, thread_id: str, after_seq: int, kinds: Iterable[int], limit: int | None
    ) -> Iterator[tuple[int, int, bytes]]:
        for r in self.store.read(_stream(thread_id), after_seq, kinds, limit):
            yield r.seq, r.kind, r.payload

    def _last_seq(self, thread_id: str) -> int:
        return self.store.last_seq(_stream(thread_id))

    def _prune_kind(self, thread_id: str, kind: int, keep_last: int) -> int:
        return self.store.prune(_stream(thread_id), kind, keep_last)

    def _delete(self, thread_id: str) -> int:
        return self.store.delete_stream(_stream(thread_id))

    def threads(self) -> list[str]:
        """Every thread with checkpoints, sorted."""
        # A thread's stream starts with its input checkpoint, so every live wf/ stream is a thread.
        return [s[len(WORKFLOW_PREFIX) :] for s in self.store.streams() if s.startswith(WORKFLOW_PREFIX)]

    def close(self) -> None:
        """Close the store if this checkpointer opened it."""
        if self._owns_store:
            self.store.close()


class MemoryCheckpointer(Checkpointer):
    """Checkpoints in memory (tests, scratch work); serialised all the same.

    Args:
        serializer: How checkpoints become bytes (default: pickle), so that what a
            `FileCheckpointer` would refuse is refused here too.
    """

    def __init__(self, serializer: Serializer | None = None) -> None:
        super().__init__(serializer or PickleSerializer())
        self._data: dict[str, list[tuple[int, int, bytes]]] = {}
        """(seq, kind, payload) of each thread's live records, in order."""
        self._seqs: dict[str, int] = {}
        self._guard = threading.Lock()

    def _append(self, thread_id: str, kind: int, payload: bytes) -> int:
        with self._guard:
            return self._add(thread_id, kind, payload)

    def _append_many(self, thread_id: str, records: Iterable[tuple[int, bytes]]) -> list[int]:
        with self._guard:
            return [self._add(thread_id, kind, payload) for kind, payload in records]

    def _add(self, thread_id: str, kind: int, payload: bytes) -> int:
        """Append one record under the guard; return its seq."""
        seq = self._seqs[thread_id] = self._seqs.get(thread_id, 0) + 1
        self._data.setdefault(thread_id, []).append((seq, kind, payload))
        return seq

    def _latest(self, thread_id: str, kind: int) -> tuple[int, bytes] | None:
        with self._guard:
            return next(((s, p) for s, k, p in reversed(self._data.get(thread_id, [])) if k == kind), None)

    def _read(
        self, thread_id: str, after_seq: int, kinds: Iterable[int], limit: int | None
    ) -> Iterator[tuple[int, int, bytes]]:
        wanted = set(kinds)
        with self._guard:
            records = self._data.get(thread_id, [])
            start = bisect.bisect_right(records, after_seq, key=operator.itemgetter(0))
            found = (r for r in itertools.islice(records, start, None) if r[1] in wanted)
            return iter(list(itertools.islice(found, limit)))

    def _last_seq(self, thread_id: str) -> int:
        with self._guard:
            return self._seqs.get(thread_id, 0)

    def _prune_kind(self, thread_id: str, kind: int, keep_last: int) -> int:
        with self._guard:
            records = self._data.get(thread_id, [])
            of_kind = [i for i, r in enumerate(records) if r[1] == kind]
            doomed = set(of_kind[: max(0, len(of_kind) - keep_last)])
            self._data[thread_id] = [r for i, r in enumerate(records) if i not in doomed]
            return len(doomed)

    def _delete(self, thread_id: str) -> int:
        with self._guard:
            return len(self._data.pop(thread_id, []))

    def threads(self) -> list[str]:
        """Every thread with checkpoints, sorted."""
        with self._guard:
            return sorted(t for t, recs in self._data.items() if any(r[1] == Kind.CHECKPOINT for r in recs))
