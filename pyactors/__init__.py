"""pyactors: durable pykka actors and resumable workflows on a Rust segment log."""

from __future__ import annotations

import logging

from pyactors._core import __version__
from pyactors.actor import PersistentActor, RecoveredActor, recover
from pyactors.errors import (
    ActorCrashedError,
    CorruptSegmentError,
    FormatVersionError,
    InvalidArgumentError,
    PyActorsError,
    RestartIntensityError,
    SerializationError,
    StoreClosedError,
    StoreError,
    StoreIOError,
    StoreLockedError,
)
from pyactors.serialization import MsgpackSerializer, PickleSerializer, Serializer
from pyactors.store import (
    CompactReport,
    Damage,
    Durability,
    Kind,
    OpenReport,
    Record,
    SegmentStore,
    VerifyReport,
)
from pyactors.supervisor import RestartStats, Strategy, SupervisedRef, Supervisor, SupervisorRef

__all__ = [
    "ActorCrashedError",
    "CompactReport",
    "CorruptSegmentError",
    "Damage",
    "Durability",
    "FormatVersionError",
    "InvalidArgumentError",
    "Kind",
    "MsgpackSerializer",
    "OpenReport",
    "PersistentActor",
    "PickleSerializer",
    "PyActorsError",
    "Record",
    "RecoveredActor",
    "RestartIntensityError",
    "RestartStats",
    "SegmentStore",
    "SerializationError",
    "Serializer",
    "StoreClosedError",
    "StoreError",
    "StoreIOError",
    "StoreLockedError",
    "Strategy",
    "SupervisedRef",
    "Supervisor",
    "SupervisorRef",
    "VerifyReport",
    "__version__",
    "recover",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
