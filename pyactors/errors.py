"""The exception hierarchy of pyactors.

Every error pyactors raises on purpose is a subclass of [`PyActorsError`][]. The Rust
core raises the store errors below directly (it imports this module), so callers
catch the same classes whichever layer failed. All of them pickle, so a worker
process can hand them to a supervisor in another process.
"""

from __future__ import annotations

import pykka

__all__ = [
    "ActorCrashedError",
    "AuthenticationError",
    "CheckpointCorruptError",
    "CheckpointNotFoundError",
    "CorruptSegmentError",
    "FormatVersionError",
    "InvalidArgumentError",
    "JournalRecordError",
    "NodeFailedError",
    "PyActorsError",
    "RecursionLimitError",
    "RestartIntensityError",
    "ResumeConflictError",
    "SerializationError",
    "StoreClosedError",
    "StoreError",
    "StoreForkedError",
    "StoreIOError",
    "StoreLockedError",
    "WorkflowError",
]


class PyActorsError(Exception):
    """Root of every exception pyactors raises on purpose."""


class InvalidArgumentError(PyActorsError, ValueError):
    """An argument is out of range or malformed (also a `ValueError`).

    Examples: an empty or too long stream id, a reserved record kind, an unknown
    durability policy. Nothing was written.
    """


class SerializationError(PyActorsError):
    """A value could not be serialized or deserialized by the store's serializer.

    Raised at the call that handed over the value; nothing was written.
    """


class StoreError(PyActorsError):
    """Base class of the errors of the segment store."""


class StoreClosedError(StoreError):
    """The store was used after `close()`."""


class StoreLockedError(StoreError):
    """Another process holds the store's writer lock (one writer per store).

    The message names the holder's process id when it wrote one into the store's
    ``LOCK`` file (every writer of this release does): "... locked by another writer
    (process 4242, as its LOCK file says)". Stop that process, or wait for it to close
    the store; a read-only view (``read_only=True``) needs no lock.
    """


class StoreForkedError(StoreLockedError):
    """The store was opened by another process, of which this one is a fork.

    A child made by ``os.fork()`` (multiprocessing's ``fork`` start method, a preloading
    server) inherits its parent's open stores, files, lock and write position, but not
    its threads: writing there would corrupt the parent's store, and a lock a parent
    thread held would never be released. So in the child every call on an inherited
    store raises this error, and nothing is written; ``close()`` only lets go of the
    child's copies of the store's file descriptors, so the child never keeps the store
    locked once the parent has closed it (pyactors does this in every child right after
    the fork). To use the store in the child, open it again there once the parent has
    closed it, open a ``read_only`` view beside the parent, or start the child with the
    ``spawn`` (or ``forkserver``) start method. A `StoreLockedError`: the store belongs
    to another process.
    """


class CorruptSegmentError(StoreError):
    """Damaged bytes found where a valid record must be.

    Raised for damage in a sealed segment (or in the middle of the active one)
    when the store is opened strictly, and when a read meets a record whose
    checksum does not match.

    Attributes:
        path: The damaged file.
        offset: Byte offset of the damage in that file.
        reason: What is wrong, in a few words.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(path, offset, reason)
        self.path = path
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: corrupt at byte offset {self.offset}: {self.reason}"


class AuthenticationError(CorruptSegmentError):
    """Intact bytes of a store opened with (or without) an ``auth_key`` fail authentication.

    Raised when a record's HMAC does not check out (it was altered, or written with
    another key), when a keyed store meets a record or segment without a MAC, and when
    a segment's key id does not match: an authenticated store opened without its key,
    an unauthenticated one opened with a key, or a segment written with another key.
    Its checksum matched, so this is tampering (or the wrong key), never a torn write:
    open does not truncate it away. A `CorruptSegmentError`, so handlers of damage
    catch it too.

    Attributes:
        path: The file.
        offset: Byte offset of the record (or of the segment header's key id).
        reason: What failed.
    """

    def __str__(self) -> str:
        return f"{self.path}: authentication failed at byte offset {self.offset}: {self.reason}"


class FormatVersionError(StoreError):
    """A segment or index file was written in a format version this build cannot read.

    Attributes:
        path: The file.
        found: The version number in its header.
        supported: The version this build reads and writes.
    """

    def __init__(self, path: str, found: int, supported: int) -> None:
        super().__init__(path, found, supported)
        self.path = path
        self.found = found
        self.supported = supported

    def __str__(self) -> str:
        return f"{self.path}: format version {self.found} is not supported (this build reads version {self.supported})"


class StoreIOError(StoreError, OSError):
    """An operating-system error while reading or writing the store.

    Also an `OSError`, carrying `errno`, `strerror` and `filename`; disk full is
    `errno.ENOSPC`. A failed append leaves the store readable and consistent,
    and nothing acknowledged before it is lost.
    """


class JournalRecordError(PyActorsError):
    """A journaled message that replay refuses to run; it is skipped, logged, never executed.

    A journal entry must be one this library writes: a told or asked message, or a
    proxy call or attribute set whose attribute path the actor's proxy exposes
    (pykka's rules: no name starting with ``_``, no ``actor_ref``, only traversable
    attributes gone through, only callables called). Anything else (a store written
    by another program, edited by hand, or hostile) is refused on restore: the actor
    logs this error at ERROR on the ``pyactors.actor`` logger, counts the entry as
    handled and goes on with the next one. The record itself stays in the store.

    Attributes:
        persistence_id: The actor's stream.
        seq: The refused record's sequence number.
        reason: What is wrong with it.
    """

    def __init__(self, persistence_id: str, seq: int, reason: str) -> None:
        """Describe the refused record `seq` of `persistence_id`."""
        super().__init__(f"journal record #{seq} of {persistence_id!r} refused, not replayed: {reason}")
        self.persistence_id = persistence_id
        self.seq = seq
        self.reason = reason


class ActorCrashedError(PyActorsError, pykka.ActorDeadError):
    """The persistent actor crashed before handling this message.

    Raised to callers waiting on an `ask` (or a proxy future) that was still queued
    when the actor crashed. The message itself is journaled: it is delivered to the
    actor again after its restart. Also a `pykka.ActorDeadError`.

    Attributes:
        persistence_id: The actor's id.
        reason: The crash, as text.
    """

    def __init__(self, persistence_id: str, reason: str) -> None:
        super().__init__(persistence_id, reason)
        self.persistence_id = persistence_id
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"persistent actor {self.persistence_id!r} crashed ({self.reason}) before handling the message; "
            "it will be delivered again after the restart"
        )


class RestartIntensityError(PyActorsError):
    """A supervisor's children failed more often than its restart intensity allows.

    The supervisor stopped its children and failed with this error, which escalates
    to its own supervisor when it has one. Refs to its children raise it afterwards.

    Attributes:
        supervisor: The supervisor's name.
        restarts: Restarts counted within the period.
        period: The period, in seconds.
    """

    def __init__(self, supervisor: str, restarts: int, period: float) -> None:
        super().__init__(supervisor, restarts, period)
        self.supervisor = supervisor
        self.restarts = restarts
        self.period = period

    def __str__(self) -> str:
        return (
            f"supervisor {self.supervisor!r}: more than {self.restarts} restarts within {self.period:g} s; "
            "children stopped"
        )


class WorkflowError(PyActorsError):
    """A workflow graph is invalid, or its nodes wrote conflicting updates.

    The message names the culprit: the node, edge or state key.
    """


class NodeFailedError(PyActorsError):
    """A workflow node raised; the run stopped after writing an error checkpoint.

    Attributes:
        snapshot: The error checkpoint (a `pyactors.workflow.Snapshot`): the last good
            state, the writes of the nodes that finished, and the error. Fix the cause
            and `resume()` the thread: only the failed node and what follows run.
    """

    def __init__(self, message: str, snapshot: object) -> None:
        super().__init__(message)
        self.snapshot = snapshot

    def __reduce__(self) -> tuple[type, tuple[str, object]]:
        """Pickle with the snapshot."""
        return (type(self), (str(self), self.snapshot))


class RecursionLimitError(PyActorsError):
    """A workflow run reached its `recursion_limit` supersteps and stopped.

    The checkpoint after its last superstep is written and names the nodes that would
    run next: `resume()` the thread with a higher ``recursion_limit`` to continue, or
    fix the loop that does not end.

    Attributes:
        snapshot: That checkpoint (a `pyactors.workflow.Snapshot`).
        limit: The limit that was reached.
    """

    def __init__(self, message: str, snapshot: object, limit: int) -> None:
        """Describe the stop after `limit` supersteps at `snapshot`."""
        super().__init__(message)
        self.snapshot = snapshot
        self.limit = limit

    def __reduce__(self) -> tuple[type, tuple[str, object, int]]:
        """Pickle with the snapshot."""
        return (type(self), (str(self), self.snapshot, self.limit))


class ResumeConflictError(PyActorsError):
    """The workflow thread is already running or resuming (in this process)."""


class CheckpointNotFoundError(PyActorsError, KeyError):
    """No such workflow thread, or no such checkpoint in it (also a `KeyError`)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointCorruptError(PyActorsError):
    """A stored checkpoint is damaged or malformed.

    The checkpoints written before it are still readable and can be resumed.

    Attributes:
        thread_id: The workflow thread.
        checkpoint_id: The damaged checkpoint, when it could be identified.
        reason: What is wrong.
    """

    def __init__(self, thread_id: str, checkpoint_id: str | None, reason: str) -> None:
        super().__init__(thread_id, checkpoint_id, reason)
        self.thread_id = thread_id
        self.checkpoint_id = checkpoint_id
        self.reason = reason

    def __str__(self) -> str:
        which = f"checkpoint {self.checkpoint_id}" if self.checkpoint_id else "a checkpoint"
        return f"thread {self.thread_id!r}: {which} is damaged: {self.reason}"
