"""A process forked from one holding a store may not use it, never hangs on it, never keeps it locked.

Real `os.fork()` (and multiprocessing's ``fork`` start method), with the parent idle
and with threads appending while it forks. Every child is bounded: one that does not
exit within `CHILD_TIMEOUT` seconds is SIGKILLed and the test fails (a hang fails the
test instead of hanging the suite).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
from typing import TYPE_CHECKING, Self

import pytest

from pyactors import Kind, SegmentStore
from pyactors.errors import StoreForkedError, StoreLockedError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

CHILD_TIMEOUT = 20.0
"""Seconds a child gets to exit: a bound against hangs, not a speed claim."""

CHILD_PAYLOAD = b"written by the child"


@contextlib.contextmanager
def _forking() -> Iterator[None]:
    """Silence Python 3.12+'s warning about forking a process with threads: that is the point here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _fork(work: Callable[[], object]) -> tuple[int, int]:
    """Fork a child that runs `work` and writes its JSON result to a pipe; return ``(pid, read end)``."""
    r, w = os.pipe()
    with _forking():
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which reports through the pipe
        code = 1
        try:
            os.close(r)
            os.write(w, json.dumps(work()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _join_all(children: list[tuple[int, int]]) -> list[object]:
    """Wait (at most `CHILD_TIMEOUT` s in all) for children of `_fork` to exit 0; return their results.

    On a hang every child still running is SIGKILLed, so none outlives the test.
    """
    deadline = time.monotonic() + CHILD_TIMEOUT
    statuses: dict[int, int] = {}
    while len(statuses) < len(children):
        for pid, _ in children:
            if pid not in statuses:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses[pid] = status
        if len(statuses) < len(children) and time.monotonic() > deadline:
            hung = [pid for pid, _ in children if pid not in statuses]
            for pid in hung:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            for _, r in children:
                os.close(r)
            pytest.fail(f"forked children {hung} hung (killed after {CHILD_TIMEOUT} s)")
        time.sleep(0.01)
    results = []
    for pid, r in children:
        with os.fdopen(r, "rb") as pipe:
            out = pipe.read()
        assert os.waitstatus_to_exitcode(statuses[pid]) == 0, f"child failed: {out!r}"
        results.append(json.loads(out))
    return results


def _join(pid: int, r: int) -> object:
    """`_join_all` of one child."""
    return _join_all([(pid, r)])[0]


def _outcome(call: Callable[[], object]) -> str:
    """What `call` did: the name of the exception it raised, or ``"returned"``."""
    try:
        call()
    except Exception as e:  # the class is the outcome
        return type(e).__name__
    return "returned"


def _attempts(store: SegmentStore) -> dict[str, str]:
    """Every call a child could make on an inherited store, and what each did (child side)."""
    calls: dict[str, Callable[[], object]] = {
        "append": lambda: store.append("a", CHILD_PAYLOAD),
        "append_big": lambda: store.append("a", CHILD_PAYLOAD * 4000),  # the GIL-released path
        "append_many": lambda: store.append_many([("a", CHILD_PAYLOAD), ("b", CHILD_PAYLOAD)]),
        "latest": lambda: store.latest("s"),
        "latest_many": lambda: store.latest_many(["a", "s"]),
        "read": lambda: list(store.read("a")),
        "read_payloads": lambda: store.read_payloads("a"),
        "streams": store.streams,
        "last_seq": lambda: store.last_seq("a"),
        "stats": store.stats,
        "flush": store.flush,
        "verify": store.verify,
        "compact": lambda: store.compact(0.0),
        "prune": lambda: store.prune("a", Kind.MESSAGE, 0),
        "delete_stream": lambda: store.delete_stream("a"),
        "close": store.close,
        "append_after_close": lambda: store.append("a", CHILD_PAYLOAD),
    }
    return {name: _outcome(call) for name, call in calls.items()}


REFUSED = {
    "append": "StoreForkedError",
    "append_big": "StoreForkedError",
    "append_many": "StoreForkedError",
    "latest": "StoreForkedError",
    "latest_many": "StoreForkedError",
    "read": "StoreForkedError",
    "read_payloads": "StoreForkedError",
    "streams": "StoreForkedError",
    "last_seq": "StoreForkedError",
    "stats": "StoreForkedError",
    "flush": "StoreForkedError",
    "verify": "StoreForkedError",
    "compact": "StoreForkedError",
    "prune": "StoreForkedError",
    "delete_stream": "StoreForkedError",
    "close": "returned",
    "append_after_close": "StoreForkedError",
}
"""What a child's calls on an inherited store do: all refused, but `close`."""


def _no_child_record(store: SegmentStore) -> None:
    for stream in store.streams():
        assert all(CHILD_PAYLOAD not in r.payload for r in store.read(stream)), stream


def test_idle_parent_child_is_refused_and_parent_loses_nothing(store_path: Path) -> None:
    with SegmentStore(store_path) as store:
        for i in range(10):
            store.append("a", f"parent {i}".encode())
        store.append("s", b"state", kind=Kind.SNAPSHOT)
        assert store.latest("s") is not None  # now in the latest-record cache
        before = store.read("a")  # an iterator made in the parent, read in the child
        pid, r = _fork(lambda: {"closed": store.closed, "iterator": _outcome(lambda: next(before)), **_attempts(store)})
        result = _join(pid, r)
        assert result == {"closed": True, "iterator": "StoreForkedError", **REFUSED}
        # The parent's store is untouched by the child: its next seq follows its own.
        assert not store.closed
        assert store.append("a", b"parent 10") == 11
        assert [r.payload for r in before] == [f"parent {i}".encode() for i in range(10)]  # located before
    with SegmentStore(store_path) as again:
        assert [r.payload for r in again.read("a")] == [f"parent {i}".encode() for i in range(11)]
        assert again.latest("s").payload == b"state"  # type: ignore[union-attr]
        assert again.verify().ok


class _Appenders:
    """Threads appending to their own streams until stopped, keeping what was acknowledged."""

    def __init__(self, store: SegmentStore, threads: int = 4) -> None:
        self.store = store
        self.acked: dict[str, list[bytes]] = {f"t{i}": [] for i in range(threads)}
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(s, i)) for i, s in enumerate(self.acked)]

    def _run(self, stream: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not self.stop.is_set():
                # Mostly small payloads (written with the GIL held), some large ones
                # (compressed and written with it released): both paths are forked across.
                size = rng.choice((64, 900, 24_000))
                payload = rng.randbytes(size)
                seq = self.store.append(stream, payload)
                self.acked[stream].append(payload)
                assert seq == len(self.acked[stream])
        except BaseException as e:  # reported by `__exit__`
            self.errors.append(e)

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(CHILD_TIMEOUT)
        assert not any(t.is_alive() for t in self.threads), "an appender thread hung"
        assert not self.errors, self.errors

    def wait_for_appends(self, n: int) -> None:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while sum(map(len, self.acked.values())) < n:
            assert time.monotonic() < deadline, "the appenders made no progress"
            time.sleep(0.001)


def _busy_child(store: SegmentStore) -> dict[str, str]:
    """What a child forked from a busy parent does with the store (child side)."""
    return {
        "append": _outcome(lambda: store.append("t0", CHILD_PAYLOAD)),
        "latest": _outcome(lambda: store.latest("t0", Kind.MESSAGE)),
        "read": _outcome(lambda: store.read_payloads("t1")),
        "close": _outcome(store.close),
    }


@pytest.mark.parametrize("durability", ["process", "group", "sync"])
def test_fork_while_threads_append(store_path: Path, durability: str) -> None:
    children = []
    with SegmentStore(store_path, durability=durability, segment_bytes=64 * 1024) as store:  # type: ignore[arg-type]
        with _Appenders(store) as appenders:
            for i in range(8):
                appenders.wait_for_appends(20 * (i + 1))  # forks land at different moments
                children.append(_fork(lambda: _busy_child(store)))
            results = _join_all(children)
        acked = appenders.acked
    refused = {"append": "StoreForkedError", "latest": "StoreForkedError", "read": "StoreForkedError"}
    assert results == [{**refused, "close": "returned"}] * len(children)
    with SegmentStore(store_path) as again:
        for stream, payloads in acked.items():
            assert again.read_payloads(stream) == [(i + 1, Kind.MESSAGE, p) for i, p in enumerate(payloads)]
        _no_child_record(again)
        report = again.verify()
        assert report.ok, report.damaged
        assert report.segments > 1  # the appenders rolled segments around the forks


def test_child_alive_after_parent_closed_does_not_keep_the_store_locked(store_path: Path) -> None:
    go_r, go_w = os.pipe()
    with SegmentStore(store_path) as store:
        store.append("a", b"parent")
        pid, r = _fork(lambda: os.read(go_r, 1).decode())  # idle until told to exit
    # The parent closed the store; the child is alive, holding whatever it inherited.
    opened = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom pyactors import SegmentStore\n"
            "with SegmentStore(sys.argv[1]) as s:\n    s.append('a', b'third process')",
            str(store_path),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    os.write(go_w, b"x")
    assert _join(pid, r) == "x"
    assert opened.returncode == 0, opened.stderr.decode()
    with SegmentStore(store_path) as again:
        assert [r.payload for r in again.read("a")] == [b"parent", b"third process"]


def test_child_opens_the_store_itself_after_the_parent_closed_it(store_path: Path) -> None:
    go_r, go_w = os.pipe()

    def child() -> dict[str, object]:
        os.read(go_r, 1)  # the parent has closed the store
        with SegmentStore(store_path) as own:
            return {"seen": [r.payload.decode() for r in own.read("a")], "seq": own.append("a", b"child")}

    with SegmentStore(store_path) as store:
        store.append("a", b"parent")
        pid, r = _fork(child)
    os.write(go_w, b"x")
    assert _join(pid, r) == {"seen": ["parent"], "seq": 2}
    with SegmentStore(store_path) as again:
        assert [r.payload for r in again.read("a")] == [b"parent", b"child"]
        assert again.verify().ok


def _mp_child(store: SegmentStore, path: str, expected: list[bytes]) -> None:
    """Target of a multiprocessing ``fork`` child: the inherited store is refused, a view works."""
    with pytest.raises(StoreForkedError) as info:
        store.append("a", CHILD_PAYLOAD)
    assert isinstance(info.value, StoreLockedError)
    with pytest.raises(StoreForkedError):
        store.latest("a", Kind.MESSAGE)
    with SegmentStore(path, read_only=True) as view:
        assert [r.payload for r in view.read("a")][: len(expected)] == expected


def test_multiprocessing_fork_context(store_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    with SegmentStore(store_path) as store:
        expected = [f"parent {i}".encode() for i in range(5)]
        store.append_many([("a", p) for p in expected])
        with _Appenders(store):
            procs = [ctx.Process(target=_mp_child, args=(store, str(store_path), expected)) for _ in range(4)]
            with _forking():
                for p in procs:
                    p.start()
            for p in procs:
                p.join(CHILD_TIMEOUT)
            hung = [p for p in procs if p.exitcode is None]
            for p in hung:
                p.kill()
                p.join()
        assert not hung, f"{len(hung)} multiprocessing children hung"
        assert [p.exitcode for p in procs] == [0] * len(procs)
        assert [r.payload for r in store.read("a")] == expected
    with SegmentStore(store_path) as again:
        _no_child_record(again)
        assert again.verify().ok
