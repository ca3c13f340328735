"""Supervisor: restarts from snapshot + journal, strategies, intensity, escalation, backoff, stable refs."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import pykka
import pytest
from _actors import EVENTS, GATE_TIMEOUT, Recorder, event_times, events, gate
from _util import wait_for

from pyactors import (
    ActorCrashedError,
    InvalidArgumentError,
    RestartIntensityError,
    SupervisedRef,
    Supervisor,
    SupervisorRef,
)

if TYPE_CHECKING:
    from pyactors import SegmentStore

pytestmark = pytest.mark.usefixtures("_stop_all", "_clear_events")


class EveryTwo(Recorder):
    snapshot_every = 2
    snapshot_on_stop = True


SUPERVISOR_FAILURES: list[BaseException | None] = []


class RecordingSupervisor(Supervisor):
    """A supervisor that records why it failed."""

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        SUPERVISOR_FAILURES.append(exception_value)
        super().on_failure(exception_type, exception_value, traceback)


def _boom() -> tuple[str, str]:
    return ("boom", str(uuid.uuid4()))


def _wait_restarts(sup: SupervisorRef, pid: str, n: int) -> None:
    """Wait until `pid` has been restarted `n` times and its last restart is complete."""
    wait_for(
        lambda: (s := sup.stats()[pid]).restarts == n and s.last_ms is not None and len(_recovery(sup, pid)) == n,
        what=f"{pid} restarted {n} times",
    )


def _recovery(sup: SupervisorRef, pid: str) -> list[float]:
    actor = sup._actor_weakref()
    assert actor is not None
    return list(actor._children[pid].recovery_ms)


def test_a_crash_on_a_told_message_restarts_the_child_from_snapshot_plus_redelivered_messages(
    actor_store: SegmentStore,
) -> None:
    sup = Supervisor.start(store=actor_store, max_restarts=3, period=10)
    ref = sup.spawn(EveryTwo, persistence_id="w")
    boom = _boom()
    for m in (1, 2, 3, boom, 4, 5):
        ref.tell(m)
    _wait_restarts(sup, "w", 1)
    # Snapshot after 2; 3, the crashing message, 4 and 5 come back from the journal.
    assert ref.proxy().seen_at_start.get(timeout=10) == [1, 2]
    for m in (6, 7):
        ref.tell(m)
    assert ref.ask("get", timeout=10) == [1, 2, 3, f"boom:{boom[1]}", 4, 5, 6, 7]
    assert events("init", "w") == [("init", "w")] * 2
    assert events("failure", "w") == [("failure", "w")]


def _three_children(store: SegmentStore, strategy: str) -> tuple[SupervisorRef, dict[str, SupervisedRef]]:
    sup = Supervisor.start(store=store, strategy=strategy, max_restarts=5, period=10)
    refs = {pid: sup.spawn(Recorder, persistence_id=pid) for pid in ("a", "b", "c")}
    for pid, ref in refs.items():
        ref.tell(f"{pid}-before")
    for ref in refs.values():
        ref.ask("get", timeout=10)  # all started and settled
    EVENTS.clear()
    return sup, refs


def _lifecycle() -> list[tuple[str, str]]:
    """Stops (on_stop) and new lives (constructed by the supervisor, in start order)."""
    return [(e, p) for e, p in events() if e in ("init", "stop")]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("one_for_one", [("init", "b")]),
        ("one_for_all", [("stop", "c"), ("stop", "a"), ("init", "a"), ("init", "b"), ("init", "c")]),
        ("rest_for_one", [("stop", "c"), ("init", "b"), ("init", "c")]),
    ],
)
def test_strategy_restarts_exactly_its_children_in_order(
    actor_store: SegmentStore, strategy: str, expected: list[tuple[str, str]]
) -> None:
    sup, refs = _three_children(actor_store, strategy)
    boom = _boom()
    refs["b"].tell(boom)
    restarted = {p for e, p in expected if e == "init"}
    for pid in sorted(restarted):  # the failed child and the siblings restarted with it
        _wait_restarts(sup, pid, 1)
    wait_for(lambda: {p for e, p in events("start")} == restarted, what="on_start of every restarted child")
    assert _lifecycle() == expected
    assert {pid: s.restarts for pid, s in sup.stats().items()} == {
        pid: int(pid in restarted) for pid in ("a", "b", "c")
    }
    # Every child kept its state; the siblings stopped normally (snapshot on stop).
    assert refs["a"].ask("get", timeout=10) == ["a-before"]
    assert refs["b"].ask("get", timeout=10) == ["b-before", f"boom:{boom[1]}"]
    assert refs["c"].ask("get", timeout=10) == ["c-before"]


def test_restart_intensity_exceeded_stops_the_children_and_fails_the_supervisor(actor_store: SegmentStore) -> None:
    SUPERVISOR_FAILURES.clear()
    sup = RecordingSupervisor.start(store=actor_store, max_restarts=2, period=30)
    crashing = sup.spawn(Recorder, persistence_id="crashing")
    bystander = sup.spawn(Recorder, persistence_id="bystander")
    bystander.tell("kept")
    bystander.ask("get", timeout=10)
    # Three crashing messages: each new life replays the one that killed its
    # predecessor (healed) and dies on the next one. The third crash is one too many.
    for _ in range(3):
        crashing.tell(_boom())

    wait_for(lambda: not sup.is_alive(), what="the supervisor to fail")
    wait_for(lambda: len(SUPERVISOR_FAILURES) == 1, what="on_failure of the supervisor")
    assert isinstance(SUPERVISOR_FAILURES[0], RestartIntensityError)
    assert SUPERVISOR_FAILURES[0].restarts == 2
    assert len(events("boom", "crashing")) == 3
    assert events("init", "crashing") == [("init", "crashing")] * 3
    assert events("stop", "bystander") == [("stop", "bystander")]
    for ref in (crashing, bystander):
        assert not ref.is_alive()
        with pytest.raises(RestartIntensityError):
            ref.tell("after")
        with pytest.raises(RestartIntensityError):
            ref.ask("get", timeout=10)
    with pytest.raises(pykka.ActorDeadError):
        sup.stats()
    # The bystander stopped normally, so its state is in its snapshot.
    assert Recorder.start(persistence_id="bystander", store=actor_store).ask("get") == ["kept"]


def test_a_nested_supervisor_escalates_and_its_parent_restarts_the_subtree(actor_store: SegmentStore) -> None:
    top = Supervisor.start(store=actor_store, max_restarts=3, period=30, name="top")
    mid = top.spawn(Supervisor, persistence_id="mid", max_restarts=0, period=30)
    mid_proxy = mid.proxy()
    g1 = mid_proxy.spawn(EveryTwo, persistence_id="g1").get(timeout=10)
    g2 = mid_proxy.spawn(Recorder, persistence_id="g2").get(timeout=10)
    assert isinstance(g1, SupervisedRef)
    for m in (1, 2, 3):
        g1.tell(m)
    g2.tell("x")
    assert g2.ask("get", timeout=10) == ["x"]
    assert g1.ask("get", timeout=10) == [1, 2, 3]
    EVENTS.clear()

    boom = _boom()
    g1.tell(boom)  # mid allows no restart: it gives up, and top restarts mid with its children
    _wait_restarts(top, "mid", 1)
    wait_for(lambda: g1.is_alive() and g2.is_alive(), what="the grandchildren to come back")
    assert g1.ask("get", timeout=10) == [1, 2, 3, f"boom:{boom[1]}"]
    assert g2.ask("get", timeout=10) == ["x"]
    assert events("init") == [("init", "g1"), ("init", "g2")]
    assert ("stop", "g2") in events()  # mid stopped it when it gave up
    assert top.stats()["mid"].restarts == 1
    assert mid_proxy.children().get(timeout=10) == ["g1", "g2"]
    assert mid.proxy().child("g1").get(timeout=10) is g1


class SlowStop(Recorder):
    """Takes a while to stop: a restart that does not wait for it finds it running."""

    def on_stop(self) -> None:
        time.sleep(0.2)
        super().on_stop()


class BuggySupervisor(Supervisor):
    """A supervisor with a bug: it crashes on the message "bug"."""

    def on_receive(self, message: Any) -> Any:
        if message == "bug":
            raise RuntimeError("a bug in the supervisor")
        return super().on_receive(message)


def _buggy_tree(
    store: SegmentStore, first: type[Recorder]
) -> tuple[SupervisorRef, SupervisedRef, SupervisedRef, SupervisedRef]:
    """top -> mid (a BuggySupervisor) -> g1 (a `first`), g2; g1 holds ["x"], g2 ["y"]."""
    top = Supervisor.start(store=store, max_restarts=5, period=30, name="top")
    mid = top.spawn(BuggySupervisor, persistence_id="mid", max_restarts=3, period=30)
    g1 = mid.proxy().spawn(first, persistence_id="g1").get(timeout=10)
    g2 = mid.proxy().spawn(Recorder, persistence_id="g2").get(timeout=10)
    g1.tell("x")
    g2.tell("y")
    assert (g1.ask("get", timeout=10), g2.ask("get", timeout=10)) == (["x"], ["y"])
    return top, mid, g1, g2


def test_a_nested_supervisor_that_crashes_gets_every_child_back(actor_store: SegmentStore) -> None:
    top, mid, g1, g2 = _buggy_tree(actor_store, SlowStop)
    EVENTS.clear()

    mid.tell("bug")
    _wait_restarts(top, "mid", 1)
    # Its children were stopped before top restarted it, so its next life started them
    # again at the first try (a child still running would refuse a second life).
    assert (g1.ask("get", timeout=10), g2.ask("get", timeout=10)) == (["x"], ["y"])
    assert top.stats()["mid"].restarts == 1
    assert events("stop") == [("stop", "g2"), ("stop", "g1")]  # last started first
    assert events("init") == [("init", "g1"), ("init", "g2")]


_ARMED: list[bool] = []


class FailsToStartWhenArmed(Recorder):
    """Its constructor raises once after the test arms it."""

    def __init__(self) -> None:
        if _ARMED:
            _ARMED.clear()
            msg = "cannot start this time"
            raise RuntimeError(msg)
        super().__init__()


def test_children_a_restarted_supervisor_fails_to_adopt_are_adopted_by_its_next_life(
    actor_store: SegmentStore,
) -> None:
    top, mid, g1, g2 = _buggy_tree(actor_store, FailsToStartWhenArmed)
    _ARMED.append(True)
    mid.tell("bug")
    # Its first new life fails to start g1 and crashes; the second adopts both again.
    wait_for(lambda: (s := top.stats()["mid"]).restarts == 2 and s.last_ms is not None, what="mid back")
    assert (g1.ask("get", timeout=10), g2.ask("get", timeout=10)) == (["x"], ["y"])
    assert mid.proxy().children().get(timeout=10) == ["g1", "g2"]


def test_backoff_delays_each_restart_at_least_the_configured_time(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store, max_restarts=5, period=30, backoff_initial=0.2, backoff_max=1.0)
    ref = sup.spawn(Recorder, persistence_id="slow")
    for n, delay in enumerate((0.2, 0.4), start=1):
        ref.tell(_boom())
        _wait_restarts(sup, "slow", n)
        failed_at = event_times("boom", "slow")[-1]
        restarted_at = event_times("init", "slow")[-1]
        assert restarted_at - failed_at >= delay
        assert sup.stats()["slow"].last_ms >= delay * 1000


def test_tell_while_the_child_is_down_is_journaled_and_delivered_after_the_restart(
    actor_store: SegmentStore,
) -> None:
    sup = Supervisor.start(store=actor_store, max_restarts=5, period=30, backoff_initial=0.5, backoff_max=0.5)
    ref = sup.spawn(Recorder, persistence_id="down")
    ref.tell("before")
    boom = _boom()
    ref.tell(boom)
    wait_for(lambda: events("failure", "down"), what="the crash")
    ref.tell("while-down-1")  # must not raise, block, or be lost
    ref.tell("while-down-2")
    told_at = time.monotonic()
    _wait_restarts(sup, "down", 1)
    assert told_at < event_times("init", "down")[-1]  # told before the next life existed
    ref.tell("after")
    assert ref.ask("get", timeout=10) == ["before", f"boom:{boom[1]}", "while-down-1", "while-down-2", "after"]


def test_ask_while_the_child_is_down_waits_for_the_next_life(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store, max_restarts=5, period=30, backoff_initial=0.3, backoff_max=0.3)
    ref = sup.spawn(Recorder, persistence_id="waiting")
    boom = _boom()
    ref.tell(boom)
    wait_for(lambda: events("failure", "waiting"), what="the crash")
    assert ref.is_alive()  # restarting counts as alive
    asked_at = time.monotonic()
    assert ref.ask("asked-while-down", timeout=10) == 2
    assert asked_at < event_times("init", "waiting")[-1]
    ref.tell(_boom())
    wait_for(lambda: len(events("failure", "waiting")) == 2, what="the second crash")
    with pytest.raises(pykka.Timeout):  # the wait is bounded by the caller's timeout
        ref.ask("not-in-time", timeout=0.05)
    _wait_restarts(sup, "waiting", 2)
    assert "not-in-time" not in ref.ask("get", timeout=10)  # a timed-out wait sent nothing


def test_proxies_and_ask_keep_working_across_a_restart(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store, max_restarts=3, period=10)
    ref = sup.spawn(Recorder, persistence_id="px")
    proxy = ref.proxy()
    assert proxy.add("one").get(timeout=10) == 1
    boom = _boom()
    ref.tell(boom)
    _wait_restarts(sup, "px", 1)
    assert proxy.add("two").get(timeout=10) == 3
    proxy.label = "relabelled"
    assert proxy.label.get(timeout=10) == "relabelled"
    assert proxy.state.get(timeout=10) == ["one", f"boom:{boom[1]}", "two"]
    assert ref.ask("get", timeout=10) == ["one", f"boom:{boom[1]}", "two"]
    assert ref.proxy().seen_at_start.get(timeout=10) == ["one"]


def test_an_ask_in_flight_during_a_crash_gets_an_error_not_a_hang(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store, max_restarts=3, period=10)
    ref = sup.spawn(Recorder, persistence_id="inflight")
    hold = f"hold-{uuid.uuid4()}"
    boom = _boom()
    ref.tell(("wait", hold))
    ref.tell(boom)
    asked = ref.ask("asked", block=False)
    called = ref.proxy().add("called")
    gate(hold).set()
    with pytest.raises(ActorCrashedError):
        asked.get(timeout=10)
    with pytest.raises(pykka.ActorDeadError):
        called.get(timeout=10)
    _wait_restarts(sup, "inflight", 1)
    # Both were journaled before the crash: the next life handles them, in order.
    assert ref.ask("get", timeout=10) == [f"boom:{boom[1]}", "asked", "called"]


def test_an_exception_on_an_ask_goes_to_the_caller_and_restarts_nothing(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store)
    ref = sup.spawn(Recorder, persistence_id="asked")
    with pytest.raises(ValueError, match="nope"):
        ref.ask(("fail", "nope"), timeout=10)
    assert ref.ask("still-here", timeout=10) == 1
    assert sup.stats()["asked"].restarts == 0


def test_an_ask_that_raised_before_a_crash_does_not_crash_the_restarted_child(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store, max_restarts=3, period=30)
    ref = sup.spawn(EveryTwo, persistence_id="replayed")
    ref.tell(1)
    ref.tell(2)  # snapshot: watermark here
    with pytest.raises(ValueError, match="bad request"):
        ref.ask(("fail", "bad request"), timeout=10)  # the caller got it; the child went on
    boom = _boom()
    ref.tell(boom)  # a real crash: the next life replays the failed ask and the crash
    wait_for(lambda: not sup.is_alive() or _recovery(sup, "replayed"), what="a restart or the supervisor failing")
    assert sup.is_alive(), "the supervisor gave up: each new life crashed on the replayed failed ask"
    assert ref.ask("get", timeout=10) == [1, 2, f"boom:{boom[1]}"]
    assert sup.stats()["replayed"].restarts == 1


def test_stats_count_restarts_and_record_recovery_times(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store, max_restarts=5, period=30)
    ref = sup.spawn(Recorder, persistence_id="s")
    before = sup.stats()["s"]
    assert (before.persistence_id, before.restarts, before.last_ms, before.p50_ms, before.p99_ms) == (
        "s",
        0,
        None,
        None,
        None,
    )
    for n in (1, 2, 3):
        ref.tell(_boom())
        _wait_restarts(sup, "s", n)
    stats = sup.stats()["s"]
    times = _recovery(sup, "s")
    assert stats.restarts == 3
    assert stats.last_ms == times[-1]
    assert stats.p50_ms == sorted(times)[1]
    assert stats.p99_ms == max(times)
    assert all(t > 0 for t in times)


class _BlockingHandler(logging.Handler):
    """Holds up whoever logs an unhandled exception until its gate opens."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Unhandled exception"):
            gate("crash-log").wait(GATE_TIMEOUT)


def test_a_restart_does_not_wait_for_the_crash_traceback_to_be_logged(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store, max_restarts=5, period=30)
    ref = sup.spawn(Recorder, persistence_id="logged")
    handler = _BlockingHandler()
    pykka_logger = logging.getLogger("pykka")
    pykka_logger.addHandler(handler)
    try:
        ref.tell(boom := _boom())
        # The crashed life is still inside pykka's logging of its traceback.
        _wait_restarts(sup, "logged", 1)
        assert ref.ask("get") == [f"{boom[0]}:{boom[1]}"]
        assert not gate("crash-log").is_set()
    finally:
        gate("crash-log").set()
        pykka_logger.removeHandler(handler)


class SlowRestore(Recorder):
    """A restored life waits in `on_start` until the test opens its gate."""

    def on_start(self) -> None:
        super().on_start()
        if self.state:
            gate(f"restore-{self.persistence_id}").wait(GATE_TIMEOUT)


@pytest.mark.usefixtures("_gc_disabled")
def test_a_restarted_childs_earlier_life_is_freed_once_the_next_is_ready(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store, max_restarts=5, period=30)
    ref = sup.spawn(SlowRestore, persistence_id="freed")
    ref.tell("kept")
    first = ref._life()._actor_weakref
    ref.tell(boom := _boom())
    wait_for(lambda: sup.stats()["freed"].restarts == 1, what="the restart begun")
    time.sleep(0.2)  # ample for the crashed thread to end
    assert first() is not None  # kept while the next life restores: freeing it would slow that
    gate("restore-freed").set()
    _wait_restarts(sup, "freed", 1)
    assert ref.ask("get") == ["kept", f"{boom[0]}:{boom[1]}"]  # the crashing message, handled on replay
    wait_for(lambda: first() is None, what="the crashed life freed")


def test_child_looks_up_the_stable_ref_by_persistence_id(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store)
    ref = sup.spawn(Recorder, persistence_id="k")
    assert sup.child("k") is ref
    assert sup.proxy().children().get(timeout=10) == ["k"]
    with pytest.raises(InvalidArgumentError):
        sup.child("nobody")
    with pytest.raises(InvalidArgumentError):
        sup.spawn(Recorder, persistence_id="k")
    with pytest.raises(InvalidArgumentError):
        sup.spawn(pykka.ThreadingActor, persistence_id="plain")  # type: ignore[arg-type]
    boom = _boom()
    ref.tell(boom)
    _wait_restarts(sup, "k", 1)
    assert sup.child("k") is ref
    assert sup.child("k").ask("get", timeout=10) == [f"boom:{boom[1]}"]


def test_stopping_a_child_ref_stops_it_for_good(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store)
    ref = sup.spawn(Recorder, persistence_id="bye")
    ref.tell("kept")
    assert ref.stop() is True
    wait_for(lambda: "bye" not in sup.stats(), what="the supervisor to forget the child")
    assert not ref.is_alive()
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("after")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("get", timeout=10)
    with pytest.raises(InvalidArgumentError):
        sup.child("bye")
    assert events("init", "bye") == [("init", "bye")]  # never restarted
    # A new spawn with the same id restores it.
    assert sup.spawn(Recorder, persistence_id="bye").ask("get", timeout=10) == ["kept"]


def test_stopping_the_supervisor_stops_its_children_last_started_first(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store)
    refs = [sup.spawn(Recorder, persistence_id=pid) for pid in ("a", "b", "c")]
    for ref in refs:
        ref.ask("get", timeout=10)
    assert sup.stop() is True
    assert events("stop") == [("stop", "c"), ("stop", "b"), ("stop", "a")]
    for ref in refs:
        assert not ref.is_alive()
        with pytest.raises(pykka.ActorDeadError):
            ref.tell("x")


def test_a_new_supervisor_on_the_same_store_gets_every_child_back(actor_store: SegmentStore) -> None:
    sup = Supervisor.start(store=actor_store)
    a = sup.spawn(EveryTwo, persistence_id="a")
    for m in (1, 2, 3):
        a.tell(m)
    a.ask("get", timeout=10)
    sup.stop()

    again = Supervisor.start(store=actor_store)
    assert again.spawn(EveryTwo, persistence_id="a").ask("get", timeout=10) == [1, 2, 3]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "one_for_some"},
        {"max_restarts": -1},
        {"period": 0},
        {"backoff_initial": -1},
        {"backoff_initial": 2, "backoff_max": 1},
    ],
)
def test_bad_supervisor_options_are_invalid_arguments(actor_store: SegmentStore, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        Supervisor.start(store=actor_store, **kwargs)
