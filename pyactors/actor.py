"""Persistent actors: pykka actors whose state and mailbox survive crashes.

A [`PersistentActor`][pyactors.PersistentActor] is a `pykka.ThreadingActor`: refs,
proxies, `tell`, `ask` and the `ActorRegistry` work as in pykka. In addition:

* every message it accepts (`tell`, `ask`, a proxy method call or attribute set) is
  appended to its stream in a [`SegmentStore`][pyactors.SegmentStore] *before* it is
  queued (the durable inbox below);
* its state (`self.state`, or what `snapshot()` returns) is written as a snapshot by
  policy (every N messages, every T seconds, on stop, on demand), each snapshot
  recording the *watermark*: the sequence number of the last message it covers;
* starting an actor whose stream exists restores it: the latest snapshot, then every
  journaled message after its watermark, in order, before any new message.

Delivery is at-least-once: a message whose effect was not yet covered by a snapshot
when the actor crashed is delivered again. With ``snapshot_every=1`` (a snapshot after
every message) each message's effect on the state is exactly once.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import inspect
import logging
import queue
import struct
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, Self

import pykka
from pykka import ActorDeadError, messages

from pyactors.errors import (
    ActorCrashedError,
    InvalidArgumentError,
    JournalRecordError,
    SerializationError,
    StoreIOError,
)
from pyactors.store import Kind, SegmentStore, stream_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import FrameType, TracebackType

    from pykka._actor import ActorInbox
    from pykka._envelope import Envelope

__all__ = ["PersistentActor", "RecoveredActor", "recover"]

logger = logging.getLogger("pyactors.actor")

ExcInfo = tuple[type[BaseException] | None, BaseException | None, "TracebackType | None"]


class _Hooks(Protocol):
    """What a supervisor wants to hear from a child (see `pyactors.supervisor`)."""

    def born(self, actor: _Supervised) -> None:
        """The life's instance exists (in the starter's thread, before its own runs)."""

    def child_ready(self) -> None:
        """The child restored its state, replayed its journal and awaits messages."""

    def child_failed(self, exc_info: ExcInfo) -> None:
        """The child crashed."""

    def child_stopped(self) -> None:
        """The child stopped normally."""


class _StartArgs(NamedTuple):
    persistence_id: str | None
    store: SegmentStore | None
    hooks: _Hooks | None = None
    managed: bool = False
    """Persisted by its owner (a workflow checkpoints a stateful node's state itself):
    no store, no journal, no snapshots of its own."""


_START: contextvars.ContextVar[_StartArgs | None] = contextvars.ContextVar("pyactors_start", default=None)

# Journal encoding. A message given to tell is a `Kind.TOLD` record holding the message
# alone (the common case: nothing to wrap on tell, one `loads` on replay). Every other
# journaled message is a `Kind.MESSAGE` record holding a plain list, so that the safe
# (msgpack) serializer can store it:
#   [0, asked, message]                    a message given to ask (asked=True); before
#                                          `Kind.TOLD` existed, also a told one
#   [1, asked, attr_path, args, kwargs]    a proxy method call (pykka ProxyCall)
#   [2, asked, attr_path, value]           a proxy attribute set (pykka ProxySetAttr)
# Not journaled: pykka's stop message, and proxy attribute reads (they change nothing).
# `asked` matters on replay: the exception of an asked message went to its caller, so
# it is logged there, not treated as a crash (pykka's rule for asks).
_PLAIN, _CALL, _SET = 0, 1, 2
_SHAPES = {_PLAIN: 3, _CALL: 5, _SET: 4}  # the number of fields of an entry of each tag
_MESSAGE, _TOLD = int(Kind.MESSAGE), int(Kind.TOLD)
_JOURNAL_KINDS = [_MESSAGE, _TOLD]


_PYKKA_MESSAGES = (messages.ProxyCall, messages.ProxySetAttr, messages.ProxyGetAttr, messages._ActorStop)


def _encode(message: Any, *, asked: bool, dumps: Callable[[Any], bytes]) -> tuple[int, bytes] | None:
    """Return the journal record ``(kind, payload)`` of a message (None: not journaled).

    Raises:
        SerializationError: `dumps` cannot serialize the message.
    """
    if not isinstance(message, _PYKKA_MESSAGES):  # one check for the common case
        return (_MESSAGE, dumps([_PLAIN, True, message])) if asked else (_TOLD, dumps(message))
    if isinstance(message, messages.ProxyCall):
        return _MESSAGE, dumps([_CALL, asked, list(message.attr_path), list(message.args), message.kwargs])
    if isinstance(message, messages.ProxySetAttr):
        return _MESSAGE, dumps([_SET, asked, list(message.attr_path), message.value])
    return None


class _Malformed(NamedTuple):
    """A journal entry that is not one this module writes (see `_decode`)."""

    reason: str


def _decode(obj: Any) -> tuple[Any, bool, bool]:
    """Return a tagged journal entry's message, whether it was asked, and whether it is plain.

    A plain message goes straight to `on_receive` on replay: it is never one of
    pykka's own messages, which are journaled as proxy calls and sets or not at all.
    An entry of the wrong shape (a store written by something else, or by hand) comes
    back as a `_Malformed` message, which replay refuses instead of running.
    """
    shaped = isinstance(obj, list | tuple) and len(obj) >= 3  # noqa: PLR2004
    if not shaped or type(obj[0]) is not int or obj[0] not in _SHAPES or type(obj[1]) not in (bool, int):
        return _Malformed("not a tagged journal entry [tag, asked, ...]"), False, False
    tag, asked = obj[0], bool(obj[1])
    if len(obj) != _SHAPES[tag]:
        return _Malformed(f"a tag-{tag} entry has {_SHAPES[tag]} fields, this one {len(obj)}"), asked, False
    if tag == _PLAIN:
        return obj[2], asked, True
    return _proxy_message(tag, obj), asked, False


def _proxy_message(tag: int, obj: list[Any] | tuple[Any, ...]) -> Any:
    """Return the pykka message of a tagged proxy call or set (a `_Malformed` if it is not one)."""
    path = obj[2]
    if not isinstance(path, list | tuple) or not path or not all(isinstance(name, str) for name in path):
        return _Malformed("its attribute path is not a list of names")
    if tag == _SET:
        return messages.ProxySetAttr(attr_path=tuple(path), value=obj[3])
    args, kwargs = obj[3], obj[4]
    named = isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs)
    if not isinstance(args, list | tuple) or not named:
        return _Malformed("its arguments are not a list and a dict of names")
    return messages.ProxyCall(attr_path=tuple(path), args=tuple(args), kwargs=dict(kwargs))


def _refusal(actor: object, message: messages.ProxyCall | messages.ProxySetAttr) -> str | None:
    """Why the actor's proxy could not have sent this call or set (None: it could).

    pykka's rules for what a proxy exposes: no name that starts with ``_`` (private
    and dunder names) nor ``actor_ref``; an attribute is gone *through* only if it is
    marked traversable (`pykka.traversable`); only a callable is called.
    """
    path = message.attr_path
    for name in path:
        if name.startswith("_") or name == "actor_ref":
            return f"{name!r} is not exposed by the proxy"
    target = actor
    for depth, name in enumerate(path[:-1], 1):
        target = getattr(target, name, None)
        if not any(getattr(target, marker, False) is True for marker in ("_pykka_traversable", "pykka_traversable")):
            return f"{'.'.join(path[:depth])!r} is not traversable"
    if isinstance(message, messages.ProxyCall) and not callable(getattr(target, path[-1], None)):
        return f"{'.'.join(path)!r} is not a method"
    return None


def _backlog(
    records: Iterable[tuple[int, int, bytes]], boundary: int, loads: Callable[[bytes], Any]
) -> list[tuple[int, Any, bool, bool]]:
    """Decode journal records ``(seq, kind, payload)`` up to seq `boundary`.

    Returns:
        ``(seq, message, asked, plain)`` for each, in order (see `_decode`).
    """
    out = []
    for seq, kind, payload in records:
        if seq > boundary:
            break
        obj = loads(payload)
        out.append((seq, obj, False, True) if kind == _TOLD else (seq, *_decode(obj)))
    return out


# Snapshot payload: { watermark u64 little endian | the state, serialized }.
_WATERMARK = struct.Struct("<Q")


def _snapshot_watermark(payload: bytes) -> int:
    """Return a snapshot payload's watermark.

    Raises:
        SerializationError: The payload is too short to hold one.
    """
    if len(payload) < _WATERMARK.size:
        msg = f"a snapshot of {len(payload)} bytes holds no {_WATERMARK.size}-byte watermark"
        raise SerializationError(msg)
    watermark: int = _WATERMARK.unpack_from(payload)[0]
    return watermark


class _DurableInbox:
    """A pykka inbox that journals each message before queueing it.

    `put` runs in the caller's thread: a message the serializer refuses raises
    `SerializationError` there and nothing is queued. Journaling and queueing happen
    under one lock, so the queue order is the journal order. The queue holds
    ``(envelope, seq)``: seq is the message's number in the journal (None: not
    journaled).
    """

    def __init__(self, store: SegmentStore | None, persistence_id: str) -> None:
        self._store = store
        self._pid = persistence_id
        self._queue: queue.SimpleQueue[tuple[Envelope[Any], int | None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self.boundary = 0 if store is None else store.last_seq(persistence_id)
        """Messages up to this sequence number were accepted by an earlier life."""
        self.current: tuple[Envelope[Any], int | None] | None = None
        """The envelope being handled by the actor, and its seq."""

    def put(self, envelope: Envelope[Any], /) -> None:
        store = self._store
        record = None
        if store is not None:
            record = _encode(envelope.message, asked=envelope.reply_to is not None, dumps=store.serializer.dumps)
        if store is None or record is None:
            self._queue.put((envelope, None))
            return
        with self._lock:
            if self._closed:
                msg = f"persistent actor {self._pid!r} is stopped"
                raise ActorDeadError(msg)
            self._queue.put((envelope, store.append(self._pid, record[1], record[0])))

    def get(self) -> Envelope[Any]:
        item = self._queue.get()
        self.current = item
        return item[0]

    def empty(self) -> bool:
        return self._queue.empty()

    def close(self) -> None:
        """Refuse further messages (they would never be handled by this life)."""
        with self._lock:
            self._closed = True


_START_KEYWORDS = ("persistence_id", "store")


def _unexpected(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The message for arguments that no constructor of actor class `name` took."""
    if kwargs:
        key = next(iter(kwargs))
        hint = difflib.get_close_matches(key, _START_KEYWORDS, n=1)
        also = f" (did you mean {hint[0]}=?)" if hint else ""
        return f"{name}() got an unexpected keyword argument {key!r}{also}"
    return f"{name}() takes no positional arguments, got {len(args)} (define __init__ to take them)"


class _Supervised(pykka.ThreadingActor):
    """What every actor a `Supervisor` can own shares: telling it about its life.

    A supervisor starts its children through `_start_with`, handing them hooks; an
    actor started otherwise has none and behaves exactly as in pykka.
    """

    _hooks: _Hooks | None = None
    _crash: ExcInfo | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Pick up what the starter (a supervisor, or `start()`) handed over.

        Raises:
            TypeError: Arguments reached it that no constructor took (pykka's own
                `Actor.__init__` would swallow them: a misspelt keyword must not).
        """
        if args or kwargs:
            raise TypeError(_unexpected(type(self).__name__, args, kwargs))
        self._start_args = _START.get()
        self._hooks = self._start_args.hooks if self._start_args else None
        if self._hooks is not None:
            self._hooks.born(self)
        super().__init__()

    @classmethod
    def _start_with(cls, start: _StartArgs, args: tuple[Any, ...], kwargs: dict[str, Any]) -> pykka.ActorRef[Self]:
        token = _START.set(start)
        try:
            return super().start(*args, **kwargs)
        except AttributeError as exc:
            if exc.name != "_actor_ref":
                raise
            msg = f"{cls.__name__}.__init__ must call super().__init__() (as every pykka actor's does)"
            raise TypeError(msg) from None
        finally:
            _START.reset(token)

    def _actor_loop(self) -> None:
        super()._actor_loop()
        crash = self._crash
        # A crash's frames link to this frame, which then outlives the call: it must not
        # keep the actor (nor the crash) once it returns.
        del self
        if crash is not None:
            _clear_frames(crash, sys._getframe())
        del crash

    def _announce_ready(self) -> None:
        if self._hooks is not None and not self.actor_stopped.is_set():
            self._hooks.child_ready()

    def _stop(self) -> None:
        super()._stop()
        if self._hooks is not None:
            self._hooks.child_stopped()

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        first = self._crash is None
        self._crash = (exception_type, exception_value, traceback)
        if first and self._hooks is not None:
            # Told before pykka logs the traceback, which takes 0.2 ms or more to format
            # and write: the supervisor starts the next life meanwhile.
            self._hooks.child_failed(self._crash)
        super()._handle_failure(exception_type, exception_value, traceback)


_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _clear_frames(exc_info: ExcInfo, here: FrameType) -> None:
    """Clear the locals of the finished frames a crash's tracebacks hold.

    Those frames, and the callers each links to up to `here`, hold the actor (and
    through it its state) in a reference cycle with its `_crash`. Clearing them lets a
    crashed life be freed by reference counting, not at the next full garbage
    collection. The tracebacks still print: file, line and function stay.
    """
    tracebacks, exc, seen = [exc_info[2]], exc_info[1], set()
    while exc is not None and id(exc) not in seen:  # chained exceptions hold frames too
        seen.add(id(exc))
        tracebacks.append(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__
    for first in tracebacks:
        frames: list[FrameType] = []
        caller = None if first is None else first.tb_frame.f_back
        while caller is not None and caller is not here:
            frames.append(caller)
            caller = caller.f_back
        tb = first
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        for frame in frames:
            if frame.f_code.co_flags & _SUSPENDABLE:
                continue  # clearing a suspended generator's frame would close it
            with contextlib.suppress(RuntimeError):  # still running: not ours to clear
                frame.clear()


_LIVE_LOCK = threading.Lock()
_LIVE: dict[tuple[int, str], PersistentActor] = {}
"""Running persistent actors by (store, persistence id): one life at a time."""


class PersistentActor(_Supervised):
    """A pykka `ThreadingActor` whose state and mailbox are persisted.

    Give it a `persistence_id` and a `store` when starting it (or as class
    attributes), keep its durable state in `self.state` (or override
    [`snapshot()`][pyactors.PersistentActor.snapshot] and
    [`restore()`][pyactors.PersistentActor.restore]), and choose a snapshot policy:

    Example:
        >>> import tempfile
        >>> from pyactors import PersistentActor, SegmentStore
        >>> class Counter(PersistentActor):
        ...     snapshot_every = 1
        ...     def on_start(self):
        ...         self.state = self.state or {"count": 0}
        ...     def on_receive(self, message):
        ...         self.state["count"] += message
        ...         return self.state["count"]
        >>> store = SegmentStore(tempfile.mkdtemp() + "/s")
        >>> ref = Counter.start(persistence_id="counter-1", store=store)
        >>> ref.ask(5)
        5
        >>> ref.stop()
        True
        >>> Counter.start(persistence_id="counter-1", store=store).ask(1)  # restored
        6
        >>> pykka.ActorRegistry.stop_all(); store.close()
        [True]

    Only one life of a persistence id runs at a time in a process; starting a second
    one while the first runs raises `InvalidArgumentError`.
    """

    persistence_id: str
    """The stable id of the actor: the name of its stream in the store."""

    store: SegmentStore
    """The store its snapshots and journal are written to."""

    state: Any = None
    """The durable state (what the default `snapshot()` saves and `restore()` sets)."""

    snapshot_every: ClassVar[int | None] = 1000
    """Take a snapshot after this many journaled messages (None: never by count).

    Bounds how much of the journal a restart replays. 1 makes each message's effect
    on the state exactly once, at the cost of a snapshot per message."""

    snapshot_interval: ClassVar[float | None] = None
    """Take a snapshot after a message when this many seconds passed since the last."""

    snapshot_on_stop: ClassVar[bool] = True
    """Take a snapshot when the actor stops normally (not when it crashes)."""

    @classmethod
    def start(
        cls,
        *args: Any,
        persistence_id: str | None = None,
        store: SegmentStore | None = None,
        **kwargs: Any,
    ) -> pykka.ActorRef[Self]:
        """Start the actor, restoring it if its stream exists.

        Args:
            *args: Passed to the constructor.
            persistence_id: The actor's stable id (default: the class attribute).
            store: The store (default: the class attribute).
            **kwargs: Passed to the constructor.

        Returns:
            The actor's `pykka.ActorRef`.

        Raises:
            InvalidArgumentError: No persistence id or store, or this id already runs.
        """
        return cls._start_with(_StartArgs(persistence_id, store), args, kwargs)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Set up the durable inbox; subclasses call ``super().__init__()`` as in pykka.

        Raises:
            TypeError: Arguments reached it that no constructor took (a misspelt keyword).
            InvalidArgumentError: No persistence id or store, an id that is too long or
                starts with a reserved prefix (`pyactors.store.RESERVED_PREFIXES`), or
                this id already runs.
        """
        if args or kwargs:
            raise TypeError(_unexpected(type(self).__name__, args, kwargs))
        start = _START.get() or _StartArgs(None, None)
        pid = start.persistence_id or getattr(self, "persistence_id", None)
        store = None if start.managed else start.store or getattr(self, "store", None)
        if not isinstance(pid, str) or not pid:
            msg = f"{type(self).__name__} needs a persistence_id (a non-empty str), got {pid!r}"
            raise InvalidArgumentError(msg)
        if not (start.managed or isinstance(store, SegmentStore)):
            msg = f"{type(self).__name__} needs a SegmentStore as store, got {store!r}"
            raise InvalidArgumentError(msg)
        if not start.managed:
            stream_of(pid, f"{type(self).__name__}'s persistence id")  # its stream: length, reserved prefixes
        self.persistence_id = pid
        self.store = store  # type: ignore[assignment]  # None only when managed by its owner
        self._watermark = 0
        self._snapshot_watermark = 0
        self._unsnapshotted = 0
        self._snapshots_failing = 0
        self._last_snapshot_at = time.monotonic()
        key = (id(store), pid)
        with _LIVE_LOCK:
            running = _LIVE.get(key)
            if running is not None and not running.actor_stopped.is_set():
                msg = f"persistent actor {pid!r} is already running in this process"
                raise InvalidArgumentError(msg)
            self._inbox = _DurableInbox(store, pid)
            super().__init__()
            if store is not None:
                _LIVE[key] = self

    def _create_actor_inbox(self) -> ActorInbox:  # type: ignore[override]
        # pykka declares this a staticmethod; the durable inbox needs the actor's store.
        return self._inbox

    # -- durable state -------------------------------------------------------------

    def snapshot(self) -> Any:
        """Return the durable state to save (default: `self.state`).

        Override with `restore()` for state that needs custom handling.
        """
        return self.state

    def restore(self, state: Any) -> None:
        """Install a state read back from the latest snapshot (default: `self.state = state`)."""
        self.state = state

    def snapshot_now(self) -> None:
        """Write a snapshot of the current state now, covering every message handled.

        Call it from the actor's own thread (in a handler, or through a proxy).

        Raises:
            SerializationError: The state cannot be serialized; the previous
                snapshot stays valid and the actor keeps running.
            StoreIOError: The snapshot could not be written (disk full, I/O
                error); the previous snapshot stays valid. A snapshot taken by
                policy after a message is logged and retried after the next one:
                the actor keeps running, and the messages it handled stay in the
                journal until a snapshot covers them.
        """
        state = self.store.serializer.dumps(self.snapshot())
        self.store.append(self.persistence_id, _WATERMARK.pack(self._watermark) + state, Kind.SNAPSHOT)
        self._snapshot_watermark = self._watermark
        self._unsnapshotted = 0
        self._last_snapshot_at = time.monotonic()

    def _restore_and_load_backlog(self) -> list[tuple[int, Any, bool, bool]]:
        """Restore the latest snapshot; return the journaled messages after it."""
        if self.store is None:
            return []  # managed: its owner restores it
        loads = self.store.serializer.loads
        snap = self.store.latest(self.persistence_id, Kind.SNAPSHOT)
        watermark = 0 if snap is None else _snapshot_watermark(snap.payload)
        # The journal is read before the snapshot is unpickled: the read releases the GIL,
        # which lets the supervisor that started this life finish its turn now rather
        # than take the GIL in the middle of the unpickle.
        records = self.store.read_payloads(self.persistence_id, watermark, _JOURNAL_KINDS)
        if snap is not None:
            self.restore(loads(snap.payload[_WATERMARK.size :]))
            self._watermark = self._snapshot_watermark = watermark
        # Messages after the boundary were accepted by this life: in its queue already.
        return _backlog(records, self._inbox.boundary, loads)

    # -- pykka internals, extended -------------------------------------------------

    def _actor_loop_setup(self) -> None:
        try:
            backlog = self._restore_and_load_backlog()
        except Exception:  # noqa: BLE001 - a failed restore is a crash, as pykka treats on_start
            self._handle_failure(*sys.exc_info())
            return
        super()._actor_loop_setup()  # on_start
        if not self.actor_stopped.is_set() and self._replay(backlog):
            self._announce_ready()

    def _replay(self, backlog: list[tuple[int, Any, bool, bool]]) -> bool:
        """Handle the journaled messages of earlier lives as pykka handled them then.

        A told message that raises crashes the actor (it is delivered again after the
        restart); an asked one had its caller, who is gone: its exception is logged.

        Returns:
            False if a replayed message crashed the actor.
        """
        # pykka's dispatch, without the live-message bookkeeping; a plain message skips
        # its checks for pykka's own message types (see `_decode`).
        on_receive, dispatch, handled = self.on_receive, super()._handle_receive, self._handled
        for seq, message, asked, plain in backlog:
            if not plain and (refused := self._refused(seq, message)) is not None:
                logger.error("%s: %s", self, refused)
                handled(seq, False)
                continue
            try:
                on_receive(message) if plain else dispatch(message)
            except Exception:  # pykka's handling of a failed tell or ask
                if not asked:
                    self._handle_failure(*sys.exc_info())
                    try:
                        self.on_failure(*sys.exc_info())
                    except Exception:  # noqa: BLE001
                        self._handle_failure(*sys.exc_info())
                    return False
                logger.warning("%s: replayed ask #%d raised; its caller is gone", self, seq, exc_info=True)
            handled(seq, False)
        return True

    def _refused(self, seq: int, message: Any) -> JournalRecordError | None:
        """The error for a journaled call or set that replay must not run (None: run it)."""
        reason = message.reason if isinstance(message, _Malformed) else _refusal(self, message)
        return None if reason is None else JournalRecordError(self.persistence_id, seq, reason)

    def _handle_receive(self, message: Any) -> Any:
        current, self._inbox.current = self._inbox.current, None
        if current is None or (seq := current[1]) is None:  # not journaled
            return super()._handle_receive(message)
        asked = current[0].reply_to is not None
        try:
            result = super()._handle_receive(message)
        except Exception:
            if asked:
                self._handled(seq, asked)  # the caller got the exception: done
            raise
        self._handled(seq, asked)
        return result

    def _handled(self, seq: int, asked: bool) -> None:
        self._watermark = seq
        self._unsnapshotted += 1
        if self.store is None:
            return  # managed: its owner saves its state
        due = (self.snapshot_every is not None and self._unsnapshotted >= self.snapshot_every) or (
            self.snapshot_interval is not None and time.monotonic() - self._last_snapshot_at >= self.snapshot_interval
        )
        if not due:
            return
        try:
            self.snapshot_now()
        except SerializationError:
            if asked:
                raise
            self._snapshot_failed(
                "snapshot failed: its state cannot be serialized by the store's serializer "
                "(make it serializable, or override snapshot() to return what is)"
            )
        except StoreIOError:
            # Disk full or an I/O error: the message is journaled, so nothing is lost. The
            # actor keeps running; the next message retries the snapshot.
            self._snapshot_failed("snapshot could not be written (disk full or an I/O error)")
        else:
            self._snapshots_failing = 0

    def _snapshot_failed(self, what: str) -> None:
        """Log a snapshot taken by policy that failed: the first of a run at ERROR, the rest at DEBUG.

        Every later message retries it, so logging each failure would flood the log while
        the journal grows; the first one says what to do, the next success resets.
        """
        first = self._snapshots_failing == 0
        self._snapshots_failing += 1
        logger.log(
            logging.ERROR if first else logging.DEBUG,
            "%s: %s; the previous snapshot stays valid and the journal grows until one is written%s",
            self,
            what,
            " (logged once until a snapshot succeeds)" if first else f" (failure {self._snapshots_failing})",
            exc_info=True,
        )

    def _stop(self) -> None:
        self._inbox.close()
        if self.store is not None and self.snapshot_on_stop and self._watermark > self._snapshot_watermark:
            try:
                self.snapshot_now()
            except Exception:
                logger.exception("%s: snapshot on stop failed; the previous snapshot stays valid", self)
        self._release()
        super()._stop()

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._inbox.close()
        self._release()
        super()._handle_failure(exception_type, exception_value, traceback)

    def _actor_loop_teardown(self) -> None:
        self._inbox.close()
        if self._crash is None:
            super()._actor_loop_teardown()
            return
        # Asks queued behind the crash: fail them now (their messages are journaled and
        # will be delivered to the next life).
        while not self._inbox.empty():
            envelope = self._inbox.get()
            if envelope.reply_to is None:
                continue
            if isinstance(envelope.message, messages._ActorStop):
                envelope.reply_to.set(None)
                continue
            err = ActorCrashedError(self.persistence_id, repr(self._crash[1]))
            envelope.reply_to.set_exception(exc_info=(ActorCrashedError, err, None))

    def _release(self) -> None:
        key = (id(self.store), self.persistence_id)
        with _LIVE_LOCK:
            if _LIVE.get(key) is self:
                del _LIVE[key]


class RecoveredActor(NamedTuple):
    """A persistent actor found in a store by [`recover()`][pyactors.recover].

    Attributes:
        persistence_id: Its id (the stream).
        snapshot_seq: Sequence number of its latest snapshot (None: no snapshot).
        snapshot_time: When that snapshot was written (seconds since the epoch).
        watermark: The last message the snapshot covers (0 without a snapshot).
        backlog: Journaled messages after the watermark: delivered again on restart.
        last_seq: The last sequence number of its stream.
    """

    persistence_id: str
    snapshot_seq: int | None
    snapshot_time: float | None
    watermark: int
    backlog: int
    last_seq: int


def recover(store: SegmentStore) -> list[RecoveredActor]:
    """List the persistent actors in `store`, with their last snapshot and backlog.

    A stream counts as an actor's when it holds snapshots or journaled messages.
    Nothing is started: start each actor (or its supervisor) to bring it back.
    """
    found = []
    for stream in store.streams():
        # Only the watermark is decompressed, and the backlog is counted from the index.
        snap = store.latest(stream, Kind.SNAPSHOT, head=_WATERMARK.size)
        watermark = _snapshot_watermark(snap.payload) if snap is not None else 0
        backlog = store.count(stream, after_seq=watermark, kinds=_JOURNAL_KINDS)
        if snap is None and backlog == 0:
            continue
        found.append(
            RecoveredActor(
                persistence_id=stream,
                snapshot_seq=None if snap is None else snap.seq,
                snapshot_time=None if snap is None else snap.timestamp,
                watermark=watermark,
                backlog=backlog,
                last_seq=store.last_seq(stream),
            )
        )
    return found
