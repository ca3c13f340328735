"""Actors and helpers shared by the actor, supervisor and pykka-behaviour tests (not collected).

`Recorder` keeps the messages it processed, in order, in `self.state` (a list), and
reports its life cycle to `EVENTS`. Its control messages:

* ``"get"``: reply with a copy of the state (changes nothing);
* ``("wait", name)``: block until `gate(name)` is set (bounded), to hold messages queued;
* ``("boom", token)``: raise the first time `token` is seen in this process, and be
  recorded as ``"boom:<token>"`` on any later delivery (a crash that a restart heals);
* ``("fail", text)``: always raise `ValueError(text)`.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from pyactors import Kind, PersistentActor
from pyactors.actor import _backlog

if TYPE_CHECKING:
    from pyactors import SegmentStore

#: (event, persistence id, time.monotonic()) appended from the actors' threads.
#: Events: init (a new life constructed), start (on_start), stop (on_stop), failure
#: (on_failure), boom (about to raise for a crash token).
EVENTS: list[tuple[str, str, float]] = []

_GATES: dict[str, threading.Event] = {}
_CRASHED: set[str] = set()
_LOCK = threading.Lock()

#: Longest a ``("wait", name)`` message blocks (a safety bound: tests set their gates).
GATE_TIMEOUT = 10.0


def gate(name: str) -> threading.Event:
    """The event a ``("wait", name)`` message waits for."""
    with _LOCK:
        return _GATES.setdefault(name, threading.Event())


def events(kind: str | None = None, pid: str | None = None) -> list[tuple[str, str]]:
    """`EVENTS` as (event, pid) pairs, optionally filtered."""
    return [(e, p) for e, p, _ in list(EVENTS) if (kind is None or e == kind) and (pid is None or p == pid)]


def event_times(kind: str, pid: str) -> list[float]:
    """When each `kind` event of `pid` happened (time.monotonic())."""
    return [t for e, p, t in list(EVENTS) if e == kind and p == pid]


class Recorder(PersistentActor):
    """A persistent actor whose state is the list of messages it processed."""

    snapshot_every = 1

    def __init__(self) -> None:
        super().__init__()
        self.label = "new"
        self.seen_at_start: list[Any] | None = None
        EVENTS.append(("init", self.persistence_id, time.monotonic()))

    def on_start(self) -> None:
        self.seen_at_start = None if self.state is None else list(self.state)
        if self.state is None:
            self.state = []
        EVENTS.append(("start", self.persistence_id, time.monotonic()))

    def on_stop(self) -> None:
        EVENTS.append(("stop", self.persistence_id, time.monotonic()))

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        EVENTS.append(("failure", self.persistence_id, time.monotonic()))

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return list(self.state)
        if isinstance(message, (tuple, list)) and len(message) == 2:
            tag, arg = message
            if tag == "wait":
                gate(arg).wait(GATE_TIMEOUT)
                return None
            if tag == "boom":
                with _LOCK:
                    first = arg not in _CRASHED
                    _CRASHED.add(arg)
                if first:
                    EVENTS.append(("boom", self.persistence_id, time.monotonic()))
                    msg = f"boom {arg}"
                    raise RuntimeError(msg)
                self.state.append(f"boom:{arg}")
                return len(self.state)
            if tag == "fail":
                raise ValueError(arg)
        self.state.append(message)
        return len(self.state)

    def add(self, item: Any) -> int:
        """A proxy-callable way to record an item."""
        self.state.append(item)
        return len(self.state)


def journal(store: SegmentStore, pid: str) -> list[tuple[int, Any, bool]]:
    """The journaled messages of `pid`, decoded as a restart does: (seq, message, asked)."""
    records = store.read_payloads(pid, kinds=[Kind.MESSAGE, Kind.TOLD])
    return [
        (seq, message, asked)
        for seq, message, asked, _ in _backlog(records, store.last_seq(pid), store.serializer.loads)
    ]


def seq_of(store: SegmentStore, pid: str, message: Any) -> int:
    """The seq of the (only) journaled message equal to `message`."""
    found = [seq for seq, entry, _ in journal(store, pid) if entry == message]
    assert len(found) == 1, f"{message!r} journaled {len(found)} times in {pid}"
    return found[0]


def snapshots(store: SegmentStore, pid: str) -> list[tuple[int, int, Any]]:
    """Every snapshot of `pid`: (seq, watermark, state), oldest first."""
    loads = store.serializer.loads
    out = []
    for r in store.read(pid, kinds=[Kind.SNAPSHOT]):
        # { watermark u64 LE | serialized state } (pyactors.actor)
        out.append((r.seq, int.from_bytes(r.payload[:8], "little"), loads(r.payload[8:])))
    return out
