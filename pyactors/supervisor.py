"""Supervision trees: restart crashed persistent actors from their segments.

A [`Supervisor`][pyactors.Supervisor] is an actor that spawns and owns children
(persistent actors, or other supervisors). When a child crashes it builds a new
instance, which restores the latest snapshot and replays the journal, following an
Erlang/OTP strategy:

* ``"one_for_one"``: restart the child that failed;
* ``"one_for_all"``: stop every other child, then restart them all, in start order;
* ``"rest_for_one"``: stop the children started after the failed one, then restart
  the failed one and those, in start order.

More than `max_restarts` restarts within `period` seconds and the supervisor stops
its children and fails with `RestartIntensityError`, which its own supervisor sees as
a crash of that child (escalation). Restarts can be delayed by exponential backoff.

`spawn()` returns a [`SupervisedRef`][pyactors.SupervisedRef]: a `pykka.ActorRef`
that stays valid across restarts. While the child is down, `tell` journals the
message for the next life (it never blocks and nothing is lost) and `ask` waits for
the restart.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar, cast

import pykka
from pykka import ActorDeadError, messages

from pyactors.actor import _encode, _StartArgs, _Supervised
from pyactors.errors import InvalidArgumentError, RestartIntensityError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from pyactors.actor import ExcInfo
    from pyactors.store import SegmentStore

__all__ = ["RestartStats", "Strategy", "SupervisedRef", "Supervisor", "SupervisorRef"]

logger = logging.getLogger("pyactors.supervisor")

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
"""Which children a supervisor restarts when one fails."""

_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")

S = TypeVar("S", bound=_Supervised)
"""The class of a child a supervisor spawns."""


A = TypeVar("A", bound=pykka.Actor)
"""The actor class of a ref."""


class SupervisedRef(pykka.ActorRef[A]):
    """A ref to a supervised child that stays valid across its restarts.

    Use it as any `pykka.ActorRef`: `tell`, `ask`, `proxy()`, `stop()`. Each call
    goes to the child's current life. While the child is being restarted, `tell`
    appends the message to the child's journal (the next life handles it, in order)
    and `ask` waits for the next life (bounded by its `timeout`). Once the child is
    stopped for good, or its supervisor gave up, calls raise `ActorDeadError` (or
    `RestartIntensityError`).
    """

    def __init__(self, persistence_id: str, actor_class: type[A], store: SegmentStore | None) -> None:
        """Create the ref; its supervisor attaches each life with `_attach`."""
        self._cond = threading.Condition()
        self._current: pykka.ActorRef[Any] | None = None
        self._dead: BaseException | None = None
        self._store = store
        self.persistence_id = persistence_id
        """The child's persistence id."""
        self.actor_class = actor_class
        self.actor_urn = f"urn:pyactors:{persistence_id}"

    # The attributes pykka's ActorRef, ActorProxy and the registry read, taken from the
    # current life.
    @property
    def actor_inbox(self) -> Any:  # type: ignore[override]
        """The current life's inbox."""
        return self._life().actor_inbox

    @property
    def actor_stopped(self) -> threading.Event:  # type: ignore[override]
        """The current life's stopped flag."""
        return self._life().actor_stopped

    @property
    def _actor_weakref(self) -> Callable[[], Any]:  # type: ignore[override]
        return self._life()._actor_weakref

    def _life(self) -> pykka.ActorRef[Any]:
        with self._cond:
            if self._current is None:
                msg = f"{self} has not started"
                raise ActorDeadError(msg)
            return self._current

    def _attach(self, life: pykka.ActorRef[Any]) -> None:
        self._current = life
        self._dead = None
        self._cond.notify_all()

    def _kill(self, error: BaseException) -> None:
        with self._cond:
            self._dead = error
            self._cond.notify_all()

    def __str__(self) -> str:
        """Show the class and persistence id."""
        return f"{self.actor_class.__name__} ({self.persistence_id})"

    def is_alive(self) -> bool:
        """True unless the child is stopped for good (restarting counts as alive)."""
        return self._dead is None and self._current is not None

    def tell(self, message: Any) -> None:
        """Send a message; while the child restarts it is journaled for the next life."""
        with self._cond:
            if self._dead is not None:
                raise self._dead
            life = self._current
            if life is not None and life.is_alive():
                try:
                    life.tell(message)
                except ActorDeadError:
                    pass  # died just now: journal it below
                else:
                    return
            record = None if self._store is None else _encode(message, asked=False, dumps=self._store.serializer.dumps)
            if record is None or self._store is None:
                msg = f"{self} is restarting"
                raise ActorDeadError(msg)
            # Appended under the lock that the supervisor holds while it starts the next
            # life, so the next life's journal boundary includes it.
            self._store.append(self.persistence_id, record[1], record[0])

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """Send a message and get the reply (or a future); waits while the child restarts."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._dead is not None:
                    raise self._dead
                life = self._current
                if life is not None and life.is_alive():
                    try:
                        future = life.ask(message, block=False)
                    except ActorDeadError:
                        pass
                    else:
                        break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    msg = f"{self} did not come back within {timeout} s"
                    raise pykka.Timeout(msg)
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))
        if block:
            return future.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        return future


class _Spec(NamedTuple):
    actor_class: type[_Supervised]
    persistence_id: str
    store: SegmentStore | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ref: SupervisedRef[Any]
    managed: bool = False


class _Child:
    """A child's spec and the state of its current life."""

    __slots__ = ("actor", "failed_at", "life", "recovery_ms", "restarts", "retired", "spec", "stopping")

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.life = 0
        self.actor: _Supervised | None = None
        self.retired: _Supervised | None = None
        """The life before `actor`, kept until `actor` is ready: freeing a large state
        takes time the restart should not wait for."""
        self.stopping = False
        self.failed_at: float | None = None
        self.restarts = 0
        self.recovery_ms: list[float] = []


class RestartStats(NamedTuple):
    """Restarts of one child and how long each took.

    Recovery time runs from the failure being detected to the new life being ready
    for its next message (state restored, journal replayed).

    Attributes:
        persistence_id: The child.
        restarts: How many times it was restarted.
        last_ms: Recovery time of the last restart (None: never restarted).
        p50_ms: Median recovery time.
        p99_ms: 99th percentile recovery time.
    """

    persistence_id: str
    restarts: int
    last_ms: float | None
    p50_ms: float | None
    p99_ms: float | None


class _ChildFailed(NamedTuple):
    pid: str
    life: int
    error: BaseException | None
    detected_at: float


class _ChildReady(NamedTuple):
    pid: str
    life: int
    ready_at: float


class _ChildStopped(NamedTuple):
    pid: str
    life: int


class _RestartDue(NamedTuple):
    pids: tuple[str, ...]


class _Hooks:
    """Tells the supervisor about one life of one child (runs in the child's thread)."""

    def __init__(self, supervisor: pykka.ActorRef[Any], pid: str, life: int) -> None:
        self._supervisor, self._pid, self._life = supervisor, pid, life
        self._born: _Supervised | None = None

    def born(self, actor: _Supervised) -> None:
        self._born = actor

    def take(self) -> _Supervised | None:
        """Hand over the life's instance (once).

        Its pykka ref holds it weakly, and a life that crashes at once may already be
        freed when `start()` returns; its supervisor still needs it (`_subtree_of`).
        """
        actor, self._born = self._born, None
        return actor

    def _send(self, message: Any) -> None:
        with contextlib.suppress(ActorDeadError):  # a dead supervisor has nobody to tell
            self._supervisor.tell(message)

    def child_ready(self) -> None:
        self._send(_ChildReady(self._pid, self._life, time.perf_counter()))

    def child_failed(self, exc_info: ExcInfo) -> None:
        self._send(_ChildFailed(self._pid, self._life, exc_info[1], time.perf_counter()))

    def child_stopped(self) -> None:
        self._send(_ChildStopped(self._pid, self._life))


class SupervisorRef(pykka.ActorRef["Supervisor"]):
    """The ref `Supervisor.start()` returns: a `pykka.ActorRef` with shortcuts."""

    def spawn(self, actor_class: type[S], *args: Any, persistence_id: str, **kwargs: Any) -> SupervisedRef[S]:
        """Start a child under this supervisor; see `Supervisor.spawn`."""
        call = messages.ProxyCall(("spawn",), (actor_class, *args), {"persistence_id": persistence_id, **kwargs})
        return cast("SupervisedRef[S]", self.ask(call))

    def stats(self) -> dict[str, RestartStats]:
        """Restart statistics per child; see `Supervisor.stats`."""
        return cast("dict[str, RestartStats]", self.ask(messages.ProxyCall(("stats",), (), {})))

    def child(self, persistence_id: str) -> SupervisedRef[Any]:
        """The ref of a child by persistence id; see `Supervisor.child`."""
        return cast("SupervisedRef[Any]", self.ask(messages.ProxyCall(("child",), (persistence_id,), {})))


class Supervisor(_Supervised):
    """An actor that spawns, owns and restarts children.

    Example:
        >>> import tempfile
        >>> from pyactors import PersistentActor, SegmentStore, Supervisor
        >>> class Echo(PersistentActor):
        ...     def on_receive(self, message):
        ...         return message
        >>> store = SegmentStore(tempfile.mkdtemp() + "/s")
        >>> sup = Supervisor.start(store=store, strategy="one_for_one", max_restarts=3, period=5)
        >>> echo = sup.spawn(Echo, persistence_id="echo-1")
        >>> echo.ask("hi")
        'hi'
        >>> sup.stop(); store.close()
        True

    Args:
        store: The default store of the children it spawns.
        strategy: `"one_for_one"`, `"one_for_all"` or `"rest_for_one"`.
        max_restarts: Restarts allowed within `period`; one more and it gives up.
        period: The intensity window, in seconds.
        backoff_initial: Delay before the first restart within the period, in
            seconds (0: restart at once); doubles with each further restart.
        backoff_max: The longest delay.
        name: A name for logs and errors (default: its persistence id, if it is a
            child, else "supervisor").
    """

    def __init__(
        self,
        store: SegmentStore | None = None,
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        period: float = 5.0,
        backoff_initial: float = 0.0,
        backoff_max: float = 5.0,
        name: str | None = None,
        _children: tuple[_Spec, ...] = (),
    ) -> None:
        if strategy not in _STRATEGIES:
            msg = f"strategy must be one of {', '.join(_STRATEGIES)}, not {strategy!r}"
            raise InvalidArgumentError(msg)
        if max_restarts < 0 or period <= 0 or backoff_initial < 0 or backoff_max < backoff_initial:
            msg = "need max_restarts >= 0, period > 0 and 0 <= backoff_initial <= backoff_max"
            raise InvalidArgumentError(msg)
        super().__init__()
        start = self._start_args
        self.name = name or (start.persistence_id if start and start.persistence_id else "supervisor")
        self.store = store or (start.store if start else None)
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.period = period
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._children: dict[str, _Child] = {}
        self._restarts: deque[float] = deque()
        self._adopt = _children
        self._actor_ref = SupervisorRef(self)

    @classmethod
    def start(
        cls,
        store: SegmentStore | None = None,
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        period: float = 5.0,
        backoff_initial: float = 0.0,
        backoff_max: float = 5.0,
        name: str | None = None,
    ) -> SupervisorRef:
        """Start a top-level supervisor; the arguments are the class's (see above)."""
        ref = super().start(
            store,
            strategy=strategy,
            max_restarts=max_restarts,
            period=period,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            name=name,
        )
        assert isinstance(ref, SupervisorRef)
        return ref

    def on_start(self) -> None:
        """Start the children of an earlier life (a restart by its own supervisor).

        All of them are kept even if one fails to start: that failure crashes this
        life, and the next one adopts them all again.
        """
        for spec in self._adopt:
            self._children[spec.persistence_id] = _Child(spec)
        for child in list(self._children.values()):
            self._start_life(child)

    def _actor_loop_setup(self) -> None:
        super()._actor_loop_setup()
        self._announce_ready()

    # -- the API (called through the ref or a proxy: it runs in this actor) ---------

    def spawn(
        self,
        actor_class: type[S],
        *args: Any,
        persistence_id: str,
        store: SegmentStore | None = None,
        _managed: bool = False,
        **kwargs: Any,
    ) -> SupervisedRef[S]:
        """Start a child and return its stable ref.

        Args:
            actor_class: A `PersistentActor` subclass, or `Supervisor` (a subtree).
            *args: Passed to its constructor.
            persistence_id: Its id (for a supervisor: its name).
            store: Its store (default: this supervisor's).
            _managed: Internal: its owner persists it (a workflow's stateful node).
            **kwargs: Passed to its constructor.

        Raises:
            InvalidArgumentError: The id is taken, or the class cannot be supervised.
        """
        if persistence_id in self._children:
            msg = f"{self.name}: a child {persistence_id!r} exists already"
            raise InvalidArgumentError(msg)
        if not (isinstance(actor_class, type) and issubclass(actor_class, _Supervised)):
            msg = f"{self.name}: can supervise PersistentActor subclasses and Supervisors, not {actor_class!r}"
            raise InvalidArgumentError(msg)
        store = store or self.store
        ref = SupervisedRef(persistence_id, actor_class, store)
        spec = _Spec(actor_class, persistence_id, store, args, kwargs, ref, _managed)
        self._add(spec)
        return ref

    def child(self, persistence_id: str) -> SupervisedRef[Any]:
        """The stable ref of a child (a lookup that works across restarts).

        Raises:
            InvalidArgumentError: No such child.
        """
        try:
            return self._children[persistence_id].spec.ref
        except KeyError:
            msg = f"{self.name}: no child {persistence_id!r}"
            raise InvalidArgumentError(msg) from None

    def children(self) -> list[str]:
        """The persistence ids of the children, in start order."""
        return list(self._children)

    def stats(self) -> dict[str, RestartStats]:
        """Restarts and recovery times per child."""
        out = {}
        for pid, c in self._children.items():
            times = c.recovery_ms
            out[pid] = RestartStats(
                persistence_id=pid,
                restarts=c.restarts,
                last_ms=times[-1] if times else None,
                p50_ms=_percentile(times, 50) if times else None,
                p99_ms=_percentile(times, 99) if times else None,
            )
        return out

    # -- supervision ----------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Handle the children's reports (internal messages)."""
        if isinstance(message, _ChildFailed):
            self._on_failed(message)
        elif isinstance(message, _ChildReady):
            self._on_ready(message)
        elif isinstance(message, _ChildStopped):
            self._on_stopped(message)
        elif isinstance(message, _RestartDue):
            for pid in message.pids:
                if pid in self._children:
                    self._start_life(self._children[pid])
        else:
            return super().on_receive(message)
        return None

    def _on_ready(self, report: _ChildReady) -> None:
        child = self._children.get(report.pid)
        if child is None or child.life != report.life:
            return
        if child.failed_at is not None:
            child.recovery_ms.append((report.ready_at - child.failed_at) * 1000)
            child.failed_at = None
            logger.info("%s: %s restarted in %.2f ms", self.name, report.pid, child.recovery_ms[-1])
        child.retired = None  # the earlier life is freed here, after the restart

    def _on_stopped(self, report: _ChildStopped) -> None:
        child = self._children.get(report.pid)
        if child is not None and child.life == report.life and not child.stopping:
            # Stopped by someone else (ref.stop()): it is done, not to be restarted.
            del self._children[report.pid]
            child.spec.ref._kill(ActorDeadError(f"{child.spec.ref} was stopped"))

    def _on_failed(self, report: _ChildFailed) -> None:
        child = self._children.get(report.pid)
        if child is None or child.life != report.life or child.stopping:
            return  # a report about an earlier life, or a stop we asked for
        logger.warning("%s: child %s failed: %r", self.name, report.pid, report.error)
        restarts = self._count_restart()
        group = self._restart_group(report.pid)
        for pid in reversed(group):
            if pid != report.pid:
                self._stop_child(self._children[pid])
        for pid in group:
            self._children[pid].failed_at = report.detected_at if pid == report.pid else time.perf_counter()
        delay = min(self.backoff_initial * 2 ** (restarts - 1), self.backoff_max) if self.backoff_initial else 0.0
        if delay > 0:
            timer = threading.Timer(delay, self._tell_self, args=(_RestartDue(tuple(group)),))
            timer.daemon = True
            timer.start()
        else:
            for pid in group:
                self._start_life(self._children[pid])

    def _count_restart(self) -> int:
        """Count a restart in the intensity window; give up when it is over the limit."""
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > self.period:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            self._give_up()
        self._restarts.append(now)
        return len(self._restarts)

    def _restart_group(self, failed: str) -> list[str]:
        """The children the strategy restarts when `failed` fails, in start order."""
        order = list(self._children)
        if self.strategy == "one_for_all":
            return order
        if self.strategy == "rest_for_one":
            return order[order.index(failed) :]
        return [failed]

    def _tell_self(self, message: Any) -> None:
        with contextlib.suppress(ActorDeadError):
            self.actor_ref.tell(message)

    def _give_up(self) -> None:
        error = RestartIntensityError(self.name, self.max_restarts, self.period)
        logger.error("%s", error)
        for child in self._stop_children():
            child.spec.ref._kill(error)
        raise error

    def _add(self, spec: _Spec) -> None:
        child = _Child(spec)
        self._children[spec.persistence_id] = child
        try:
            self._start_life(child)
        except BaseException:
            del self._children[spec.persistence_id]
            raise

    def _start_life(self, child: _Child) -> None:
        spec = child.spec
        child.life += 1
        child.stopping = False
        if child.failed_at is not None:
            child.restarts += 1
        hooks = _Hooks(self.actor_ref, spec.persistence_id, child.life)
        kwargs = dict(spec.kwargs)
        if issubclass(spec.actor_class, Supervisor):
            kwargs["_children"] = tuple(c.spec for c in _subtree_of(child))
        with spec.ref._cond:
            life = spec.actor_class._start_with(
                _StartArgs(spec.persistence_id, spec.store, hooks, managed=spec.managed), spec.args, kwargs
            )
            spec.ref._attach(life)
            child.retired, child.actor = child.actor, hooks.take()

    def _stop_child(self, child: _Child) -> None:
        actor = child.actor
        child.stopping = True
        if actor is not None and not actor.actor_stopped.is_set():
            try:
                actor.actor_ref.stop(block=True, timeout=10)
            except (ActorDeadError, pykka.Timeout):
                logger.warning("%s: child %s did not stop cleanly", self.name, child.spec.persistence_id)

    def _stop_children(self) -> list[_Child]:
        """Stop every child, last started first; return them in that order."""
        children = list(reversed(self._children.values()))
        for child in children:
            self._stop_child(child)
        return children

    def on_stop(self) -> None:
        """Stop the children, last started first."""
        for child in self._stop_children():
            child.spec.ref._kill(ActorDeadError(f"{child.spec.ref}: its supervisor stopped"))

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The children are stopped (they restart with its next life) before its own
        # supervisor hears of the failure: the next life can only start them again
        # once this one's are gone.
        self._stop_children()
        super()._handle_failure(exception_type, exception_value, traceback)


def _subtree_of(child: _Child) -> list[_Child]:
    """The children a supervisor child had, to be adopted by its next life."""
    actor = child.actor
    if isinstance(actor, Supervisor):
        return list(actor._children.values())
    return []


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]
