"""Serializers: how actor state, messages and checkpoints become bytes.

The segment store itself stores bytes. A store carries one serializer
(`SegmentStore.serializer`) that the layers above use for everything they
persist, so a store is read back with the serializer it was written with.
"""

from __future__ import annotations

import pickle
from typing import Any, Protocol, runtime_checkable

from pyactors.errors import SerializationError

__all__ = ["MsgpackSerializer", "PickleSerializer", "Serializer"]


@runtime_checkable
class Serializer(Protocol):
    """Turns Python values into bytes and back.

    Implementations raise [`SerializationError`][pyactors.errors.SerializationError]
    for values they cannot handle, never another exception type.
    """

    name: str
    """A short name identifying the encoding (for example ``"pickle"``)."""

    def dumps(self, value: Any) -> bytes:
        """Encode `value` to bytes."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes written by `dumps`."""
        ...


class PickleSerializer:
    """Pickle, protocol 5 by default: any picklable object, fast.

    Never load segments from an untrusted source with pickle: unpickling can run
    arbitrary code. Use [`MsgpackSerializer`][] for data that may be untrusted.
    """

    name = "pickle"

    def __init__(self, protocol: int = 5) -> None:
        """Create a pickle serializer.

        Args:
            protocol: The pickle protocol to write with.
        """
        self.protocol = protocol

    def dumps(self, value: Any) -> bytes:
        """Pickle `value`; raise `SerializationError` if it cannot be pickled."""
        try:
            return pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:  # pickle raises many unrelated types
            msg = f"cannot pickle {type(value).__name__}: {exc}"
            raise SerializationError(msg) from exc

    def loads(self, data: bytes) -> Any:
        """Unpickle `data`; raise `SerializationError` if it is not a valid pickle."""
        try:
            return pickle.loads(data)
        except Exception as exc:
            msg = f"cannot unpickle {len(data)} bytes: {exc}"
            raise SerializationError(msg) from exc


class MsgpackSerializer:
    """A safe serializer: plain data only (msgpack).

    Accepts `None`, `bool`, `int`, `float`, `str`, `bytes`, lists, tuples (read
    back as lists) and dicts of these; anything else raises
    `SerializationError` instead of being pickled. Decoding never runs code, and
    an actor's journal replays only the proxy calls its proxy exposes
    (`JournalRecordError` for the rest), so this is the serializer for stores that
    may hold untrusted bytes (docs/RELIABILITY.md, "Untrusted data"). Needs the
    ``msgpack`` package (``pip install pyactors-durable[msgpack]``).
    """

    name = "msgpack"

    def __init__(self) -> None:
        """Create a msgpack serializer; raise `ImportError` if msgpack is missing."""
        try:
            import msgpack  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - depends on the environment
            msg = "MsgpackSerializer needs msgpack: pip install 'pyactors-durable[msgpack]'"
            raise ImportError(msg) from exc
        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        """Encode plain data; raise `SerializationError` for any other type."""
        try:
            packed: bytes = self._msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            msg = f"msgpack serializer refuses {type(value).__name__}: {exc}"
            raise SerializationError(msg) from exc
        return packed

    def loads(self, data: bytes) -> Any:
        """Decode msgpack bytes; raise `SerializationError` if they are invalid."""
        try:
            return self._msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types
            msg = f"cannot decode {len(data)} bytes of msgpack: {exc}"
            raise SerializationError(msg) from exc
