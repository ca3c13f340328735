"""The records a workflow thread's stream (``wf/<thread_id>``) holds, and their encoding.

Three kinds of record, each a dict of plain data turned into bytes by the checkpointer's
serializer (pickle or msgpack):

* a *base* (`Kind.SNAPSHOT`): the whole state at one checkpoint,
  ``{"v": 3, "checkpoint": id, "values", "completed", "nodes"}``;
* a *checkpoint* (`Kind.CHECKPOINT`), one per checkpoint: `CheckpointRecord`;
* a node's *writes* (`Kind.WRITES`), recorded the moment it finishes while others of its
  superstep still run: ``{"v": 1, "checkpoint", "node", "writes", "node_state"}``.

A version 3 checkpoint builds on the newest base before it: ``base`` is that base's seq,
``depth`` how many checkpoints lie between them, and ``values``/``appended``/``completed``/
``nodes`` hold only what changed since its parent (the checkpoint before it at ``parent_seq``,
``depth - 1``). A checkpoint of depth 0 changes nothing: its base holds its state. So the
state of any checkpoint is its base plus at most `FULL_EVERY` - 1 deltas, all of them
between its base and itself in the stream.

Version 1 and 2 checkpoints (before issue 15) have no base: a ``full`` one holds the whole
state in ``values``, a delta changes its parent's, found by id. They are still read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyactors.errors import CheckpointCorruptError

VERSION = 3
"""The version of the checkpoint records written now."""

_REQUIRED = ("v", "id", "parent", "step", "values", "completed", "nodes", "next", "pending", "error", "meta")
_REQUIRED_V3 = ("base", "depth", "parent_seq", "prev")


@dataclass(slots=True)
class CheckpointRecord:
    """One checkpoint as stored (its state is its base plus the deltas up to it).

    Attributes:
        id: The checkpoint id.
        parent: The id of the checkpoint it follows (None for a thread's first).
        step: The superstep count.
        values: Keys written since the parent, whole (legacy ``full``: the whole state).
        appended: Keys whose new value extends the parent's: only the added tail.
        completed: Nodes that finished since the parent.
        nodes: Stateful nodes' own states that changed since the parent.
        next: The nodes the next superstep runs.
        waiting: Joins scheduled but still waiting for a predecessor.
        pending: Writes of nodes that finished in a superstep that did not.
        error: The node failure recorded here (`NodeError` fields), if any.
        meta: ``source``, ``created_at`` and more (see `Snapshot.metadata`).
        base: Seq of the base record its state builds on (None: a legacy record).
        depth: Checkpoints between that base and this one.
        parent_seq: Seq of the parent's record (None: no parent, or a legacy one).
        prev: Seq of the checkpoint record written before it in the stream (None: the first),
            which history follows back.
        full: Legacy records only: `values` holds the whole state.
        version: The record's format version.
        seq: Where it was read from or written to (not stored).
    """

    id: str
    parent: str | None
    step: int
    values: dict[str, Any]
    appended: dict[str, Any]
    completed: list[str]
    nodes: dict[str, Any]
    next: list[str]
    waiting: list[str]
    pending: dict[str, dict[str, Any]]
    error: dict[str, str] | None
    meta: dict[str, Any]
    base: int | None = None
    depth: int = 0
    parent_seq: int | None = None
    prev: int | None = None
    full: bool = False
    version: int = VERSION
    seq: int = field(default=0, compare=False)

    @property
    def scheduled(self) -> list[str]:
        """The nodes it left to run: the next superstep's and the waiting joins."""
        return [*self.next, *self.waiting]

    def encode(self) -> dict[str, Any]:
        """The record as the plain data the serializer stores (version 3)."""
        return {
            "v": VERSION,
            "id": self.id,
            "parent": self.parent,
            "step": self.step,
            "base": self.base,
            "depth": self.depth,
            "parent_seq": self.parent_seq,
            "prev": self.prev,
            "values": self.values,
            "appended": self.appended,
            "completed": self.completed,
            "nodes": self.nodes,
            "next": self.next,
            "waiting": self.waiting,
            "pending": self.pending,
            "error": self.error,
            "meta": self.meta,
        }


def decode_checkpoint(thread_id: str, data: Any, seq: int) -> CheckpointRecord:
    """A checkpoint record from its decoded payload (any version).

    Raises:
        CheckpointCorruptError: Not a checkpoint record, or of an unknown version.
    """
    if not isinstance(data, dict):
        raise CheckpointCorruptError(thread_id, None, "not a checkpoint record")
    version = data.get("v")
    required = _REQUIRED + (_REQUIRED_V3 if version == VERSION else ("full",))
    wrong = [k for k in required if k not in data]
    wrong += [k for k in ("values", "appended") if not isinstance(data.get(k, {}), dict)]
    cid = data.get("id") if isinstance(data.get("id"), str) else None
    if wrong:
        raise CheckpointCorruptError(thread_id, cid, f"malformed checkpoint (missing or not a dict: {wrong})")
    if version not in (1, 2, VERSION):
        raise CheckpointCorruptError(thread_id, cid, f"unknown checkpoint version {version!r}")
    try:
        return CheckpointRecord(
            id=data["id"],
            parent=data["parent"],
            step=data["step"],
            values=data["values"],
            appended=data.get("appended", {}),  # version 1: nothing appended
            completed=list(data["completed"]),
            nodes=data["nodes"],
            next=list(data["next"]),
            waiting=list(data.get("waiting", [])),
            pending=data["pending"],
            error=data["error"],
            meta=data["meta"],
            base=data.get("base"),
            depth=data.get("depth", 0),
            parent_seq=data.get("parent_seq"),
            prev=data.get("prev"),
            full=bool(data.get("full", False)),
            version=version,
            seq=seq,
        )
    except TypeError as exc:
        raise CheckpointCorruptError(thread_id, cid, f"malformed checkpoint ({exc})") from None


def encode_base(
    checkpoint_id: str, values: dict[str, Any], completed: list[str], nodes: dict[str, Any]
) -> dict[str, Any]:
    """A base record: the whole state at `checkpoint_id`."""
    return {"v": VERSION, "checkpoint": checkpoint_id, "values": values, "completed": completed, "nodes": nodes}


def decode_state(thread_id: str, data: Any) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """(values, completed, nodes) of a base record or a legacy full checkpoint.

    Raises:
        CheckpointCorruptError: It holds no state.
    """
    if not isinstance(data, dict) or not all(isinstance(data.get(k), t) for k, t in _STATE_FIELDS):
        cid = data.get("checkpoint", data.get("id")) if isinstance(data, dict) else None
        raise CheckpointCorruptError(thread_id, cid if isinstance(cid, str) else None, "malformed base record")
    return dict(data["values"]), list(data["completed"]), dict(data["nodes"])


_STATE_FIELDS = (("values", dict), ("completed", list), ("nodes", dict))


def encode_writes(checkpoint_id: str, node: str, writes: dict[str, Any], node_state: Any) -> dict[str, Any]:
    """A node's writes record; `node_state` is None or ``[state]`` (a stateful node's own state)."""
    return {"v": 1, "checkpoint": checkpoint_id, "node": node, "writes": writes, "node_state": node_state}


def decode_writes(thread_id: str, data: Any) -> tuple[str, str, dict[str, Any], Any]:
    """(checkpoint id, node, writes, node state or None) of a writes record.

    Raises:
        CheckpointCorruptError: It is no writes record.
    """
    try:
        node_state = data.get("node_state")
        return data["checkpoint"], data["node"], data["writes"], None if node_state is None else node_state[0]
    except (AttributeError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointCorruptError(thread_id, None, f"malformed writes record ({type(exc).__name__})") from None
