"""pyactors: durable pykka actors and resumable workflows on a Rust segment log."""

from __future__ import annotations

import logging

from pyactors._core import __version__
from pyactors.errors import (
    CorruptSegmentError,
    FormatVersionError,
    InvalidArgumentError,
    PyActorsError,
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

__all__ = [
    "CompactReport",
    "CorruptSegmentError",
    "Damage",
    "Durability",
    "FormatVersionError",
    "InvalidArgumentError",
    "Kind",
    "MsgpackSerializer",
    "OpenReport",
    "PickleSerializer",
    "PyActorsError",
    "Record",
    "SegmentStore",
    "SerializationError",
    "Serializer",
    "StoreClosedError",
    "StoreError",
    "StoreIOError",
    "StoreLockedError",
    "VerifyReport",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
