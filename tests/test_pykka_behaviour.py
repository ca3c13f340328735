"""The same pykka behaviour checks against a plain `pykka.ThreadingActor` and a `PersistentActor`.

Like pykka's own suite (a `runtime` fixture over its RUNTIMES), every test here runs
once per actor base; the actor classes are built from mixins on top of that base.
A `PersistentActor` that keeps pykka's behaviour passes every test the plain actor
passes.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka
import pytest
from _util import wait_for

from pyactors import PersistentActor

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pyactors import SegmentStore

pytestmark = pytest.mark.usefixtures("_stop_all")


@dataclass(frozen=True)
class Runtime:
    """One actor base and how to start actors on it."""

    name: str
    base: type[pykka.ThreadingActor]
    store: SegmentStore | None

    def actor_class(self, mixin: type, name: str | None = None) -> type[Any]:
        """The class `mixin` + this runtime's base."""
        return type(name or mixin.__name__, (mixin, self.base), {})

    def start(self, cls: type[Any], *args: Any, **kwargs: Any) -> pykka.ActorRef[Any]:
        """Start `cls` (with a fresh persistence id and the store, for persistent actors)."""
        if self.store is not None:
            kwargs = {"persistence_id": f"{cls.__name__}-{uuid.uuid4().hex[:8]}", "store": self.store, **kwargs}
        return cls.start(*args, **kwargs)


RUNTIMES = {"ThreadingActor": pykka.ThreadingActor, "PersistentActor": PersistentActor}


@pytest.fixture(params=list(RUNTIMES))
def runtime(request: pytest.FixtureRequest, actor_store: SegmentStore) -> Iterator[Runtime]:
    base = RUNTIMES[request.param]
    yield Runtime(request.param, base, actor_store if base is PersistentActor else None)


# -- mixins (combined with the runtime's base) ------------------------------------------


class EchoMixin:
    def on_receive(self, message: Any) -> Any:
        if isinstance(message, dict) and "raise" in message:
            raise message["raise"]
        return message


class Inner:
    """A traversable attribute."""

    pykka_traversable = True

    def __init__(self) -> None:
        self.value = "inner"
        self.calls: list[Any] = []

    def record(self, item: Any) -> int:
        self.calls.append(item)
        return len(self.calls)


class ProxyMixin:
    greeting = "hello"

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0
        self.inner = Inner()

    def increment(self, by: int = 1) -> int:
        self.counter += by
        return self.counter

    def thread_name(self) -> str:
        return threading.current_thread().name

    def fail(self) -> None:
        msg = "method failed"
        raise LookupError(msg)


class HooksMixin:
    """Records its life cycle in the list handed to its constructor."""

    def __init__(self, log: list[tuple[str, Any]], fail_in: str | None = None) -> None:
        super().__init__()
        self.log = log
        self.fail_in = fail_in
        self.log.append(("init", threading.current_thread().name))

    def on_start(self) -> None:
        self.log.append(("on_start", threading.current_thread().name))
        if self.fail_in == "on_start":
            msg = "on_start failed"
            raise RuntimeError(msg)

    def on_stop(self) -> None:
        self.log.append(("on_stop", threading.current_thread().name))

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.log.append(("on_failure", (exception_type, str(exception_value), traceback is not None)))

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            msg = "on_receive failed"
            raise RuntimeError(msg)
        if message == "exit":
            raise SystemExit(3)
        if message == "thread":
            return threading.current_thread().name
        self.log.append(("on_receive", message))
        return message


# -- start, stop, tell, ask --------------------------------------------------------------


def test_start_returns_a_live_ref_and_stop_kills_it(runtime: Runtime) -> None:
    ref = runtime.start(runtime.actor_class(EchoMixin))
    assert isinstance(ref, pykka.ActorRef)
    assert ref.is_alive()
    assert ref.stop() is True
    assert not ref.is_alive()
    assert ref.stop() is False  # already dead


def test_stop_without_blocking_returns_a_future_of_true(runtime: Runtime) -> None:
    ref = runtime.start(runtime.actor_class(EchoMixin))
    assert ref.stop(block=False).get(timeout=10) is True
    assert ref.actor_stopped.wait(10)


def test_ask_returns_the_reply_and_tells_before_it_are_handled_first(runtime: Runtime) -> None:
    log: list[tuple[str, Any]] = []
    ref = runtime.start(runtime.actor_class(HooksMixin), log)
    for i in range(5):
        ref.tell(i)
    assert ref.ask("last") == "last"
    assert [m for e, m in log if e == "on_receive"] == [0, 1, 2, 3, 4, "last"]


def test_ask_without_blocking_returns_a_future(runtime: Runtime) -> None:
    ref = runtime.start(runtime.actor_class(EchoMixin))
    futures = [ref.ask(i, block=False) for i in range(10)]
    assert all(isinstance(f, pykka.Future) for f in futures)
    assert pykka.get_all(futures, timeout=10) == list(range(10))


def test_ask_with_a_timeout_raises_pykka_timeout_when_the_actor_is_busy(runtime: Runtime) -> None:
    release = threading.Event()

    class BlockingMixin:
        def on_receive(self, message: Any) -> Any:
            if message == "block":
                release.wait(10)
            return message

    ref = runtime.start(runtime.actor_class(BlockingMixin))
    ref.tell("block")
    try:
        with pytest.raises(pykka.Timeout):
            ref.ask("late", timeout=0.05)
    finally:
        release.set()
    assert ref.ask("after", timeout=10) == "after"


def test_an_exception_in_ask_goes_to_the_caller_and_the_actor_survives(runtime: Runtime) -> None:
    ref = runtime.start(runtime.actor_class(EchoMixin))
    with pytest.raises(KeyError, match="missing"):
        ref.ask({"raise": KeyError("missing")})
    future = ref.ask({"raise": ValueError("later")}, block=False)
    with pytest.raises(ValueError, match="later"):
        future.get(timeout=10)
    assert ref.is_alive()
    assert ref.ask("still alive") == "still alive"


def test_messages_after_stop_raise_actor_dead_error(runtime: Runtime) -> None:
    ref = runtime.start(runtime.actor_class(EchoMixin))
    ref.stop()
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("x")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("x")
    with pytest.raises(pykka.ActorDeadError):
        ref.proxy()


def test_messages_queued_before_stop_are_handled_and_after_it_fail(runtime: Runtime) -> None:
    release = threading.Event()

    class SlowMixin:
        def on_receive(self, message: Any) -> Any:
            if message == "block":
                release.wait(10)
            return message

    ref = runtime.start(runtime.actor_class(SlowMixin))
    ref.tell("block")
    before = ref.ask("before", block=False)
    stopped = ref.stop(block=False)
    after = ref.ask("after", block=False)
    release.set()
    assert before.get(timeout=10) == "before"
    assert stopped.get(timeout=10) is True
    with pytest.raises(pykka.ActorDeadError):
        after.get(timeout=10)


# -- hooks ---------------------------------------------------------------------------------


def test_on_start_runs_in_the_actor_thread_before_messages_and_on_stop_at_stop(runtime: Runtime) -> None:
    log: list[tuple[str, Any]] = []
    ref = runtime.start(runtime.actor_class(HooksMixin), log)
    ref.ask("hi")
    ref.stop()
    me = threading.current_thread().name
    assert [e for e, _ in log] == ["init", "on_start", "on_receive", "on_stop"]
    assert log[0][1] == me  # __init__ runs in the caller's thread
    assert log[1][1] != me
    assert log[1][1] == log[3][1]  # on_start and on_stop in the actor's own thread


def test_an_exception_in_a_told_message_calls_on_failure_not_on_stop_and_kills_the_actor(runtime: Runtime) -> None:
    log: list[tuple[str, Any]] = []
    ref = runtime.start(runtime.actor_class(HooksMixin), log)
    ref.tell("crash")
    wait_for(lambda: any(e == "on_failure" for e, _ in log), what="on_failure")
    assert ref.actor_stopped.wait(10)
    assert not ref.is_alive()
    (failure,) = [info for e, info in log if e == "on_failure"]
    assert failure == (RuntimeError, "on_receive failed", True)
    assert "on_stop" not in [e for e, _ in log]
    assert ref not in pykka.ActorRegistry.get_all()


def test_an_exception_in_on_start_stops_the_actor_without_on_failure(runtime: Runtime) -> None:
    log: list[tuple[str, Any]] = []
    ref = runtime.start(runtime.actor_class(HooksMixin), log, fail_in="on_start")
    assert ref.actor_stopped.wait(10)
    assert not ref.is_alive()
    assert [e for e, _ in log] == ["init", "on_start"]
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("x")


def test_a_base_exception_in_an_actor_stops_every_actor(runtime: Runtime) -> None:
    log: list[tuple[str, Any]] = []
    hooks = runtime.actor_class(HooksMixin)
    bystander = runtime.start(runtime.actor_class(EchoMixin))
    ref = runtime.start(hooks, log)
    ref.tell("exit")
    wait_for(lambda: not ref.is_alive() and not bystander.is_alive(), what="every actor to stop")
    assert ("on_stop", log[1][1]) in log
    assert pykka.ActorRegistry.get_all() == []


# -- proxies ---------------------------------------------------------------------------------


def test_proxy_method_calls_run_in_the_actor_and_return_futures(runtime: Runtime) -> None:
    ref = runtime.start(runtime.actor_class(ProxyMixin))
    proxy = ref.proxy()
    future = proxy.increment()
    assert isinstance(future, pykka.Future)
    assert future.get(timeout=10) == 1
    assert proxy.increment(by=5).get(timeout=10) == 6
    proxy.increment.defer(10)
    assert proxy.counter.get(timeout=10) == 16
    assert proxy.thread_name().get(timeout=10) != threading.current_thread().name
    with pytest.raises(LookupError, match="method failed"):
        proxy.fail().get(timeout=10)
    assert ref.is_alive()


def test_proxy_attribute_read_and_write(runtime: Runtime) -> None:
    proxy = runtime.start(runtime.actor_class(ProxyMixin)).proxy()
    assert proxy.greeting.get(timeout=10) == "hello"
    proxy.greeting = "bonjour"
    assert proxy.greeting.get(timeout=10) == "bonjour"
    proxy.counter = 41
    assert proxy.increment().get(timeout=10) == 42
    with pytest.raises(AttributeError):
        _ = proxy.no_such_attribute


def test_proxy_traverses_traversable_attributes(runtime: Runtime) -> None:
    proxy = runtime.start(runtime.actor_class(ProxyMixin)).proxy()
    assert proxy.inner.value.get(timeout=10) == "inner"
    assert proxy.inner.record("a").get(timeout=10) == 1
    proxy.inner.record.defer("b")
    proxy.inner.value = "changed"
    assert proxy.inner.value.get(timeout=10) == "changed"
    assert proxy.inner.calls.get(timeout=10) == ["a", "b"]


def test_proxies_of_the_same_actor_are_equal(runtime: Runtime) -> None:
    ref = runtime.start(runtime.actor_class(ProxyMixin))
    assert ref.proxy() == ref.proxy()
    assert ref.proxy().actor_ref is ref


# -- registry ----------------------------------------------------------------------------------


def test_registry_finds_actors_by_class_and_urn(runtime: Runtime) -> None:
    echo = runtime.actor_class(EchoMixin, "Echo")
    other = runtime.actor_class(ProxyMixin, "Other")
    refs = [runtime.start(echo) for _ in range(3)]
    lone = runtime.start(other)
    assert set(pykka.ActorRegistry.get_by_class(echo)) == set(refs)
    assert pykka.ActorRegistry.get_by_class(other) == [lone]
    assert set(pykka.ActorRegistry.get_by_class(runtime.base)) == {*refs, lone}
    assert set(pykka.ActorRegistry.get_by_class_name("Echo")) == set(refs)
    assert pykka.ActorRegistry.get_by_urn(refs[1].actor_urn) is refs[1]
    assert len({r.actor_urn for r in refs}) == 3
    refs[1].stop()
    assert pykka.ActorRegistry.get_by_urn(refs[1].actor_urn) is None
    assert set(pykka.ActorRegistry.get_by_class(echo)) == {refs[0], refs[2]}


def test_stop_all_stops_every_actor_last_started_first(runtime: Runtime) -> None:
    log: list[tuple[str, Any]] = []
    refs = [runtime.start(runtime.actor_class(HooksMixin), log) for _ in range(3)]
    threads = [ref.ask("thread") for ref in refs]
    assert pykka.ActorRegistry.stop_all() == [True, True, True]
    assert all(not r.is_alive() for r in refs)
    assert [name for e, name in log if e == "on_stop"] == list(reversed(threads))
    assert pykka.ActorRegistry.get_all() == []


def test_is_alive_follows_the_life_cycle(runtime: Runtime) -> None:
    ref = runtime.start(runtime.actor_class(EchoMixin))
    assert ref.is_alive()
    ref.ask("ping")
    assert ref.is_alive()
    ref.stop()
    assert not ref.is_alive()


def test_actor_refs_compare_and_print_like_pykka(runtime: Runtime) -> None:
    cls = runtime.actor_class(EchoMixin, "Printable")
    ref = runtime.start(cls)
    assert ref.actor_class is cls
    assert "Printable" in str(ref)
    assert ref.actor_urn in repr(ref)
