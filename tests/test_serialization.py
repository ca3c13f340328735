"""Serializers, and the exceptions surviving a trip through pickle."""

from __future__ import annotations

import errno
import pickle
import struct
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from _segfile import segment_files

from pyactors import (
    CorruptSegmentError,
    FormatVersionError,
    InvalidArgumentError,
    MsgpackSerializer,
    PickleSerializer,
    PyActorsError,
    SegmentStore,
    SerializationError,
    Serializer,
    StoreClosedError,
    StoreError,
    StoreIOError,
    StoreLockedError,
    _core,
)

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Point:
    """A user type, picklable by reference."""

    x: int
    y: int


PLAIN_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    3.5,
    float("inf"),
    "",
    "héllo wörld 流",
    b"",
    bytes(range(256)),
    [],
    [1, "two", b"three", None, [4.0]],
    {},
    {"state": {"count": 3, "items": [1, 2, 3]}, "name": "counter-1"},
    {1: "int keys", 2: b"bytes"},
    "x" * 100_000,
]


@pytest.mark.parametrize("value", PLAIN_VALUES, ids=lambda v: type(v).__name__)
def test_both_serializers_round_trip_plain_data(value: Any) -> None:
    for serializer in (PickleSerializer(), MsgpackSerializer()):
        data = serializer.dumps(value)
        assert isinstance(data, bytes)
        assert serializer.loads(data) == value, serializer.name


def test_pickle_round_trips_any_picklable_object_with_protocol_5() -> None:
    ser = PickleSerializer()
    assert ser.name == "pickle"
    value = {"point": Point(1, 2), "tuple": (1, (2, 3)), "set": {1, 2}, "big": 2**200, "ba": bytearray(b"x")}
    data = ser.dumps(value)
    assert data[:2] == b"\x80\x05"  # pickle protocol 5
    assert ser.loads(data) == value
    assert PickleSerializer(protocol=2).dumps(1)[:2] == b"\x80\x02"


def test_msgpack_reads_tuples_back_as_lists() -> None:
    ser = MsgpackSerializer()
    assert ser.name == "msgpack"
    assert ser.loads(ser.dumps((1, (2, "x")))) == [1, [2, "x"]]


@pytest.mark.parametrize(
    "value",
    [object(), Point(1, 2), {1, 2}, threading.Lock(), 2**64, {"nested": [object()]}, lambda: 1],
    ids=["object", "dataclass", "set", "lock", "int over 64 bits", "nested object", "lambda"],
)
def test_msgpack_refuses_anything_but_plain_data_with_serialization_error(value: Any) -> None:
    with pytest.raises(SerializationError) as excinfo:
        MsgpackSerializer().dumps(value)
    assert isinstance(excinfo.value, PyActorsError)


@pytest.mark.parametrize("value", [lambda: 1, threading.Lock(), (x for x in ())], ids=["lambda", "lock", "generator"])
def test_pickle_refuses_unpicklable_objects_with_serialization_error(value: Any) -> None:
    with pytest.raises(SerializationError):
        PickleSerializer().dumps(value)


@pytest.mark.parametrize("serializer", [PickleSerializer(), MsgpackSerializer()], ids=lambda s: s.name)
@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xc1", b"\x80\x05garbage", b"\x92\x01", b"\x01\x02\x03", bytes(range(256))],
    ids=["empty", "c1", "bad pickle", "truncated array", "extra data", "all bytes"],
)
def test_loads_of_garbage_raises_serialization_error(serializer: Serializer, garbage: bytes) -> None:
    with pytest.raises(SerializationError):
        serializer.loads(garbage)


def test_serializers_satisfy_the_protocol_and_a_store_carries_its_serializer(store_path: Path) -> None:
    assert isinstance(PickleSerializer(), Serializer)
    assert isinstance(MsgpackSerializer(), Serializer)
    ser = MsgpackSerializer()
    with SegmentStore(store_path, serializer=ser) as store:
        assert store.serializer is ser
        state = {"count": 7, "history": [1, 2, 3], "blob": b"\x00\xff"}
        store.append("actor", store.serializer.dumps(state), kind=1)
        record = store.latest("actor")
        assert record is not None
        assert store.serializer.loads(record.payload) == state


# --- exceptions through pickle ---------------------------------------------------------


def _round_trip(exc: BaseException, protocol: int) -> Any:
    return pickle.loads(pickle.dumps(exc, protocol=protocol))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_errors_pickle_and_unpickle_with_their_attributes(protocol: int) -> None:
    corrupt = _round_trip(CorruptSegmentError("/s/00000000000000000000.seg", 1234, "checksum mismatch"), protocol)
    assert type(corrupt) is CorruptSegmentError
    assert (corrupt.path, corrupt.offset, corrupt.reason) == ("/s/00000000000000000000.seg", 1234, "checksum mismatch")
    assert str(corrupt) == "/s/00000000000000000000.seg: corrupt at byte offset 1234: checksum mismatch"

    version = _round_trip(FormatVersionError("/s/x.seg", 99, 1), protocol)
    assert type(version) is FormatVersionError
    assert (version.path, version.found, version.supported) == ("/s/x.seg", 99, 1)
    assert "99" in str(version)

    io = _round_trip(StoreIOError(errno.ENOSPC, "No space left on device", "/s/x.seg"), protocol)
    assert type(io) is StoreIOError
    assert isinstance(io, OSError)
    assert isinstance(io, StoreError)
    assert (io.errno, io.strerror, io.filename) == (errno.ENOSPC, "No space left on device", "/s/x.seg")

    for cls in (
        StoreLockedError,
        StoreClosedError,
        InvalidArgumentError,
        SerializationError,
        StoreError,
        PyActorsError,
    ):
        again = _round_trip(cls("some message"), protocol)
        assert type(again) is cls
        assert again.args == ("some message",)


def test_the_hierarchy_is_as_documented() -> None:
    for cls in (StoreClosedError, StoreLockedError, CorruptSegmentError, FormatVersionError, StoreIOError):
        assert issubclass(cls, StoreError)
    assert issubclass(StoreError, PyActorsError)
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(StoreIOError, OSError)
    assert issubclass(SerializationError, PyActorsError)


def test_errors_raised_by_the_core_are_the_pyactors_classes_and_pickle(store_path: Path, tmp_path: Path) -> None:
    # StoreIOError, with its errno, from a real failed open.
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(StoreIOError) as io_info:
        SegmentStore(blocker / "store")
    io = _round_trip(io_info.value, pickle.HIGHEST_PROTOCOL)
    assert type(io) is StoreIOError
    assert io.errno == io_info.value.errno == errno.ENOTDIR

    # InvalidArgumentError and StoreLockedError.
    with SegmentStore(store_path) as store:
        store.append("a", b"x")
        with pytest.raises(InvalidArgumentError) as bad:
            store.append("", b"x")
        with pytest.raises(StoreLockedError) as locked:
            SegmentStore(store_path)
    for exc in (bad.value, locked.value):
        assert type(exc).__module__ == "pyactors.errors"
        assert type(_round_trip(exc, 5)) is type(exc)
        assert str(_round_trip(exc, 5)) == str(exc)

    # FormatVersionError from a segment of version 99.
    seg = segment_files(store_path)[0]
    with seg.open("r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", 99))
    with pytest.raises(FormatVersionError) as version_info:
        SegmentStore(store_path)
    version = _round_trip(version_info.value, 5)
    assert (version.path, version.found, version.supported) == (
        version_info.value.path,
        99,
        _core.FORMAT_VERSION,
    )
    assert str(version) == str(version_info.value)
