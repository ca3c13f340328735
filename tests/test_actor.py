"""PersistentActor: durable state, durable mailbox, snapshot policy, serializer refusals, crashes."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import pykka
import pytest
from _actors import Recorder, events, gate, journal, seq_of, snapshots
from _util import wait_for
from pykka import messages

from pyactors import (
    ActorCrashedError,
    InvalidArgumentError,
    Kind,
    MsgpackSerializer,
    PersistentActor,
    SerializationError,
    recover,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pyactors import SegmentStore

pytestmark = pytest.mark.usefixtures("_stop_all", "_clear_events")


class Journaling(Recorder):
    """No snapshot unless asked for: every message stays in the backlog."""

    snapshot_every = None
    snapshot_on_stop = False


class EveryThree(Recorder):
    snapshot_every = 3
    snapshot_on_stop = False


class OnStopOnly(Recorder):
    snapshot_every = None


class Interval(Recorder):
    snapshot_every = None
    snapshot_interval = 0.3
    snapshot_on_stop = False


def _state(ref: pykka.ActorRef[Any]) -> list[Any]:
    """The actor's state read through a proxy attribute read (not journaled)."""
    return list(ref.proxy().state.get(timeout=10))


# -- durable state ---------------------------------------------------------------


def test_state_survives_stop_and_start(actor_store: SegmentStore) -> None:
    ref = Recorder.start(persistence_id="r", store=actor_store)
    for i in range(5):
        ref.tell(i)
    assert ref.ask("get") == [0, 1, 2, 3, 4]
    assert ref.stop() is True

    again = Recorder.start(persistence_id="r", store=actor_store)
    assert again.ask("get") == [0, 1, 2, 3, 4]
    again.tell(5)
    assert again.ask("get") == [0, 1, 2, 3, 4, 5]


def test_restore_runs_before_on_start(actor_store: SegmentStore) -> None:
    ref = Recorder.start(persistence_id="r", store=actor_store)
    ref.tell("a")
    ref.tell("b")
    ref.stop()

    again = Recorder.start(persistence_id="r", store=actor_store)
    assert again.proxy().seen_at_start.get(timeout=10) == ["a", "b"]


def test_a_fresh_actor_starts_with_no_state(actor_store: SegmentStore) -> None:
    ref = Recorder.start(persistence_id="fresh", store=actor_store)
    assert ref.proxy().seen_at_start.get(timeout=10) is None
    assert ref.ask("get") == []


def test_backlog_after_the_watermark_is_redelivered_in_order_before_new_messages(actor_store: SegmentStore) -> None:
    ref = Journaling.start(persistence_id="j", store=actor_store)
    for i in (1, 2, 3):
        ref.tell(i)
    ref.proxy().snapshot_now().get(timeout=10)
    for i in (4, 5, 6):
        ref.tell(i)
    assert _state(ref) == [1, 2, 3, 4, 5, 6]
    ref.stop()  # no snapshot on stop: 4, 5, 6 stay in the backlog

    (snap_seq, watermark, state) = snapshots(actor_store, "j")[-1]
    assert state == [1, 2, 3]
    assert watermark == seq_of(actor_store, "j", 3)

    # Told as soon as start() returns, while the backlog is being replayed.
    again = Journaling.start(persistence_id="j", store=actor_store)
    again.tell(7)
    again.tell(8)
    assert again.proxy().seen_at_start.get(timeout=10) == [1, 2, 3]
    assert _state(again) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert snap_seq < seq_of(actor_store, "j", 4)


def test_a_told_message_is_journaled_as_the_message_alone_and_an_ask_tagged(actor_store: SegmentStore) -> None:
    ref = Journaling.start(persistence_id="enc", store=actor_store)
    ref.tell(("told", 1))
    assert ref.ask(("asked", 2)) == 2
    ref.stop()
    loads = actor_store.serializer.loads
    assert [(r.kind, loads(r.payload)) for r in actor_store.read("enc")] == [
        (Kind.TOLD, ("told", 1)),
        (Kind.MESSAGE, [0, True, ("asked", 2)]),
    ]


def test_a_journal_written_before_told_records_existed_is_still_replayed(actor_store: SegmentStore) -> None:
    dumps = actor_store.serializer.dumps
    # The earlier encoding: every message, told or asked, a tagged `Kind.MESSAGE` list.
    actor_store.append("old", dumps([0, False, "told"]), Kind.MESSAGE)
    actor_store.append("old", dumps([0, True, "asked"]), Kind.MESSAGE)
    actor_store.append("old", dumps("told since"), Kind.TOLD)
    ref = Journaling.start(persistence_id="old", store=actor_store)
    assert _state(ref) == ["told", "asked", "told since"]
    assert [(m, asked) for _, m, asked in journal(actor_store, "old")] == [
        ("told", False),
        ("asked", True),
        ("told since", False),
    ]
    assert recover(actor_store)[0].backlog == 3


def test_recover_lists_actors_with_snapshot_watermark_and_backlog(actor_store: SegmentStore) -> None:
    a = Journaling.start(persistence_id="a", store=actor_store)
    a.tell(1)
    a.tell(2)
    a.proxy().snapshot_now().get(timeout=10)  # journaled too: part of the backlog
    a.tell(3)
    a.stop()
    b = Journaling.start(persistence_id="b", store=actor_store)
    b.tell("x")
    b.stop()
    actor_store.append("not-an-actor", b"raw", Kind.user(1))

    found = {r.persistence_id: r for r in recover(actor_store)}
    assert set(found) == {"a", "b"}
    snap = actor_store.latest("a", Kind.SNAPSHOT)
    assert snap is not None
    assert found["a"].snapshot_seq == snap.seq
    assert found["a"].snapshot_time == pytest.approx(snap.timestamp)
    assert found["a"].watermark == seq_of(actor_store, "a", 2)
    assert found["a"].backlog == 2  # the snapshot_now call and 3
    assert found["a"].last_seq == actor_store.last_seq("a")
    assert found["b"].snapshot_seq is None
    assert found["b"].snapshot_time is None
    assert found["b"].watermark == 0
    assert found["b"].backlog == 1


def test_recover_starts_nothing(actor_store: SegmentStore) -> None:
    ref = Journaling.start(persistence_id="a", store=actor_store)
    ref.tell(1)
    ref.stop()
    recover(actor_store)
    assert pykka.ActorRegistry.get_all() == []


# -- snapshot policy -------------------------------------------------------------


def test_snapshot_every_n_messages_records_the_watermark(actor_store: SegmentStore) -> None:
    ref = EveryThree.start(persistence_id="n", store=actor_store)
    for i in range(1, 8):
        ref.tell(i)
    assert _state(ref) == [1, 2, 3, 4, 5, 6, 7]
    snaps = snapshots(actor_store, "n")
    assert [(w, s) for _, w, s in snaps] == [
        (seq_of(actor_store, "n", 3), [1, 2, 3]),
        (seq_of(actor_store, "n", 6), [1, 2, 3, 4, 5, 6]),
    ]


def test_snapshot_every_one_leaves_no_backlog(actor_store: SegmentStore) -> None:
    ref = Recorder.start(persistence_id="one", store=actor_store)
    for i in range(4):
        ref.tell(i)
    assert _state(ref) == [0, 1, 2, 3]
    wait_for(lambda: len(snapshots(actor_store, "one")) == 4, what="4 snapshots")
    (found,) = recover(actor_store)
    assert found.backlog == 0
    assert found.watermark == seq_of(actor_store, "one", 3)


def test_snapshot_interval_snapshots_the_first_message_after_the_interval(actor_store: SegmentStore) -> None:
    t0 = time.monotonic()
    ref = Interval.start(persistence_id="t", store=actor_store)
    ref.tell(1)
    ref.tell(2)
    assert _state(ref) == [1, 2]
    if time.monotonic() - t0 < Interval.snapshot_interval:
        assert snapshots(actor_store, "t") == []
    time.sleep(max(0.0, t0 + Interval.snapshot_interval + 0.05 - time.monotonic()))
    ref.tell(3)
    assert _state(ref) == [1, 2, 3]
    _, watermark, state = snapshots(actor_store, "t")[-1]
    assert (watermark, state) == (seq_of(actor_store, "t", 3), [1, 2, 3])
    t1 = time.monotonic()
    ref.tell(4)
    assert _state(ref) == [1, 2, 3, 4]
    if time.monotonic() - t1 < Interval.snapshot_interval:
        assert snapshots(actor_store, "t")[-1][2] == [1, 2, 3]  # not due yet


def test_snapshot_on_stop_covers_every_handled_message(actor_store: SegmentStore) -> None:
    ref = OnStopOnly.start(persistence_id="s", store=actor_store)
    ref.tell("a")
    ref.tell("b")
    assert _state(ref) == ["a", "b"]
    assert snapshots(actor_store, "s") == []
    ref.stop()
    (_, watermark, state), *_ = snapshots(actor_store, "s")
    assert (watermark, state) == (seq_of(actor_store, "s", "b"), ["a", "b"])
    assert recover(actor_store)[0].backlog == 0


def test_no_snapshot_on_stop_when_disabled(actor_store: SegmentStore) -> None:
    ref = Journaling.start(persistence_id="s", store=actor_store)
    ref.tell("a")
    ref.stop()
    assert snapshots(actor_store, "s") == []
    assert recover(actor_store)[0].backlog == 1


def test_snapshot_now_covers_the_messages_handled_before_it(actor_store: SegmentStore) -> None:
    ref = Journaling.start(persistence_id="now", store=actor_store)
    ref.tell("a")
    ref.tell("b")
    ref.proxy().snapshot_now().get(timeout=10)
    ((_, watermark, state),) = snapshots(actor_store, "now")
    assert (watermark, state) == (seq_of(actor_store, "now", "b"), ["a", "b"])


class _Ledger:
    """Durable data plus a lock: not picklable as is."""

    def __init__(self, entries: list[int] | None = None) -> None:
        self.lock = threading.Lock()
        self.entries = entries or []


class LedgerActor(PersistentActor):
    snapshot_every = 1
    restored_from: Any = None

    def on_start(self) -> None:
        if self.restored_from is None:
            self.ledger = _Ledger()

    def snapshot(self) -> Any:
        return {"entries": list(self.ledger.entries)}

    def restore(self, state: Any) -> None:
        self.restored_from = state
        self.ledger = _Ledger(state["entries"])

    def on_receive(self, message: Any) -> Any:
        with self.ledger.lock:
            self.ledger.entries.append(message)
        return list(self.ledger.entries)


def test_custom_snapshot_and_restore_hooks(actor_store: SegmentStore) -> None:
    ref = LedgerActor.start(persistence_id="ledger", store=actor_store)
    assert ref.ask(10) == [10]
    assert ref.ask(20) == [10, 20]
    ref.stop()
    assert snapshots(actor_store, "ledger")[-1][2] == {"entries": [10, 20]}

    again = LedgerActor.start(persistence_id="ledger", store=actor_store)
    assert again.proxy().restored_from.get(timeout=10) == {"entries": [10, 20]}
    assert again.ask(30) == [10, 20, 30]


# -- proxies ---------------------------------------------------------------------


def test_proxy_calls_and_attribute_sets_are_journaled_and_replayed_but_reads_are_not(
    actor_store: SegmentStore,
) -> None:
    ref = Journaling.start(persistence_id="p", store=actor_store)
    proxy = ref.proxy()
    assert proxy.add("via-proxy").get(timeout=10) == 1
    proxy.add.defer("deferred")
    proxy.label = "set-by-proxy"
    assert proxy.label.get(timeout=10) == "set-by-proxy"
    assert proxy.state.get(timeout=10) == ["via-proxy", "deferred"]
    assert [(entry, asked) for _, entry, asked in journal(actor_store, "p")] == [
        (messages.ProxyCall(attr_path=("add",), args=("via-proxy",), kwargs={}), True),  # a proxy call is an ask...
        (messages.ProxyCall(attr_path=("add",), args=("deferred",), kwargs={}), False),  # ...defer() a tell
        (messages.ProxySetAttr(attr_path=("label",), value="set-by-proxy"), True),
    ]
    ref.stop()

    again = Journaling.start(persistence_id="p", store=actor_store).proxy()
    assert again.seen_at_start.get(timeout=10) is None  # no snapshot: all of it came from the journal
    assert again.state.get(timeout=10) == ["via-proxy", "deferred"]
    assert again.label.get(timeout=10) == "set-by-proxy"


# -- serializer refusals ---------------------------------------------------------


def _assert_refused_at_call(store: SegmentStore, ref: pykka.ActorRef[Any], bad: Any) -> None:
    """`bad` is refused by tell, ask and a proxy call; nothing queued or journaled; actor fine."""
    pid = "bad"
    before_seq = store.last_seq(pid)
    before_snap = store.latest(pid, Kind.SNAPSHOT)
    with pytest.raises(SerializationError):
        ref.tell(bad)
    with pytest.raises(SerializationError):
        ref.ask(bad, timeout=10)
    with pytest.raises(SerializationError):
        ref.ask(bad, block=False)
    with pytest.raises(SerializationError):
        ref.proxy().add(bad)
    assert store.last_seq(pid) == before_seq
    assert ref.is_alive()
    assert ref.ask("after") == 2
    assert ref.ask("get") == ["before", "after"]  # nothing else was queued
    snap = store.latest(pid, Kind.SNAPSHOT)
    assert snap is not None
    assert before_snap is not None
    assert snap.seq > before_snap.seq
    assert store.serializer.loads(before_snap.payload[8:]) == ["before"]  # still readable (after the watermark)


def test_a_message_pickle_refuses_raises_at_the_call_and_nothing_is_queued(actor_store: SegmentStore) -> None:
    ref = Recorder.start(persistence_id="bad", store=actor_store)
    ref.ask("before")
    _assert_refused_at_call(actor_store, ref, lambda: None)


def test_a_message_msgpack_refuses_raises_at_the_call_and_nothing_is_queued(
    open_actor_store: Callable[..., SegmentStore],
) -> None:
    store = open_actor_store(serializer=MsgpackSerializer())
    ref = Recorder.start(persistence_id="bad", store=store)
    ref.ask("before")
    _assert_refused_at_call(store, ref, object())


class Hoarder(Recorder):
    """Keeps whatever it is given in its state: a lambda makes the state unpicklable."""

    def on_receive(self, message: Any) -> Any:
        if message == "poison":
            self.state.append(self.make_poison())
            return None
        if message == "cure":
            self.state = [m for m in self.state if not callable(m)]
            return None
        return super().on_receive(message)

    @staticmethod
    def make_poison() -> Any:
        return lambda: "unpicklable"


def test_a_state_the_serializer_refuses_fails_the_snapshot_but_not_the_actor(
    actor_store: SegmentStore, caplog: pytest.LogCaptureFixture
) -> None:
    ref = Hoarder.start(persistence_id="hoard", store=actor_store)
    ref.ask("ok")
    good = actor_store.latest("hoard", Kind.SNAPSHOT)
    assert good is not None

    with caplog.at_level(logging.ERROR, logger="pyactors.actor"):
        ref.tell("poison")  # a tell: the failed snapshot is logged
        wait_for(lambda: any("snapshot failed" in r.getMessage() for r in caplog.records), what="log of the failure")
    with pytest.raises(SerializationError):
        ref.ask("more")  # an ask: the caller gets the error
    assert ref.is_alive()
    latest = actor_store.latest("hoard", Kind.SNAPSHOT)
    assert latest is not None
    assert latest.seq == good.seq
    assert actor_store.serializer.loads(latest.payload[8:]) == ["ok"]  # the state after the watermark

    ref.tell("cure")
    assert ref.ask("get") == ["ok", "more"]
    wait_for(lambda: snapshots(actor_store, "hoard")[-1][2] == ["ok", "more"], what="a snapshot after the cure")
    ref.stop()
    assert Hoarder.start(persistence_id="hoard", store=actor_store).ask("get") == ["ok", "more"]


def test_a_state_that_keeps_failing_to_serialize_is_logged_once_until_a_snapshot_succeeds(
    actor_store: SegmentStore, caplog: pytest.LogCaptureFixture
) -> None:
    def errors() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "snapshot failed" in r.getMessage()
        ]

    ref = Hoarder.start(persistence_id="hoard-once", store=actor_store)
    with caplog.at_level(logging.DEBUG, logger="pyactors.actor"):
        ref.tell("poison")
        for i in range(20):
            ref.tell(f"m{i}")  # each retries the snapshot, and fails

        def retries() -> int:
            return sum(1 for r in caplog.records if r.levelno == logging.DEBUG and "snapshot failed" in r.getMessage())

        wait_for(lambda: retries() == 20, what="the 20 retries after the first failure")
        assert len(errors()) == 1, errors()
        assert "make it serializable, or override snapshot()" in errors()[0]
        assert "logged once until a snapshot succeeds" in errors()[0]
        ref.tell("cure")  # the next snapshot is written...
        ref.tell("poison")  # ...so a new failure is worth an ERROR again
        ref.tell("m")
        wait_for(lambda: len(errors()) == 2, what="the second run of failures logged")
    ref.tell("cure")
    ref.stop()


# -- crashes ---------------------------------------------------------------------


def test_asks_queued_behind_a_crash_get_actor_crashed_error_and_are_redelivered(actor_store: SegmentStore) -> None:
    hold = f"hold-{uuid.uuid4()}"
    token = str(uuid.uuid4())
    ref = Recorder.start(persistence_id="c", store=actor_store)
    ref.tell("first")
    ref.tell(("wait", hold))
    ref.tell(("boom", token))  # a tell that raises: the actor crashes
    futures = [ref.ask(f"asked-{i}", block=False) for i in range(3)]
    gate(hold).set()

    for future in futures:
        with pytest.raises(ActorCrashedError) as info:
            future.get(timeout=10)
        assert isinstance(info.value, pykka.ActorDeadError)
        assert info.value.persistence_id == "c"
    wait_for(lambda: not ref.is_alive(), what="the crashed actor to stop")
    assert events("failure", "c") == [("failure", "c")]

    again = Recorder.start(persistence_id="c", store=actor_store)
    assert again.ask("get") == ["first", f"boom:{token}", "asked-0", "asked-1", "asked-2"]


def test_an_ask_that_raised_does_not_crash_the_restored_actor_when_replayed(actor_store: SegmentStore) -> None:
    # The first delivery's exception went to the caller and the actor went on; a
    # re-delivery (at-least-once) has no caller, and must not turn it into a crash.
    ref = Journaling.start(persistence_id="f", store=actor_store)
    ref.tell("a")
    with pytest.raises(ValueError, match="refused"):
        ref.ask(("fail", "refused"))
    ref.tell("b")
    assert _state(ref) == ["a", "b"]
    ref.stop()  # no snapshot: the next life replays "a", the failed ask and "b"
    again = Journaling.start(persistence_id="f", store=actor_store)
    assert again.ask("get") == ["a", "b"]
    assert again.is_alive()


@pytest.mark.usefixtures("_gc_disabled")
def test_a_crashed_actor_and_its_state_are_freed_without_a_garbage_collection(actor_store: SegmentStore) -> None:
    ref = Recorder.start(persistence_id="freed", store=actor_store)
    life = ref._actor_weakref  # pykka's weak reference to the instance
    ref.tell(("boom", str(uuid.uuid4())))
    # Its traceback's frames hold it in a cycle, which only the collector could free.
    wait_for(lambda: life() is None, what="the crashed instance freed")


_CAUSES: list[BaseException] = []


class CrashesFromACause(PersistentActor):
    """Crashes on every message, raising from the last exception in `_CAUSES`."""

    def on_receive(self, message: Any) -> Any:
        raise RuntimeError(message) from _CAUSES[-1]


def _catcher() -> Iterator[list[BaseException]]:
    """A generator that catches the ValueErrors thrown into it and keeps going."""
    caught: list[BaseException] = []
    while True:
        try:
            yield caught
        except ValueError as exc:
            caught.append(exc)


@pytest.mark.usefixtures("_gc_disabled")
def test_freeing_a_crashed_actor_never_closes_a_generator_its_traceback_holds(actor_store: SegmentStore) -> None:
    gen = _catcher()
    caught = next(gen)
    gen.throw(ValueError("caught inside the generator"))  # its traceback holds the suspended generator's frame
    _CAUSES.append(caught[0])
    ref = CrashesFromACause.start(persistence_id="cause", store=actor_store)
    life = ref._actor_weakref
    ref.tell("crash")
    wait_for(lambda: life() is None, what="the crashed instance freed")  # its frames were cleared
    assert next(gen) is caught  # the generator still runs


def test_messages_told_after_the_crash_are_refused_not_lost_silently(actor_store: SegmentStore) -> None:
    token = str(uuid.uuid4())
    ref = Recorder.start(persistence_id="c", store=actor_store)
    ref.tell(("boom", token))
    wait_for(lambda: not ref.is_alive(), what="the crash")
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("late")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("late", timeout=10)
    assert [entry for _, entry, _ in journal(actor_store, "c")] == [("boom", token)]


def test_a_second_life_of_a_running_persistence_id_is_refused(actor_store: SegmentStore) -> None:
    ref = Recorder.start(persistence_id="once", store=actor_store)
    with pytest.raises(InvalidArgumentError):
        Recorder.start(persistence_id="once", store=actor_store)
    with pytest.raises(InvalidArgumentError):
        Journaling.start(persistence_id="once", store=actor_store)
    assert ref.ask("still-me") == 1
    ref.stop()
    assert Recorder.start(persistence_id="once", store=actor_store).ask("get") == ["still-me"]


def test_the_same_persistence_id_in_two_stores_is_two_actors(
    open_actor_store: Callable[..., SegmentStore], tmp_path: Any
) -> None:
    one = open_actor_store(tmp_path / "one")
    two = open_actor_store(tmp_path / "two")
    a = Recorder.start(persistence_id="same", store=one)
    b = Recorder.start(persistence_id="same", store=two)
    a.tell("in-one")
    assert b.ask("get") == []


def test_missing_persistence_id_or_store_is_an_invalid_argument(actor_store: SegmentStore) -> None:
    with pytest.raises(InvalidArgumentError):
        Recorder.start(store=actor_store)
    with pytest.raises(InvalidArgumentError):
        Recorder.start(persistence_id="", store=actor_store)
    with pytest.raises(InvalidArgumentError):
        Recorder.start(persistence_id="no-store")
    with pytest.raises(InvalidArgumentError):
        Recorder.start(persistence_id="bad-store", store="not a store")  # type: ignore[arg-type]
    assert pykka.ActorRegistry.get_all() == []


def test_persistence_id_and_store_can_be_class_attributes(actor_store: SegmentStore) -> None:
    defaults = type("Defaults", (Recorder,), {"persistence_id": "from-class", "store": actor_store})
    ref = defaults.start()
    ref.tell("x")
    ref.stop()
    assert [(entry, asked) for _, entry, asked in journal(actor_store, "from-class")] == [("x", False)]
    assert Recorder.start(persistence_id="from-class", store=actor_store).ask("get") == ["x"]


# -- msgpack ---------------------------------------------------------------------


class Tally(PersistentActor):
    """Plain-data state and messages, for the msgpack serializer."""

    snapshot_every = None
    snapshot_on_stop = False

    def on_start(self) -> None:
        if self.state is None:
            self.state = {"total": 0, "log": []}

    def on_receive(self, message: Any) -> Any:
        op, amount = message  # a tuple comes back from msgpack as a list
        if op == "add":
            self.state["total"] += amount
            self.state["log"].append(amount)
        return self.state["total"]

    def add(self, amount: int, *, note: str = "") -> int:
        self.state["total"] += amount
        self.state["log"].append(f"{amount}{note}")
        return int(self.state["total"])


def test_msgpack_round_trips_plain_messages_proxy_calls_and_snapshots(
    open_actor_store: Callable[..., SegmentStore],
) -> None:
    store = open_actor_store(serializer=MsgpackSerializer())
    ref = Tally.start(persistence_id="tally", store=store)
    assert ref.ask(("add", 2)) == 2
    ref.proxy().snapshot_now().get(timeout=10)
    assert ref.proxy().add(3, note="!").get(timeout=10) == 5
    ref.tell(["add", 4])
    assert ref.proxy().state.get(timeout=10) == {"total": 9, "log": [2, "3!", 4]}
    ref.stop()
    assert snapshots(store, "tally")[-1][2] == {"total": 2, "log": [2]}

    again = Tally.start(persistence_id="tally", store=store)
    assert again.proxy().state.get(timeout=10) == {"total": 9, "log": [2, "3!", 4]}
