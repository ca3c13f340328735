"""atheris target: the Python open/read path over arbitrary store files.

The input packs the files of a store directory in the format of the Rust target
`open_dir` (``rust_core/fuzz/src/lib.rs``, `unpack`): ``{ flags u8 | file * }``, file =
``{ type u8 | base u64 | len u16 | bytes [len] }``, little endian, at most 8 files;
``type`` bit 0 selects ``{base:020}.idx`` over ``{base:020}.seg``. (The ``flags`` bit
that makes the Rust target fix checksums is ignored here.) `check` opens the directory
with `SegmentStore`, strict and then tolerant, reads everything, verifies, compacts and
appends; the only exceptions allowed out are the documented ones of `pyactors.errors`.
`check_arguments` then opens a store with option values drawn from the input and calls
every method with arguments drawn from it (huge, negative, NaN...): only
`InvalidArgumentError` may come out, and nothing is written. `check_journal` decodes the
input as msgpack and takes it for an actor's journal entry: replay's checks
(`pyactors.actor`) refuse it or let it reach only a public, traversable path, and running
what they let through never reaches a private attribute. Anything else, or a broken
property, is a crash.

Run by ``make fuzz`` (``python tests/fuzz/fuzz_store.py CORPUS_DIR -max_total_time=N``);
``tests/fuzz/test_fuzz_regressions.py`` replays every input under
``tests/data/fuzz/store/`` through `check`.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import pykka

if __name__ == "__main__":  # `make fuzz`: coverage feedback from the pyactors modules
    import atheris

    with atheris.instrument_imports(include=["pyactors"]):
        import pyactors  # noqa: F401

from pyactors import (
    CorruptSegmentError,
    FormatVersionError,
    InvalidArgumentError,
    Kind,
    MsgpackSerializer,
    SegmentStore,
)
from pyactors.actor import _decode, _Malformed, _refusal
from pyactors.errors import SerializationError

__all__ = ["check", "check_arguments", "check_journal", "main", "unpack"]

_FILE = struct.Struct("<BQH")
_MAX_FILES = 8
_PROBE = "fuzz/probe"
_SAFE = MsgpackSerializer()


def unpack(data: bytes) -> list[tuple[str, bytes]]:
    """The (file name, bytes) pairs packed in `data` (see the module docstring)."""
    files: dict[str, bytes] = {}
    at = 1
    while at < len(data) and len(files) < _MAX_FILES:
        head = data[at : at + _FILE.size].ljust(_FILE.size, b"\0")
        kind, base, length = _FILE.unpack(head)
        at += _FILE.size
        name = f"{base:020}.{'idx' if kind & 1 else 'seg'}"
        files.pop(name, None)
        files[name] = data[at : at + length]
        at += length
    return list(files.items())


def _scratch() -> str:
    shm = "/dev/shm"  # no fsync cost on tmpfs
    return tempfile.mkdtemp(prefix="pyactors-fuzz-", dir=shm if os.path.isdir(shm) else None)


def check(data: bytes) -> None:
    """Open the packed store strict, then (a fresh copy) tolerant, and use it.

    Open raises nothing but `CorruptSegmentError` or `FormatVersionError`, and a store
    that opens strict opens tolerant too; reads, `latest_many`, `compact` and decoding
    payloads raise nothing but `CorruptSegmentError` (`SerializationError` from the
    msgpack serializer); a stream's records come back in rising seq order; appends
    after the open get the next seqs and read back.
    """
    files = unpack(data)
    strict_opened = False
    for tolerant in (False, True):
        root = _scratch()
        try:
            path = Path(root) / "store"
            path.mkdir()
            for name, content in files:
                (path / name).write_bytes(content)
            try:
                store = SegmentStore(path, tolerant=tolerant)
            except (CorruptSegmentError, FormatVersionError):
                assert not strict_opened, "opens strict but not tolerant"
                continue
            strict_opened |= not tolerant
            with store:
                _use(store)
        finally:
            shutil.rmtree(root, ignore_errors=True)


_INTS = (-(2**70), -(2**63), -1, 0, 1, 2, 3, 22, 23, 127, 255, 256, 4096, 2**31, 2**63, 2**64 - 1, 2**64, 2**70)
_NUMBERS = (*_INTS, -0.0, 0.5, 1.0, 1e-300, 1e300, math.nan, math.inf, -math.inf)


def check_arguments(data: bytes) -> None:
    """Open a store with options drawn from `data`, then call every method with int and
    float arguments drawn from it: nothing but `InvalidArgumentError` comes out, and a
    call that raised wrote nothing."""
    at = iter(data)

    def pick(values: tuple[float, ...]) -> Any:
        return values[next(at, 0) % len(values)]

    def num() -> Any:
        return pick(_NUMBERS)

    def whole() -> Any:
        return pick(_INTS)

    options = {
        "durability": ("process", "group", "sync")[next(at, 0) % 3],
        "group_commit_ms": num(),
        "segment_bytes": whole(),
        "compression_level": whole(),
        "compress_min_bytes": whole(),
        "cache_bytes": whole(),
    }
    root = _scratch()
    try:
        try:
            store = SegmentStore(Path(root) / "store", **options)
        except InvalidArgumentError:
            store = SegmentStore(Path(root) / "store")
        with store:
            store.append(_PROBE, b"kept", Kind.SNAPSHOT)
            calls = [
                lambda: store.append(_PROBE, b"x", whole()),
                lambda: store.append_many([(_PROBE, b"x"), (_PROBE, b"y", whole())]),
                lambda: store.latest(_PROBE, whole(), head=whole()),
                lambda: store.latest_many([_PROBE], whole()),
                lambda: list(store.read(_PROBE, whole(), [whole()], whole())),
                lambda: store.read_payloads(_PROBE, whole(), [whole()]),
                lambda: store.count(_PROBE, whole(), [whole()]),
                lambda: store.prune(_PROBE, whole(), whole()),
                lambda: store.compact(num()),
            ]
            for call in calls:
                before = (store.stats()["appended"], _size(store.path))
                try:
                    call()
                except InvalidArgumentError:
                    assert (store.stats()["appended"], _size(store.path)) == before, "a refused call wrote"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _size(path: str) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(path))


def _use(store: SegmentStore) -> None:
    report = store.open_report
    assert report.segments >= 1
    assert report.truncated_bytes >= 0
    assert report.dropped_records >= 0
    streams = store.streams()
    for stream in streams:
        kinds = {int(k) for k in Kind}
        try:
            seqs = []
            for record in store.read(stream):
                assert record.stream == stream
                assert isinstance(record.payload, bytes)
                seqs.append(record.seq)
                kinds.add(record.kind)
                with contextlib.suppress(SerializationError):
                    _SAFE.loads(record.payload)
            assert seqs == sorted(set(seqs)), f"seqs of {stream!r} not rising: {seqs}"
        except CorruptSegmentError:
            pass
        for kind in kinds:
            try:
                latest = store.latest(stream, kind)
            except CorruptSegmentError:
                continue
            assert latest is None or (latest.stream, latest.kind) == (stream, kind)
    try:
        many = store.latest_many(streams, Kind.SNAPSHOT)
        assert set(many) == set(streams)
    except CorruptSegmentError:
        pass
    verify = store.verify()
    assert verify.segments >= 1
    before = store.last_seq(_PROBE)
    try:
        seqs = store.append_many([(_PROBE, b"probe"), (_PROBE, b"p" * 600, Kind.SNAPSHOT)])
    except CorruptSegmentError as exc:  # segment names at the 2^63 offset limit
        assert "would pass 2^63" in str(exc), exc
        return
    assert seqs == [before + 1, before + 2]
    with contextlib.suppress(CorruptSegmentError):
        store.compact(0.5)
    got = [(r.seq, r.payload) for r in store.read(_PROBE, after_seq=before)]
    assert got == [(before + 1, b"probe"), (before + 2, b"p" * 600)], got
    snapshot = store.latest(_PROBE)
    assert snapshot is not None and snapshot.payload == b"p" * 600


class _Reached(Exception):
    """A private attribute of `_Sandbox` ran: replay's checks let through what they must not."""


@pykka.traversable
class _Inner:
    count = 0

    def ok(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _secret(self, *args: Any, **kwargs: Any) -> None:
        raise _Reached


class _Sandbox:
    """Stands in for an actor: public, private and traversable attributes."""

    label = "x"
    plain = object()

    def __init__(self) -> None:
        self.inner = _Inner()

    def ok(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _private(self, *args: Any, **kwargs: Any) -> None:
        raise _Reached


def check_journal(data: bytes) -> None:
    """Take `data` (msgpack) for a journal entry; what replay accepts reaches only public names."""
    try:
        entry = _SAFE.loads(data)
    except SerializationError:
        return
    message, _, plain = _decode(entry)
    if plain or isinstance(message, _Malformed):
        return
    sandbox = _Sandbox()
    if _refusal(sandbox, message) is not None:
        return
    assert not any(name.startswith("_") for name in message.attr_path), message
    target: Any = sandbox
    for name in message.attr_path[:-1]:
        target = getattr(target, name)
    if isinstance(message, pykka.messages.ProxySetAttr):
        setattr(target, message.attr_path[-1], message.value)
        return
    with contextlib.suppress(TypeError):  # wrong arguments for a public method: its own error
        getattr(target, message.attr_path[-1])(*message.args, **message.kwargs)


def main() -> None:
    """Run atheris over `check` and `check_arguments` with libFuzzer's command-line arguments."""
    import atheris

    def both(data: bytes) -> None:
        check(data)
        check_arguments(data)
        check_journal(data)

    atheris.Setup(sys.argv, both)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
