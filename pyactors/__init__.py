"""pyactors: durable pykka actors and resumable workflows on a Rust segment log."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pyactors._core import __version__
from pyactors.actor import PersistentActor, RecoveredActor, recover
from pyactors.errors import (
    ActorCrashedError,
    AuthenticationError,
    CheckpointCorruptError,
    CheckpointNotFoundError,
    CorruptSegmentError,
    FormatVersionError,
    InvalidArgumentError,
    JournalRecordError,
    NodeFailedError,
    PyActorsError,
    RecursionLimitError,
    RestartIntensityError,
    ResumeConflictError,
    SerializationError,
    StoreClosedError,
    StoreError,
    StoreForkedError,
    StoreIOError,
    StoreLockedError,
    WorkflowError,
)
from pyactors.serialization import MsgpackSerializer, PickleSerializer, Serializer
from pyactors.store import (
    CompactReport,
    Damage,
    Durability,
    Kind,
    KindStats,
    OpenReport,
    Record,
    SegmentStore,
    VerifyReport,
)
from pyactors.supervisor import RestartStats, Strategy, SupervisedRef, Supervisor, SupervisorRef
from pyactors.workflow import (
    END,
    CompiledWorkflow,
    FileCheckpointer,
    MemoryCheckpointer,
    NodeError,
    Snapshot,
    Workflow,
)

__all__ = [
    "END",
    "ActorCrashedError",
    "AuthenticationError",
    "CheckpointCorruptError",
    "CheckpointNotFoundError",
    "CompactReport",
    "CompiledWorkflow",
    "CorruptSegmentError",
    "Damage",
    "Durability",
    "FileCheckpointer",
    "FormatVersionError",
    "InvalidArgumentError",
    "JournalRecordError",
    "Kind",
    "KindStats",
    "MemoryCheckpointer",
    "MsgpackSerializer",
    "NodeError",
    "NodeFailedError",
    "OpenReport",
    "PersistentActor",
    "PickleSerializer",
    "ProcessSupervisor",
    "PyActorsError",
    "Record",
    "RecoveredActor",
    "RecursionLimitError",
    "RestartIntensityError",
    "RestartStats",
    "ResumeConflictError",
    "SegmentStore",
    "SerializationError",
    "Serializer",
    "Snapshot",
    "StoreClosedError",
    "StoreError",
    "StoreForkedError",
    "StoreIOError",
    "StoreLockedError",
    "Strategy",
    "SupervisedRef",
    "Supervisor",
    "SupervisorRef",
    "VerifyReport",
    "WorkerSpec",
    "WorkerStats",
    "Workflow",
    "WorkflowError",
    "__version__",
    "recover",
]

if TYPE_CHECKING:
    from pyactors.process import ProcessSupervisor, WorkerSpec, WorkerStats

_LAZY = {"ProcessSupervisor", "WorkerSpec", "WorkerStats"}
"""Names imported on first use: process supervision pulls in subprocess and watchdog,
which an actor or workflow process does not need at start-up."""


def __getattr__(name: str) -> Any:
    """Import the process-supervision names on first use."""
    if name in _LAZY:
        from pyactors import process

        return getattr(process, name)
    msg = f"module 'pyactors' has no attribute {name!r}"
    raise AttributeError(msg)


logging.getLogger(__name__).addHandler(logging.NullHandler())
