"""Each error of the Rust core arrives as its own class of `pyactors.errors`.

One test per `CoreError` variant, each provoked through real behaviour.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
from typing import TYPE_CHECKING

import pytest

from pyactors import Kind, SegmentStore, _core
from pyactors.errors import (
    AuthenticationError,
    CorruptSegmentError,
    FormatVersionError,
    InvalidArgumentError,
    PyActorsError,
    StoreClosedError,
    StoreError,
    StoreForkedError,
    StoreIOError,
    StoreLockedError,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_io_error_maps_to_store_io_error_with_errno_and_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(StoreIOError) as info:
        SegmentStore(blocker / "store")
    assert isinstance(info.value, OSError)
    assert isinstance(info.value, StoreError)
    assert info.value.errno in {errno.ENOTDIR, errno.EEXIST}
    assert str(blocker) in str(info.value.filename)


def test_locked_maps_to_store_locked_error(tmp_path: Path) -> None:
    with SegmentStore(tmp_path / "s"), pytest.raises(StoreLockedError):
        SegmentStore(tmp_path / "s")


def test_corrupt_maps_to_corrupt_segment_error_with_path_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with SegmentStore(path) as store:
        for i in range(5):
            store.append("a", f"record {i}".encode())
    seg = path / "00000000000000000000.seg"
    data = bytearray(seg.read_bytes())
    data[_core.SEGMENT_HEADER_LEN + 45] ^= 0xFF  # inside the first record, valid ones follow
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptSegmentError) as info:
        SegmentStore(path)
    assert info.value.path == str(seg)
    assert info.value.offset == _core.SEGMENT_HEADER_LEN
    assert info.value.reason


def test_authentication_maps_to_authentication_error_with_path_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "s"
    key = b"k" * 16
    with SegmentStore(path, auth_key=key) as store:
        store.append("a", b"payload")
    seg = path / "00000000000000000000.seg"
    with pytest.raises(AuthenticationError) as info:
        SegmentStore(path, auth_key=b"x" * 16)
    assert (info.value.path, info.value.offset) == (str(seg), 12)  # the key id in the segment header
    assert "another auth_key" in info.value.reason
    assert isinstance(info.value, CorruptSegmentError)
    again = pickle.loads(pickle.dumps(info.value))
    assert (type(again), again.path, again.offset, str(again)) == (AuthenticationError, str(seg), 12, str(info.value))


def test_format_version_maps_to_format_version_error(tmp_path: Path) -> None:
    path = tmp_path / "s"
    SegmentStore(path).close()
    seg = path / "00000000000000000000.seg"
    data = bytearray(seg.read_bytes())
    data[8:12] = (99).to_bytes(4, "little")
    seg.write_bytes(bytes(data))
    with pytest.raises(FormatVersionError) as info:
        SegmentStore(path)
    assert (info.value.path, info.value.found, info.value.supported) == (str(seg), 99, _core.FORMAT_VERSION)


@pytest.mark.parametrize(
    ("stream", "kind"),
    [("", Kind.MESSAGE), ("x" * 256, Kind.MESSAGE), ("s", 0), ("s", _core.KIND_TOMBSTONE), ("s", 256)],
)
def test_invalid_argument_maps_to_invalid_argument_error(tmp_path: Path, stream: str, kind: int) -> None:
    with SegmentStore(tmp_path / "s") as store:
        with pytest.raises(InvalidArgumentError) as info:
            store.append(stream, b"payload", kind=kind)
        assert isinstance(info.value, ValueError)
        assert store.streams() == []


def test_invalid_options_map_to_invalid_argument_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        SegmentStore(tmp_path / "s", durability="eventually")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        SegmentStore(tmp_path / "s", compression_level=0)
    with pytest.raises(InvalidArgumentError):
        SegmentStore(tmp_path / "s", group_commit_ms=0)


def test_closed_maps_to_store_closed_error(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path / "s")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreClosedError):
        store.append("a", b"x")
    with pytest.raises(StoreClosedError):
        store.latest("a")


def test_every_store_error_is_a_pyactors_error() -> None:
    for cls in (
        StoreIOError,
        StoreLockedError,
        StoreForkedError,
        CorruptSegmentError,
        AuthenticationError,
        FormatVersionError,
        StoreClosedError,
    ):
        assert issubclass(cls, StoreError)
        assert issubclass(cls, PyActorsError)
    assert issubclass(InvalidArgumentError, PyActorsError)


def _forked_child(store: SegmentStore, parent: int) -> None:
    """Target of a ``fork`` child: the inherited store raises `StoreForkedError`."""
    with pytest.raises(StoreForkedError) as info:
        store.append("a", b"x")
    assert isinstance(info.value, StoreLockedError)
    assert store.path in str(info.value)
    assert f"opened by process {parent}" in str(info.value)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_forked_maps_to_store_forked_error(tmp_path: Path) -> None:
    with SegmentStore(tmp_path / "s") as store:
        child = multiprocessing.get_context("fork").Process(target=_forked_child, args=(store, os.getpid()))
        child.start()
        child.join(60)
        if child.exitcode is None:
            child.kill()
        assert child.exitcode == 0
