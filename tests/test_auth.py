"""Authenticated segments: a keyed store refuses tampered, foreign and unkeyed data.

The files are damaged for real, as an attacker would: bytes changed and the record's
CRC32C set again, so that only the HMAC can tell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from _segfile import crc32c, frames, segment_files

from pyactors import (
    END,
    AuthenticationError,
    CorruptSegmentError,
    FileCheckpointer,
    InvalidArgumentError,
    Kind,
    MsgpackSerializer,
    PersistentActor,
    SegmentStore,
    Workflow,
    recover,
)

if TYPE_CHECKING:
    from pathlib import Path

KEY = b"a secret key of 32 bytes, really"
TINY_SEGMENT = 4096  # the smallest segment size: a few hundred records roll many
OTHER_KEY = b"another secret key, just as long"


def _tamper(seg: Path, frame_index: int = -1, at: int | None = None) -> int:
    """Flip one payload byte of a frame and set its CRC again; return the frame's position."""
    data = bytearray(seg.read_bytes())
    frame = frames(bytes(data))[frame_index]
    data[frame.payload_pos if at is None else frame.pos + at] ^= 0x01
    body = bytes(data[frame.pos + 4 : frame.end])
    data[frame.pos : frame.pos + 4] = crc32c(body).to_bytes(4, "little")
    seg.write_bytes(bytes(data))
    return frame.pos


def _tamper_sealed(path: Path, stream: str, kind: int) -> None:
    """Push the records of `stream` into sealed segments, then tamper with its last one of `kind`.

    Sealed data is read only when needed, so the store still opens.
    """
    with SegmentStore(path, auth_key=KEY, segment_bytes=TINY_SEGMENT) as s:
        s.append_many([("filler", b"f" * 200) for _ in range(40)])
    sealed = segment_files(path)[:-1]
    seg, index = next(
        (seg, i)
        for seg in reversed(sealed)
        for i, f in reversed(list(enumerate(frames(seg.read_bytes()))))
        if f.stream == stream and f.kind == kind
    )
    _tamper(seg, frame_index=index)


def _keyed(path: Path, n: int = 5, **options: Any) -> Path:
    """A closed keyed store holding `n` messages of stream "s"; returns its last segment."""
    with SegmentStore(path, auth_key=KEY, **options) as store:
        for i in range(n):
            store.append("s", f"message {i}".encode())
    return segment_files(path)[-1]


def test_msgpack_and_a_key_round_trip_across_rolls_and_reopen(store_path: Path) -> None:
    values = [{"n": i, "text": "x" * (i % 50), "items": [i, i + 1]} for i in range(300)]
    with SegmentStore(store_path, auth_key=KEY, serializer=MsgpackSerializer(), segment_bytes=TINY_SEGMENT) as s:
        for v in values:
            s.append("data", s.serializer.dumps(v))
        s.append("data", s.serializer.dumps({"snapshot": True}), kind=Kind.SNAPSHOT)
    assert len(segment_files(store_path)) > 2
    with SegmentStore(store_path, auth_key=KEY, serializer=MsgpackSerializer()) as s:
        assert [s.serializer.loads(r.payload) for r in s.read("data", kinds=[Kind.MESSAGE])] == values
        latest = s.latest("data")
        assert latest is not None
        assert s.serializer.loads(latest.payload) == {"snapshot": True}
        assert s.verify().ok


def test_a_tampered_record_in_the_active_segment_raises_at_open_and_nothing_is_truncated(store_path: Path) -> None:
    seg = _keyed(store_path)
    pos = _tamper(seg, frame_index=2)
    size = seg.stat().st_size
    with pytest.raises(AuthenticationError) as info:
        SegmentStore(store_path, auth_key=KEY)
    assert (info.value.path, info.value.offset) == (str(seg), pos)
    assert "MAC" in info.value.reason
    assert isinstance(info.value, CorruptSegmentError)
    assert seg.stat().st_size == size


def test_tolerant_open_skips_and_reports_a_tampered_record_and_truncates_nothing(store_path: Path) -> None:
    seg = _keyed(store_path)
    pos = _tamper(seg)  # the last record: not a torn tail
    size = seg.stat().st_size
    with SegmentStore(store_path, auth_key=KEY, tolerant=True) as s:
        assert s.open_report.truncated_bytes == 0
        assert [(d.offset, d.tampered) for d in s.open_report.damaged] == [(pos, True)]
        assert [r.payload for r in s.read("s")] == [f"message {i}".encode() for i in range(4)]
    assert seg.stat().st_size == size


def test_a_tampered_sealed_record_raises_on_read_and_verify_reports_it(store_path: Path) -> None:
    with SegmentStore(store_path, auth_key=KEY, segment_bytes=TINY_SEGMENT) as s:
        for i in range(200):
            s.append("s", b"record %d " % i * 5)
    first = segment_files(store_path)[0]
    pos = _tamper(first, frame_index=3)
    with SegmentStore(store_path, auth_key=KEY) as s:
        with pytest.raises(AuthenticationError) as info:
            list(s.read("s"))
        assert (info.value.path, info.value.offset) == (str(first), pos)
        report = s.verify()
        assert [(d.path, d.offset, d.tampered) for d in report.damaged] == [(str(first), pos, True)]
        assert "MAC" in report.damaged[0].reason


def test_the_wrong_key_a_missing_key_and_an_unexpected_key_raise_at_open(tmp_path: Path) -> None:
    seg = _keyed(tmp_path / "keyed")
    with pytest.raises(AuthenticationError, match="another auth_key") as info:
        SegmentStore(tmp_path / "keyed", auth_key=OTHER_KEY)
    assert info.value.path == str(seg)
    with pytest.raises(AuthenticationError, match="open the store with its auth_key"):
        SegmentStore(tmp_path / "keyed")
    with pytest.raises(AuthenticationError, match="open the store with its auth_key"):
        SegmentStore(tmp_path / "keyed", tolerant=True)
    SegmentStore(tmp_path / "plain").close()
    with pytest.raises(AuthenticationError, match="not authenticated"):
        SegmentStore(tmp_path / "plain", auth_key=KEY)


def test_a_key_shorter_than_16_bytes_is_refused(store_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="16 bytes"):
        SegmentStore(store_path, auth_key=b"short")
    assert not store_path.exists() or not list(store_path.iterdir())


def test_a_compacted_keyed_store_reads_back_and_verifies(store_path: Path) -> None:
    with SegmentStore(store_path, auth_key=KEY, segment_bytes=TINY_SEGMENT) as s:
        for i in range(300):
            s.append("gone", b"dead %d " % i * 4)
            if i % 4 == 0:
                s.append("kept", b"live %d " % i * 4)
        s.delete_stream("gone")
        assert s.compact(0.3).segments_removed > 0
    with SegmentStore(store_path, auth_key=KEY) as s:
        assert [r.payload for r in s.read("kept")] == [b"live %d " % i * 4 for i in range(0, 300, 4)]
        assert s.verify().ok


def test_the_key_is_kept_by_no_python_attribute(store_path: Path) -> None:
    with SegmentStore(store_path, auth_key=KEY) as s:
        assert all(v != KEY for v in vars(s).values())
        assert all(getattr(s._log, name, None) != KEY for name in dir(s._log))
        assert KEY.decode() not in repr(s)


class _Counter(PersistentActor):
    """Counts the messages it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.state = 0

    def on_receive(self, message: Any) -> Any:
        self.state += 1
        return self.state


def test_a_persistent_actor_restoring_a_tampered_snapshot_fails_with_authentication_error(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SegmentStore(store_path, auth_key=KEY) as s:
        ref = _Counter.start(persistence_id="counter", store=s)
        assert ref.ask("tick") == 1
        ref.stop()
    _tamper_sealed(store_path, "counter", Kind.SNAPSHOT)  # the snapshot taken on stop
    with SegmentStore(store_path, auth_key=KEY) as s:
        with pytest.raises(AuthenticationError):
            recover(s)
        ref = _Counter.start(persistence_id="counter", store=s)
        assert ref.actor_stopped.wait(10), "the actor whose restore failed stops"
        failures = [r.exc_info[1] for r in caplog.records if r.exc_info]
        assert any(isinstance(e, AuthenticationError) for e in failures), failures


def _inc_workflow() -> Workflow:
    wf = Workflow("auth")
    wf.add_node("inc", lambda state: {"n": state["n"] + 1})
    wf.add_edge("inc", END)
    wf.set_entry_point("inc")
    return wf


def test_a_file_checkpointer_on_a_tampered_keyed_store_raises_authentication_error(store_path: Path) -> None:
    wf = _inc_workflow()
    with SegmentStore(store_path, auth_key=KEY, serializer=MsgpackSerializer()) as s:
        app = wf.compile(checkpointer=FileCheckpointer(store=s))
        assert app.invoke({"n": 1}, thread_id="t")["n"] == 2
    _tamper_sealed(store_path, "wf/t", Kind.CHECKPOINT)  # the last checkpoint
    with SegmentStore(store_path, auth_key=KEY, serializer=MsgpackSerializer()) as s:
        app = wf.compile(checkpointer=FileCheckpointer(store=s))
        with pytest.raises(AuthenticationError):
            app.get_state("t")


def test_a_file_checkpointer_opening_its_own_store_takes_the_key(store_path: Path) -> None:
    wf = _inc_workflow()
    with FileCheckpointer(store_path, auth_key=KEY, serializer=MsgpackSerializer()) as cp:
        assert wf.compile(checkpointer=cp).invoke({"n": 1}, thread_id="t")["n"] == 2
    with pytest.raises(AuthenticationError):
        FileCheckpointer(store_path)
    with FileCheckpointer(store_path, auth_key=KEY, serializer=MsgpackSerializer()) as cp:
        assert wf.compile(checkpointer=cp).get_state("t").state["n"] == 2


def test_a_read_only_view_of_a_live_keyed_store_needs_the_key_too(store_path: Path) -> None:
    with SegmentStore(store_path, auth_key=KEY) as live:
        live.append("s", b"written by the live writer")
        with pytest.raises(AuthenticationError):
            SegmentStore(store_path, read_only=True)
        with SegmentStore(store_path, read_only=True, auth_key=KEY) as view:
            assert [r.payload for r in view.read("s")] == [b"written by the live writer"]
            assert view.verify().ok
