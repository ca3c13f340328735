"""Checkpoints: what they hold, how they are stored, and the two checkpointers.

A thread's checkpoints are records of one stream (``wf/<thread_id>``), in the order
they were written. Each checkpoint record is a dict of plain data:

    {"v": 2, "id", "parent", "step", "full": bool,
     "values":    the whole state (full) or the keys written since the parent,
     "appended":  keys whose new value extends the parent's (a list, str or bytes that
                  starts with the parent's value): only the added tail (empty when full),
     "completed": the nodes that finished since the parent (all of them when full),
     "nodes":     stateful nodes' own states that changed since the parent,
     "next", "pending", "error", "meta"}

Version 1 records (before "appended") are read as version 2 with nothing appended.

A node's writes are also recorded as soon as it finishes (a "writes" record naming the
checkpoint its superstep started from), so a crash in the middle of a superstep does not
make finished nodes run again.
"""

from __future__ import annotations

import copy
import logging
import operator
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from pyactors.errors import (
    AuthenticationError,
    CheckpointCorruptError,
    CheckpointNotFoundError,
    CorruptSegmentError,
    InvalidArgumentError,
    SerializationError,
)
from pyactors.serialization import PickleSerializer, Serializer
from pyactors.store import Durability, Kind, SegmentStore

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping
    from types import TracebackType

__all__ = ["Checkpointer", "FileCheckpointer", "MemoryCheckpointer", "NodeError", "Snapshot"]

logger = logging.getLogger("pyactors.workflow")

FULL_EVERY = 32
"""A checkpoint stores the whole state when its chain of deltas reaches this length."""

_KIND_WRITES = Kind.WRITES
_REQUIRED = ("v", "id", "parent", "step", "full", "values", "completed", "nodes", "next", "pending", "error", "meta")
_VERSION = 2
_APPENDABLE = (list, str, bytes)
_STATES_CACHED = 8
"""Materialised states a thread's log keeps (each holds whole values: a growing list
kept at every checkpoint would cost memory quadratic in the run's length)."""
_MISSING: Any = object()


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


class _ThreadLog:
    """A thread's records, parsed, with states materialised on demand."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.records: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.writes: dict[str, dict[str, dict[str, Any]]] = {}
        self.node_writes: dict[str, dict[str, Any]] = {}
        self.damaged: CheckpointCorruptError | None = None
        self._damage_at = 0
        self._states: dict[str, tuple[dict[str, Any], tuple[str, ...], dict[str, Any]]] = {}

    def add_checkpoint(self, rec: dict[str, Any]) -> None:
        missing = [k for k in _REQUIRED if k not in rec]
        if rec.get("v") == 1:
            rec = {**rec, "v": 2, "appended": {}}
        wrong = missing or [k for k in ("values", "appended") if not isinstance(rec.get(k), dict)]
        if wrong:
            cid = rec.get("id") if isinstance(rec.get("id"), str) else None
            raise CheckpointCorruptError(self.thread_id, cid, f"malformed checkpoint (missing or not a dict: {wrong})")
        if rec["v"] != _VERSION:
            raise CheckpointCorruptError(self.thread_id, rec["id"], f"unknown checkpoint version {rec['v']!r}")
        if not rec["full"] and rec["parent"] not in self.records:
            raise CheckpointCorruptError(self.thread_id, rec["id"], f"its parent {rec['parent']} is missing")
        if rec["id"] not in self.records:
            self.order.append(rec["id"])
        self.records[rec["id"]] = rec
        self._states.pop(rec["id"], None)

    def mark_damaged(self, error: CheckpointCorruptError) -> None:
        """Remember damage met while reading; later valid checkpoints still count."""
        self.damaged = error
        self._damage_at = len(self.order)

    def newest_damaged(self) -> CheckpointCorruptError | None:
        """The damage, if no valid checkpoint was written after it."""
        return self.damaged if self.damaged is not None and self._damage_at == len(self.order) else None

    def materialise(self, cid: str) -> tuple[dict[str, Any], tuple[str, ...], dict[str, Any]]:
        """(state, completed nodes, node states) at checkpoint `cid`.

        Walks back to the nearest full or already materialised ancestor, so a run that
        materialises each new checkpoint's parent pays for one delta at a time.
        """
        if cid in self._states:
            return self._states[cid]
        chain = []
        at = cid
        while at not in self._states:
            rec = self.records[at]
            chain.append(rec)
            if rec["full"]:
                break
            at = rec["parent"]
        base = self._states.get(at, ({}, (), {}))
        state, completed, nodes = dict(base[0]), list(base[1]), dict(base[2])
        for rec in reversed(chain):
            state.update(rec["values"])
            for key, tail in rec["appended"].items():
                try:
                    state[key] = state[key] + tail
                except (KeyError, TypeError) as exc:
                    msg = f"appends to {key!r}, which its parent's state cannot take ({type(exc).__name__})"
                    raise CheckpointCorruptError(self.thread_id, rec["id"], msg) from None
            completed.extend(rec["completed"])
            nodes.update(rec["nodes"])
        out = (state, tuple(completed), nodes)
        self._states[cid] = out
        if len(self._states) > _STATES_CACHED:  # keep the newest few: a run only needs its parent's
            del self._states[next(iter(self._states))]
        return out

    def depth(self, cid: str) -> int:
        """How many delta records lie between `cid` and its full ancestor."""
        n = 0
        rec = self.records[cid]
        while not rec["full"]:
            n += 1
            rec = self.records[rec["parent"]]
        return n

    def snapshot(self, cid: str) -> Snapshot:
        rec = self.records[cid]
        state, completed, nodes = self.materialise(cid)
        err = rec["error"]
        # Writes recorded after this checkpoint by a superstep that never finished:
        # those nodes did finish, so they count as completed.
        unfinished = self.writes.get(cid, {}) if cid == self.latest() else {}
        completed += tuple(n for n in unfinished if n not in completed)
        return Snapshot(
            thread_id=self.thread_id,
            checkpoint_id=cid,
            parent_id=rec["parent"],
            step=rec["step"],
            state=copy.deepcopy(state),
            completed_nodes=completed,
            next_nodes=tuple(rec["next"]),
            pending_writes=copy.deepcopy({**unfinished, **rec["pending"]}),
            error=None if err is None else NodeError(**err),
            metadata=dict(rec["meta"]),
            node_states=copy.deepcopy(nodes),
        )

    def latest(self) -> str | None:
        return self.order[-1] if self.order else None


class Checkpointer:
    """Stores workflow checkpoints; see `FileCheckpointer` and `MemoryCheckpointer`."""

    serializer: Serializer

    def __init__(self, serializer: Serializer) -> None:
        """Set up the shared machinery (locks per thread)."""
        self.serializer = serializer
        self._locks_guard = threading.Lock()
        self._running: set[str] = set()

    # -- storage, provided by subclasses -------------------------------------------------

    def _append(self, thread_id: str, kind: int, payload: bytes, *, whole: bool = False) -> None:
        """Store a record; `whole` says it holds the whole state (a full checkpoint)."""
        raise NotImplementedError

    def _records(self, thread_id: str) -> list[tuple[int, bytes]]:
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

    def _load(self, thread_id: str) -> _ThreadLog:
        started = time.perf_counter()
        log = _ThreadLog(thread_id)
        loads = self.serializer.loads
        store_damage = None
        try:
            records = self._records(thread_id)
        except AuthenticationError:
            raise  # tampering (or the wrong key) is not damage to resume around
        except CorruptSegmentError as exc:
            # The store keeps the records before the damage readable: read them one by one.
            records = self._records_before_damage(thread_id)
            store_damage = CheckpointCorruptError(thread_id, None, str(exc))
        size = 0
        for kind, payload in records:
            size += len(payload)
            try:
                rec = loads(payload)
                if not isinstance(rec, dict):
                    raise CheckpointCorruptError(thread_id, None, "not a checkpoint record")
                if kind == _KIND_WRITES:
                    log.writes.setdefault(rec["checkpoint"], {})[rec["node"]] = rec["writes"]
                    if rec.get("node_state") is not None:
                        log.node_writes.setdefault(rec["checkpoint"], {})[rec["node"]] = rec["node_state"][0]
                else:
                    log.add_checkpoint(rec)
            except (SerializationError, KeyError, TypeError) as exc:
                log.mark_damaged(CheckpointCorruptError(thread_id, None, f"{type(exc).__name__}: {exc}"))
            except CheckpointCorruptError as exc:
                log.mark_damaged(exc)
        if store_damage is not None:
            log.mark_damaged(store_damage)
        logger.debug(
            "restore thread=%s checkpoints=%d bytes=%d ms=%.2f",
            thread_id,
            len(log.order),
            size,
            (time.perf_counter() - started) * 1000,
        )
        return log

    def _records_before_damage(self, thread_id: str) -> list[tuple[int, bytes]]:
        raise NotImplementedError

    def list(self, thread_id: str) -> list[Snapshot]:
        """Every checkpoint of the thread, forks included, newest first.

        Raises:
            CheckpointNotFoundError: No such thread.
        """
        log = self._existing(thread_id)
        return [log.snapshot(cid) for cid in reversed(log.order)]

    def get(self, thread_id: str, checkpoint_id: str) -> Snapshot:
        """One checkpoint by id.

        Raises:
            CheckpointNotFoundError: No such thread or checkpoint.
        """
        log = self._existing(thread_id)
        if checkpoint_id not in log.records:
            if log.damaged is not None:
                raise log.damaged
            msg = f"thread {thread_id!r} has no checkpoint {checkpoint_id!r}"
            raise CheckpointNotFoundError(msg)
        return log.snapshot(checkpoint_id)

    def latest(self, thread_id: str) -> Snapshot | None:
        """The thread's newest checkpoint, or None for an unknown thread.

        Raises:
            CheckpointCorruptError: The newest record is damaged (older ones are
                still readable with `get`).
        """
        log = self._load(thread_id)
        damaged = log.newest_damaged()
        if damaged is not None:
            raise damaged
        cid = log.latest()
        return None if cid is None else log.snapshot(cid)

    def _existing(self, thread_id: str) -> _ThreadLog:
        log = self._load(thread_id)
        if not log.order:
            if log.damaged is not None:
                raise log.damaged
            msg = f"no workflow thread {thread_id!r}"
            raise CheckpointNotFoundError(msg)
        return log

    # -- writing ---------------------------------------------------------------------

    def _write_checkpoint(self, log: _ThreadLog, rec: dict[str, Any]) -> str:
        """Append a checkpoint (a delta unless its chain is long), add it to `log`, return its id.

        A delta stores the keys written since the parent, and for a value that extends
        the parent's only the appended tail (`_split_appends`); the parent's state comes
        from the log's cache (one shallow dict per checkpoint). No `Snapshot` is built:
        deep-copying the state would make every checkpoint cost the size of the state
        instead of the size of the change.
        """
        started = time.perf_counter()
        if not rec["full"]:
            state, completed, nodes = log.materialise(rec["parent"])
            if log.depth(rec["parent"]) + 1 >= FULL_EVERY:
                rec = {
                    **rec,
                    "full": True,
                    "values": {**state, **rec["values"]},
                    "appended": {},
                    "completed": [*completed, *rec["completed"]],
                    "nodes": {**nodes, **rec["nodes"]},
                }
            else:
                values, appended = _split_appends(state, rec["values"])
                rec = {**rec, "values": values, "appended": appended}
        payload = self.serializer.dumps(rec)
        self._append(log.thread_id, Kind.CHECKPOINT, payload, whole=rec["full"])
        log.add_checkpoint(rec)
        logger.debug(
            "checkpoint thread=%s checkpoint=%s step=%d bytes=%d ms=%.2f",
            log.thread_id,
            rec["id"],
            rec["step"],
            len(payload),
            (time.perf_counter() - started) * 1000,
        )
        cid: str = rec["id"]
        return cid

    def _write_node_writes(
        self, thread_id: str, checkpoint_id: str, node: str, writes: Mapping[str, Any], node_state: Any
    ) -> None:
        rec = {"v": 1, "checkpoint": checkpoint_id, "node": node, "writes": dict(writes), "node_state": node_state}
        self._append(thread_id, _KIND_WRITES, self.serializer.dumps(rec))

    # -- retention -------------------------------------------------------------------

    def prune(self, thread_id: str, keep_last: int) -> int:
        """Delete all but the newest `keep_last` checkpoints of the thread.

        Kept checkpoints whose ancestors are deleted are first rewritten with their
        whole state, so every kept one stays readable and resumable. The space comes
        back with the store's `compact()`.

        Returns:
            How many checkpoints were deleted.

        Raises:
            CheckpointNotFoundError: No such thread.
            InvalidArgumentError: `keep_last` is below 1.
        """
        if keep_last < 1:
            msg = "keep_last must be at least 1 (use delete_thread to delete everything)"
            raise InvalidArgumentError(msg)
        log = self._existing(thread_id)
        if len(log.order) <= keep_last:
            return 0
        kept = log.order[-keep_last:]
        kept_set = set(kept)

        def chain_kept(cid: str) -> bool:
            rec = log.records[cid]
            while not rec["full"]:
                if rec["parent"] not in kept_set:
                    return False
                rec = log.records[rec["parent"]]
            return rec["id"] in kept_set

        if not all(chain_kept(cid) for cid in kept):
            for cid in kept:  # oldest first, so the rewritten copies keep the order
                state, completed, nodes = log.materialise(cid)
                rec = {
                    **log.records[cid],
                    "full": True,
                    "values": state,
                    "appended": {},
                    "completed": list(completed),
                    "nodes": nodes,
                }
                self._append(thread_id, Kind.CHECKPOINT, self.serializer.dumps(rec), whole=True)
        deleted = len(log.order) - keep_last
        self._prune_kind(thread_id, Kind.CHECKPOINT, keep_last)
        self._prune_kind(thread_id, _KIND_WRITES, 0)
        return deleted

    def delete_thread(self, thread_id: str) -> int:
        """Delete every checkpoint of the thread; return how many.

        Raises:
            CheckpointNotFoundError: No such thread.
        """
        log = self._existing(thread_id)
        self._delete(thread_id)
        return len(log.order)

    # -- one run per thread at a time ----------------------------------------------------

    def _claim(self, thread_id: str) -> bool:
        with self._locks_guard:
            if thread_id in self._running:
                return False
            self._running.add(thread_id)
            return True

    def _release(self, thread_id: str) -> None:
        with self._locks_guard:
            self._running.discard(thread_id)


def new_checkpoint_id() -> str:
    """A new, unique checkpoint id (sortable by creation time)."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _stream(thread_id: str) -> str:
    return f"wf/{thread_id}"


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

    def _append(self, thread_id: str, kind: int, payload: bytes, *, whole: bool = False) -> None:
        # A whole-state checkpoint (a new thread's input, one per FULL_EVERY steps, prune's
        # rewrites) is written raw: zstd would cost ~0.5-1 ms per 100 KB of state on the
        # path of the invoke. compact() compresses it later; restoring it skips decompression.
        self.store.append(_stream(thread_id), payload, kind, compress=not whole)

    def _records(self, thread_id: str) -> list[tuple[int, bytes]]:
        return [(r.kind, r.payload) for r in self.store.read(_stream(thread_id), kinds=[Kind.CHECKPOINT, _KIND_WRITES])]

    def _records_before_damage(self, thread_id: str) -> list[tuple[int, bytes]]:
        out = []
        try:
            for r in self.store.read(_stream(thread_id), kinds=[Kind.CHECKPOINT, _KIND_WRITES]):
                out.append((r.kind, r.payload))
        except CorruptSegmentError:
            pass
        return out

    def _prune_kind(self, thread_id: str, kind: int, keep_last: int) -> int:
        return self.store.prune(_stream(thread_id), kind, keep_last)

    def _delete(self, thread_id: str) -> int:
        return self.store.delete_stream(_stream(thread_id))

    def threads(self) -> list[str]:
        """Every thread with checkpoints, sorted."""
        # A thread's stream starts with its input checkpoint, so every live wf/ stream is a thread.
        return [s[3:] for s in self.store.streams() if s.startswith("wf/")]

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
        self._data: dict[str, list[tuple[int, bytes]]] = {}
        self._guard = threading.Lock()

    def _append(self, thread_id: str, kind: int, payload: bytes, *, whole: bool = False) -> None:
        with self._guard:
            self._data.setdefault(thread_id, []).append((kind, payload))

    def _records(self, thread_id: str) -> list[tuple[int, bytes]]:
        with self._guard:
            return list(self._data.get(thread_id, []))

    def _records_before_damage(self, thread_id: str) -> list[tuple[int, bytes]]:
        return self._records(thread_id)

    def _prune_kind(self, thread_id: str, kind: int, keep_last: int) -> int:
        with self._guard:
            records = self._data.get(thread_id, [])
            of_kind = [i for i, (k, _) in enumerate(records) if k == kind]
            doomed = set(of_kind[: max(0, len(of_kind) - keep_last)])
            self._data[thread_id] = [r for i, r in enumerate(records) if i not in doomed]
            return len(doomed)

    def _delete(self, thread_id: str) -> int:
        with self._guard:
            return len(self._data.pop(thread_id, []))

    def threads(self) -> list[str]:
        """Every thread with checkpoints, sorted."""
        with self._guard:
            return sorted(t for t, recs in self._data.items() if any(k == Kind.CHECKPOINT for k, _ in recs))
