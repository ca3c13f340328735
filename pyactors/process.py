"""Process-level supervision: run worker processes, restart them, watch the store.

`ProcessSupervisor` (the class behind ``pyactors supervise``) runs worker
processes on a store directory and restarts those that die — a non-zero exit or
a signal, SIGKILL included — with exponential backoff and a restart intensity
limit. A restarted worker recovers from the segments its previous life wrote.

It reacts to the store directory through `watchdog` instead of polling it:

- ``<store>/inbox/``: a file that appears there is a *submission*. The
  supervisor moves it to ``<store>/inbox/accepted/`` (so it is never taken
  twice) and runs the configured submission command on it as a one-shot worker.
- ``<store>/heartbeats/<worker>``: a worker calls `heartbeat()` to touch its
  file. The first heartbeat after a (re)start marks the worker *ready* (the
  recovery time of a restart is spawn to ready); a worker whose heartbeat goes
  stale for longer than ``heartbeat_timeout`` is hung: it is SIGKILLed and
  restarted. Staleness is checked by a timer, not by polling the files.

Only the two sub-folders are watched, not the whole store, so the appends of
the workers to their segment files cost the supervisor nothing.

The worker contract is three environment variables (`ENV_STORE`, `ENV_WORKER`,
`ENV_HEARTBEAT`) and the `heartbeat()` helper; see
``docs/SUPERVISION_PROCESS.md``.

Example:
    >>> import sys, tempfile
    >>> from pyactors.process import ProcessSupervisor, WorkerSpec
    >>> hello = WorkerSpec("hello", [sys.executable, "-c", "print('hi')"])
    >>> ProcessSupervisor(tempfile.mkdtemp(), [hello]).run()  # doctest: +SKIP
    hi
    0
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import itertools
import logging
import math
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pyactors.errors import InvalidArgumentError, PyActorsError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from types import FrameType

    from watchdog.events import FileSystemEvent
    from watchdog.observers.api import BaseObserver

    _SignalHandler = Callable[[int, FrameType | None], object] | int | None

__all__ = [
    "ENV_HEARTBEAT",
    "ENV_STORE",
    "ENV_SUBMISSION",
    "ENV_WORKER",
    "ProcessSupervisor",
    "WorkerSpec",
    "WorkerState",
    "WorkerStats",
    "heartbeat",
]

logger = logging.getLogger(__name__)

ENV_STORE = "PYACTORS_STORE"
"""Environment variable holding the store directory, given to every worker."""
ENV_WORKER = "PYACTORS_WORKER"
"""Environment variable holding the worker's name."""
ENV_HEARTBEAT = "PYACTORS_HEARTBEAT"
"""Environment variable holding the path of the worker's heartbeat file."""
ENV_SUBMISSION = "PYACTORS_SUBMISSION"
"""Environment variable holding the accepted file's path, given to submission workers."""

HEARTBEATS_DIR = "heartbeats"
"""Sub-folder of the store holding one heartbeat file per worker."""
INBOX_DIR = "inbox"
"""Sub-folder of the store where submissions are dropped."""
ACCEPTED_DIR = "accepted"
"""Sub-folder of the inbox where taken submissions are moved."""

WorkerState = Literal["pending", "running", "ready", "backoff", "done", "failed", "stopped"]
"""Where a worker is: ``pending`` (not started yet), ``running`` (spawned, no
heartbeat yet), ``ready`` (heartbeat seen), ``backoff`` (died, restart
scheduled), ``done`` (exited 0), ``failed`` (gave up: restart intensity
exceeded, or it could not be spawned), ``stopped`` (ended by `stop()`)."""

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.-]")
_RECENT = 1000
"""How many recovery times and spawn times a worker keeps for its stats."""

_last_beat: dict[str, float] = {}


def heartbeat(*, min_interval: float = 0.0) -> bool:
    """Touch this worker's heartbeat file, telling the supervisor it is alive.

    The first call after a (re)start marks the worker ready; later calls keep it
    from being considered hung. A worker calls it from its main loop at least
    once per ``heartbeat_timeout``. Each call is one small write (and one event
    in the supervisor); in a hot loop pass `min_interval` to skip calls that
    come sooner than that after the previous one.

    Args:
        min_interval: Do nothing (and return False) if the previous heartbeat
            of this process was less than this many seconds ago.

    Returns:
        True if the file was touched; False when ``PYACTORS_HEARTBEAT`` is not
        set (the process is not supervised) or the call was skipped.

    Raises:
        OSError: The file could not be written.
    """
    path = os.environ.get(ENV_HEARTBEAT)
    if not path:
        return False
    now = time.monotonic()
    last = _last_beat.get(path)
    if min_interval > 0 and last is not None and now - last < min_interval:
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{os.getpid()} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)
    _last_beat[path] = now
    return True


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """How to run one worker process.

    Attributes:
        name: Unique among the supervisor's workers; letters, digits, ``_``,
            ``.`` and ``-`` (it names the heartbeat file).
        argv: The command and its arguments (no shell).
        env: Extra environment variables, on top of the supervisor's own.
        cwd: Working directory, or None for the supervisor's.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            msg = f"invalid worker name {self.name!r}: use 1-128 letters, digits, '_', '.', '-'"
            raise InvalidArgumentError(msg)
        if not self.argv:
            msg = f"worker {self.name!r}: empty command"
            raise InvalidArgumentError(msg)


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """A snapshot of one worker's supervision record (`ProcessSupervisor.stats`).

    Attributes:
        name: The worker's name.
        state: Its current `WorkerState`.
        pid: The running process's pid, or None.
        starts: How many times it was spawned (first start included).
        restarts: How many of those starts were restarts.
        last_reason: Why it last died (``"exited with status 3"``, ``"killed
            by SIGKILL"``, ``"hung: ..."``), or None.
        last_recovery_ms: Spawn-to-ready time of the latest restart that
            became ready, in milliseconds.
        p50_recovery_ms: Median of the recent recovery times.
        p99_recovery_ms: 99th percentile (nearest rank) of the recent recovery times.
        recovery_ms: The recent recovery times, oldest first.
        spawn_times: The recent spawn times (`time.monotonic()`), oldest first.
        heartbeats: Heartbeats received from all its lives.
        submission: For a submission worker, the accepted file's path.
    """

    name: str
    state: WorkerState
    pid: int | None
    starts: int
    restarts: int
    last_reason: str | None
    last_recovery_ms: float | None
    p50_recovery_ms: float | None
    p99_recovery_ms: float | None
    recovery_ms: tuple[float, ...]
    spawn_times: tuple[float, ...]
    heartbeats: int
    submission: str | None


# ---------------------------------------------------------------------------- internals


class _Life:
    """One incarnation of a worker: a spawned process."""

    def __init__(self, proc: subprocess.Popen[bytes], spawned_at: float, restart_reason: str | None) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.spawned_at = spawned_at
        self.restart_reason = restart_reason  # why this life was started; None for a first start
        self.ready_at: float | None = None
        self.last_beat: float | None = None
        self.hung: str | None = None  # set when the supervisor killed it as hung
        self.check_pending = False
        self.reported = restart_reason is None


class _Worker:
    """The supervisor's record of one worker across its lives."""

    def __init__(self, spec: WorkerSpec, heartbeat_path: str, submission: str | None = None) -> None:
        self.spec = spec
        self.heartbeat_path = heartbeat_path
        self.submission = submission
        self.state: WorkerState = "pending"
        self.life: _Life | None = None
        self.pending_reason: str | None = None
        self.restart_times: deque[float] = deque()
        self.starts = 0
        self.restarts = 0
        self.heartbeats = 0
        self.ever_beat = False
        self.last_reason: str | None = None
        self.recovery_ms: deque[float] = deque(maxlen=_RECENT)
        self.spawn_times: deque[float] = deque(maxlen=_RECENT)


@dataclass(slots=True)
class _Exited:
    worker: _Worker
    life: _Life
    returncode: int


@dataclass(slots=True)
class _Beat:
    name: str
    at: float


@dataclass(slots=True)
class _Submitted:
    path: str


@dataclass(slots=True)
class _Stop:
    why: str


@dataclass(slots=True)
class _Add:
    spec: WorkerSpec


_Event = _Exited | _Beat | _Submitted | _Stop | _Add
_TimerKind = Literal["restart", "check", "kill"]


def _percentile(values: Iterable[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


def _mkdir_private(path: str) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)


_PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal a process gets when the thread that forked it ends."""


def _die_with(parent: int) -> Callable[[], None]:
    """The ``preexec_fn`` that ties a worker's life to the supervisor's.

    It runs in the forked child before ``exec``: it asks the kernel (``PR_SET_PDEATHSIG``,
    kept across ``exec``) for a SIGKILL when the thread that forked it ends, which is the
    supervisor's `run` thread (every spawn happens there), and kills itself if the
    supervisor is gone already (the parent changed). Everything it calls is resolved here,
    before the fork: the child only makes system calls.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    getppid, kill, getpid, sigkill = os.getppid, os.kill, os.getpid, int(signal.SIGKILL)

    def tie() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill)
        if getppid() != parent:
            kill(getpid(), sigkill)

    return tie


def _signal_group(life: _Life, sig: int) -> None:
    """Send `sig` to the worker's process group (its own session), if the leader is still there."""
    if life.proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(life.pid, sig)


class ProcessSupervisor:
    """Runs worker processes on a store directory and keeps them alive.

    Each worker is spawned in its own session (process group) with
    ``PYACTORS_STORE``, ``PYACTORS_WORKER`` and ``PYACTORS_HEARTBEAT`` in its
    environment, and never outlives the supervisor: the kernel SIGKILLs it when the
    supervisor dies, SIGKILL included (Linux ``PR_SET_PDEATHSIG``; a process the
    worker starts itself is the worker's to stop). Restart policy, per worker:

    - exit status 0: the worker is done and is not restarted;
    - non-zero exit, death by a signal, or hung (stale heartbeat, then
      SIGKILLed by the supervisor): restarted after a backoff delay of
      ``backoff_initial * 2**k`` seconds (at most ``backoff_max``), where ``k``
      is the number of its restarts within the last ``period`` seconds;
    - if it already had ``max_restarts`` restarts within ``period`` seconds, it
      is not restarted but *failed*; with ``fail_fast`` the supervisor then
      stops every worker and `run()` returns 1.

    A dead worker is always reaped (and what is left of its process group
    SIGKILLed) before its next life is spawned, so the next life never meets
    the previous one's store lock.

    All methods are thread-safe. `run()` blocks; `stop()` (another thread) or
    SIGTERM / SIGINT (when `run()` is on the main thread) ends it.

    Args:
        store: The store directory (created 0700 if missing, with its
            ``heartbeats/``, ``inbox/`` and ``inbox/accepted/`` sub-folders).
        workers: The workers to run.
        on_submit: The submission command: an argv template in which each
            ``{path}`` is replaced by the accepted file's path. None: the inbox
            is not watched.
        max_restarts: Restarts allowed per worker within `period` seconds.
        period: The restart-intensity window, in seconds.
        backoff_initial: Delay before a worker's first restart in a window, in
            seconds; doubles with each further restart.
        backoff_max: Upper bound of the delay, in seconds.
        heartbeat_timeout: A worker that has sent a heartbeat and then sends
            none for this many seconds is hung. None: never.
        heartbeat_grace: A worker that sends no heartbeat within this many
            seconds of its spawn is hung. None: a worker that never sends a
            heartbeat is never considered hung.
        stop_grace: When stopping, seconds between SIGTERM and SIGKILL.
        fail_fast: Stop everything when a worker fails.
        exit_when_done: Return from `run()` once every worker is done or
            failed. Default: True without `on_submit`, False with it (keep
            serving the inbox until stopped).
        handle_signals: When `run()` is called on the main thread, turn SIGTERM
            and SIGINT into `stop()` (a second one SIGKILLs the workers at once).
    """

    def __init__(
        self,
        store: str | os.PathLike[str],
        workers: Iterable[WorkerSpec] = (),
        *,
        on_submit: Sequence[str] | None = None,
        max_restarts: int = 5,
        period: float = 60.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
        heartbeat_timeout: float | None = None,
        heartbeat_grace: float | None = None,
        stop_grace: float = 5.0,
        fail_fast: bool = False,
        exit_when_done: bool | None = None,
        handle_signals: bool = True,
    ) -> None:
        if max_restarts < 0:
            msg = f"max_restarts must be >= 0, got {max_restarts}"
            raise InvalidArgumentError(msg)
        for label, value in (
            ("period", period),
            ("backoff_initial", backoff_initial),
            ("backoff_max", backoff_max),
            ("stop_grace", stop_grace),
        ):
            if not value >= 0:
                msg = f"{label} must be >= 0, got {value}"
                raise InvalidArgumentError(msg)
        for label, opt in (("heartbeat_timeout", heartbeat_timeout), ("heartbeat_grace", heartbeat_grace)):
            if opt is not None and not opt > 0:
                msg = f"{label} must be > 0 (or None), got {opt}"
                raise InvalidArgumentError(msg)
        if on_submit is not None and not on_submit:
            msg = "on_submit: empty command"
            raise InvalidArgumentError(msg)
        self.store = os.path.abspath(os.fspath(store))
        self.heartbeats_dir = os.path.join(self.store, HEARTBEATS_DIR)
        self.inbox_dir = os.path.join(self.store, INBOX_DIR)
        self.accepted_dir = os.path.join(self.inbox_dir, ACCEPTED_DIR)
        self.on_submit = tuple(on_submit) if on_submit is not None else None
        self.max_restarts = max_restarts
        self.period = period
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.heartbeat_timeout = heartbeat_timeout
        self.heartbeat_grace = heartbeat_grace
        self.stop_grace = stop_grace
        self.fail_fast = fail_fast
        self.exit_when_done = on_submit is None if exit_when_done is None else exit_when_done
        self.handle_signals = handle_signals

        self._lock = threading.Lock()
        self._tie = _die_with(os.getpid())
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, _TimerKind, _Worker | None, _Life | None]] = []
        self._timer_seq = itertools.count()
        self._workers: dict[str, _Worker] = {}
        self._stopping = False
        self._stop_early = False
        self._run_thread: int | None = None
        self._failed = False
        self._run_called = False
        self._started = threading.Event()
        self._finished = threading.Event()
        self._close_writes = False  # the observer reports IN_CLOSE_WRITE (inotify)
        for spec in workers:
            self._register(spec)

    # ------------------------------------------------------------------ public API

    def add_worker(self, spec: WorkerSpec) -> None:
        """Add a worker; it starts at once if `run()` is running, else when it starts.

        Args:
            spec: The worker. Its name must not be in use.

        Raises:
            InvalidArgumentError: The name is already used (checked at once
                before `run()`, logged and ignored after).
        """
        with self._lock:
            if not self._run_called:
                self._register(spec)
                return
        self._events.put(_Add(spec))

    def run(self) -> int:
        """Run the workers until all are done, or until stopped.

        Returns:
            The exit status: 0 when no worker failed, 1 when one did (restart
            intensity exceeded, or it could not be spawned).

        Raises:
            PyActorsError: `run()` was already called.
        """
        with self._lock:
            if self._run_called:
                msg = "ProcessSupervisor.run() may be called only once"
                raise PyActorsError(msg)
            self._run_called = True
            self._run_thread = threading.get_ident()
            if self._stop_early:
                self._begin_stop("stop() called before run()")
        previous: list[tuple[signal.Signals, _SignalHandler]] = []
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous.append((sig, signal.signal(sig, self._on_signal)))
        observer: BaseObserver | None = None
        try:
            self._prepare_dirs()
            observer = self._start_observer()
            with self._lock:
                for worker in list(self._workers.values()):
                    if not self._stopping:
                        self._spawn(worker, None)
                if self.on_submit is not None:
                    self._scan_inbox()
            self._started.set()
            self._loop()
        except BaseException:
            # A bug or an unexpected OS error: never leave orphaned workers behind.
            logger.exception("supervisor failed: killing every worker")
            self._kill_all()
            raise
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5.0)
            for sig, handler in previous:
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
            self._started.set()
            self._finished.set()
        return 1 if self._failed else 0

    def stop(self, *, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop every worker (SIGTERM, then SIGKILL after `stop_grace`) and end `run()`.

        A second call while stopping SIGKILLs the workers at once. Safe from
        any thread; calling it before `run()` makes `run()` return at once.

        Args:
            wait: Wait for `run()` to return (never from `run()`'s own thread).
            timeout: The longest wait, in seconds; None waits as long as it takes.

        Returns:
            True if `run()` has returned (or `wait` is False).
        """
        with self._lock:
            if not self._run_called:
                self._stop_early = True
        self._request_stop()
        if not wait or not self._run_called:
            return True
        if self._run_thread == threading.get_ident():
            return False  # called from run()'s own thread: it cannot have returned
        return self._finished.wait(timeout)

    def wait_started(self, timeout: float | None = None) -> bool:
        """Wait until `run()` has spawned the workers and watches the store.

        Args:
            timeout: The longest wait, in seconds; None waits as long as it takes.

        Returns:
            True once started, False on timeout.
        """
        return self._started.wait(timeout)

    def stats(self, name: str) -> WorkerStats:
        """Return a snapshot of one worker's state and restart statistics.

        Args:
            name: The worker's name (a submission worker is named
                ``submit-<file name>``).

        Returns:
            The worker's `WorkerStats`.

        Raises:
            KeyError: No worker has that name.
        """
        with self._lock:
            return self._stats(self._workers[name])

    def all_stats(self) -> dict[str, WorkerStats]:
        """Return `stats()` of every worker, submissions included, by name."""
        with self._lock:
            return {name: self._stats(w) for name, w in self._workers.items()}

    # ------------------------------------------------------------------ set-up

    def _register(self, spec: WorkerSpec, submission: str | None = None) -> _Worker:
        if spec.name in self._workers:
            msg = f"duplicate worker name {spec.name!r}"
            raise InvalidArgumentError(msg)
        worker = _Worker(spec, os.path.join(self.heartbeats_dir, spec.name), submission)
        self._workers[spec.name] = worker
        return worker

    def _prepare_dirs(self) -> None:
        _mkdir_private(self.store)
        for path in (self.heartbeats_dir, self.inbox_dir, self.accepted_dir):
            _mkdir_private(path)

    def _start_observer(self) -> BaseObserver:
        from watchdog.events import (
            FileClosedEvent,
            FileCreatedEvent,
            FileModifiedEvent,
            FileMovedEvent,
            FileSystemEventHandler,
        )
        from watchdog.observers import Observer

        observer: BaseObserver
        try:
            from watchdog.observers.inotify import InotifyObserver

            # Full events: a file renamed into the inbox is a move, not a creation, so a
            # creation means "being written in place" and is taken when its writer closes it.
            observer = InotifyObserver(generate_full_events=True)
            self._close_writes = True
        except (ImportError, OSError):  # not Linux: the platform's observer
            observer = Observer()
            self._close_writes = False

        supervisor = self

        class _Heartbeats(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    return
                at = time.monotonic()
                path = event.dest_path if isinstance(event, FileMovedEvent) else event.src_path
                if path:
                    supervisor._events.put(_Beat(os.path.basename(os.fsdecode(path)), at))

        class _Inbox(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    return
                if isinstance(event, FileMovedEvent):
                    path = event.dest_path
                elif isinstance(event, FileClosedEvent) or (
                    isinstance(event, FileCreatedEvent) and not supervisor._close_writes
                ):
                    path = event.src_path
                else:
                    return
                if path:
                    supervisor._events.put(_Submitted(os.fsdecode(path)))

        observer.schedule(
            _Heartbeats(), self.heartbeats_dir, recursive=False, event_filter=[FileModifiedEvent, FileMovedEvent]
        )
        if self.on_submit is not None:
            observer.schedule(
                _Inbox(),
                self.inbox_dir,
                recursive=False,
                event_filter=[FileClosedEvent, FileCreatedEvent, FileMovedEvent],
            )
        observer.daemon = True
        observer.start()
        return observer

    # ------------------------------------------------------------------ the loop

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self._request_stop(signal.Signals(signum).name)

    def _request_stop(self, why: str = "stop() called") -> None:
        # SimpleQueue.put is reentrant: safe from a signal handler (which must not log or lock).
        self._events.put(_Stop(why))

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._idle():
                    return
                timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None
            try:
                event: _Event | None = self._events.get(timeout=timeout)
            except queue.Empty:
                event = None
            with self._lock:
                while event is not None:
                    self._handle(event)
                    try:
                        event = self._events.get_nowait()
                    except queue.Empty:
                        event = None
                self._fire_timers()

    def _idle(self) -> bool:
        """True when `run()` may return: no process alive and nothing left to do."""
        if any(w.life is not None for w in self._workers.values()):
            return False
        if self._stopping:
            return True
        if not self.exit_when_done:
            return False
        return all(w.state in ("done", "failed", "stopped") for w in self._workers.values())

    def _handle(self, event: _Event) -> None:
        if isinstance(event, _Exited):
            self._on_exit(event.worker, event.life, event.returncode)
        elif isinstance(event, _Beat):
            self._on_beat(event.name, event.at)
        elif isinstance(event, _Submitted):
            self._on_submission(event.path)
        elif isinstance(event, _Stop):
            self._begin_stop(event.why)
        else:
            self._on_add(event.spec)

    def _schedule(self, when: float, kind: _TimerKind, worker: _Worker | None, life: _Life | None) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_seq), kind, worker, life))

    def _fire_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, worker, life = heapq.heappop(self._timers)
            if kind == "restart" and worker is not None:
                if worker.state == "backoff" and not self._stopping:
                    self._spawn(worker, worker.pending_reason)
            elif kind == "check" and worker is not None and life is not None:
                self._check_hung(worker, life, now)
            elif kind == "kill":
                for w in self._workers.values():
                    if w.life is not None:
                        _signal_group(w.life, signal.SIGKILL)

    # ------------------------------------------------------------------ lives

    def _spawn(self, worker: _Worker, reason: str | None) -> None:
        spec = worker.spec
        # The previous life is reaped: its heartbeat file is stale. Removing it means a
        # heartbeat event is only taken as this life's once this life has written the file.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(worker.heartbeat_path)
        env = dict(os.environ)
        env.update(spec.env)
        env[ENV_STORE] = self.store
        env[ENV_WORKER] = spec.name
        env[ENV_HEARTBEAT] = worker.heartbeat_path
        if worker.submission is not None:
            env[ENV_SUBMISSION] = worker.submission
        spawned_at = time.monotonic()
        try:
            # preexec_fn is unsafe beside threads when it takes a lock another thread may
            # hold; `_tie` takes none: it makes system calls resolved before the fork.
            proc = subprocess.Popen(
                list(spec.argv),
                env=env,
                cwd=spec.cwd,
                start_new_session=True,
                preexec_fn=self._tie,  # noqa: PLW1509
            )
        except OSError as exc:
            worker.last_reason = f"cannot start: {exc}"
            logger.error("worker %r failed: %s", spec.name, worker.last_reason)
            self._give_up(worker)
            return
        life = _Life(proc, spawned_at, reason)
        worker.life = life
        worker.state = "running"
        worker.starts += 1
        worker.spawn_times.append(spawned_at)
        if reason is not None:
            worker.restarts += 1
        logger.info("worker %r started (pid %d)%s", spec.name, proc.pid, "" if reason is None else " (restart)")
        if reason is not None and not worker.ever_beat:
            # It has never sent a heartbeat: readiness cannot be observed; report the restart now.
            self._report_restart(worker, life, None)
        if self.heartbeat_grace is not None:
            life.check_pending = True
            self._schedule(spawned_at + self.heartbeat_grace, "check", worker, life)
        threading.Thread(target=self._reap, args=(worker, life), name=f"reap-{spec.name}", daemon=True).start()

    def _reap(self, worker: _Worker, life: _Life) -> None:
        """Wait for the process (reaping it), kill what is left of its group, report the exit."""
        returncode = life.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(life.pid, signal.SIGKILL)
        self._events.put(_Exited(worker, life, returncode))

    def _on_exit(self, worker: _Worker, life: _Life, returncode: int) -> None:
        if worker.life is not life:
            return
        worker.life = None
        name = worker.spec.name
        if life.hung is None and returncode == 0:
            reason = None
        else:
            reason = life.hung if life.hung is not None else _describe_exit(returncode)
        if not life.reported:
            self._report_restart(worker, life, None)
        if self._stopping:
            worker.state = "done" if reason is None else "stopped"
            logger.info("worker %r ended (%s)", name, _describe_exit(returncode))
            return
        if reason is None:
            worker.state = "done"
            logger.info("worker %r done (exited with status 0)", name)
            return
        worker.last_reason = reason
        now = time.monotonic()
        while worker.restart_times and worker.restart_times[0] <= now - self.period:
            worker.restart_times.popleft()
        recent = len(worker.restart_times)
        if recent >= self.max_restarts:
            logger.error(
                "worker %r %s; giving up: %d restarts within %g s (max_restarts=%d)",
                name,
                reason,
                recent,
                self.period,
                self.max_restarts,
            )
            self._give_up(worker)
            return
        delay = min(self.backoff_max, self.backoff_initial * 2.0**recent)
        worker.restart_times.append(now)
        worker.state = "backoff"
        worker.pending_reason = reason
        logger.info("worker %r (pid %d) %s; restarting in %.3f s", name, life.pid, reason, delay)
        self._schedule(now + delay, "restart", worker, None)

    def _give_up(self, worker: _Worker) -> None:
        worker.state = "failed"
        self._failed = True
        if self.fail_fast and not self._stopping:
            self._begin_stop(f"fail-fast: worker {worker.spec.name!r} failed")

    def _report_restart(self, worker: _Worker, life: _Life, recovery_ms: float | None) -> None:
        """Log a restart, once, with its reason and recovery time (the line ``pyactors supervise`` prints)."""
        life.reported = True
        reason = life.restart_reason
        if recovery_ms is not None:
            outcome = f"ready in {recovery_ms:.1f} ms"
        elif life.ready_at is None and worker.ever_beat and life.proc.returncode is not None:
            outcome = "died before it was ready"
        else:
            outcome = "recovery time unknown (no heartbeat)"
        logger.warning(
            "worker %r restarted (%s): %s (restart %d, pid %d)",
            worker.spec.name,
            reason,
            outcome,
            worker.restarts,
            life.pid,
        )

    # ------------------------------------------------------------------ heartbeats

    def _on_beat(self, name: str, at: float) -> None:
        worker = self._workers.get(name)
        life = worker.life if worker is not None else None
        if worker is None or life is None or at < life.spawned_at:
            return
        # The file is removed before each spawn: if it is missing, the event was the previous life's.
        if not os.path.exists(worker.heartbeat_path):
            return
        life.last_beat = at
        worker.heartbeats += 1
        worker.ever_beat = True
        if life.ready_at is None:
            life.ready_at = at
            worker.state = "ready"
            elapsed_ms = (at - life.spawned_at) * 1000.0
            if life.restart_reason is not None:
                worker.recovery_ms.append(elapsed_ms)
                if not life.reported:
                    self._report_restart(worker, life, elapsed_ms)
            else:
                logger.info("worker %r ready in %.1f ms (pid %d)", name, elapsed_ms, life.pid)
        if self.heartbeat_timeout is not None and not life.check_pending:
            life.check_pending = True
            self._schedule(at + self.heartbeat_timeout, "check", worker, life)

    def _check_hung(self, worker: _Worker, life: _Life, now: float) -> None:
        life.check_pending = False
        if worker.life is not life or life.hung is not None or self._stopping:
            return
        if life.last_beat is not None:
            if self.heartbeat_timeout is None:
                return
            deadline = life.last_beat + self.heartbeat_timeout
            silent = now - life.last_beat
            what = f"hung: no heartbeat for {silent:.1f} s"
        else:
            if self.heartbeat_grace is None:
                return
            deadline = life.spawned_at + self.heartbeat_grace
            silent = now - life.spawned_at
            what = f"hung: no heartbeat {silent:.1f} s after start"
        if now < deadline:
            life.check_pending = True
            self._schedule(deadline, "check", worker, life)
            return
        life.hung = what
        logger.info("worker %r (pid %d) %s: killing it", worker.spec.name, life.pid, what)
        _signal_group(life, signal.SIGKILL)

    # ------------------------------------------------------------------ submissions

    def _scan_inbox(self) -> None:
        """Take the submissions dropped while no supervisor was watching (once, at start)."""
        try:
            entries = [e for e in os.scandir(self.inbox_dir) if e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return
        entries.sort(key=lambda e: (e.stat().st_mtime, e.name))
        for entry in entries:
            self._on_submission(entry.path)

    def _on_submission(self, path: str) -> None:
        if self.on_submit is None or self._stopping:
            return
        base = os.path.basename(path)
        if os.path.dirname(os.path.abspath(path)) != self.inbox_dir or base.startswith(".") or base.endswith(".tmp"):
            return
        if not os.path.isfile(path):
            return  # already taken (a duplicate event), or not a regular file
        target = os.path.join(self.accepted_dir, base)
        for n in itertools.count(1):
            if not os.path.lexists(target):
                break
            target = os.path.join(self.accepted_dir, f"{base}.{n}")
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return  # taken meanwhile
        except OSError as exc:
            logger.error("submission %s: cannot move it to %s: %s", base, self.accepted_dir, exc)
            return
        stem = _UNSAFE_RE.sub("_", base)[:100]
        name = f"submit-{stem}"
        for n in itertools.count(2):
            if name not in self._workers:
                break
            name = f"submit-{stem}-{n}"
        argv = [arg.replace("{path}", target) for arg in self.on_submit]
        worker = self._register(WorkerSpec(name, argv), submission=target)
        logger.info("submission %s accepted as %s: worker %r", base, target, name)
        self._spawn(worker, None)

    def _on_add(self, spec: WorkerSpec) -> None:
        if self._stopping:
            return
        try:
            worker = self._register(spec)
        except InvalidArgumentError as exc:
            logger.error("add_worker: %s", exc)
            return
        self._spawn(worker, None)

    # ------------------------------------------------------------------ stopping

    def _begin_stop(self, why: str) -> None:
        if self._stopping:
            alive = [w.life for w in self._workers.values() if w.life is not None]
            if alive:
                logger.info("stop requested again: killing every worker now")
            for life in alive:
                _signal_group(life, signal.SIGKILL)
            return
        self._stopping = True
        logger.info("stopping every worker (%s)", why)
        for worker in self._workers.values():
            if worker.state in ("backoff", "pending"):
                worker.state = "stopped"
            if worker.life is not None:
                _signal_group(worker.life, signal.SIGTERM)
        self._schedule(time.monotonic() + self.stop_grace, "kill", None, None)

    def _kill_all(self) -> None:
        with self._lock:
            lives = [w.life for w in self._workers.values() if w.life is not None]
        for life in lives:
            _signal_group(life, signal.SIGKILL)
        for life in lives:
            with contextlib.suppress(subprocess.TimeoutExpired):
                life.proc.wait(timeout=5.0)

    # ------------------------------------------------------------------ stats

    def _stats(self, worker: _Worker) -> WorkerStats:
        recovery = tuple(worker.recovery_ms)
        return WorkerStats(
            name=worker.spec.name,
            state=worker.state,
            pid=worker.life.pid if worker.life is not None else None,
            starts=worker.starts,
            restarts=worker.restarts,
            last_reason=worker.last_reason,
            last_recovery_ms=recovery[-1] if recovery else None,
            p50_recovery_ms=_percentile(recovery, 50),
            p99_recovery_ms=_percentile(recovery, 99),
            recovery_ms=recovery,
            spawn_times=tuple(worker.spawn_times),
            heartbeats=worker.heartbeats,
            submission=worker.submission,
        )
