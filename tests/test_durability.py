"""Crash safety and the writer lock, with real child processes and SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _crash_child import SEGMENT_BYTES, STREAMS, expected_payload, kind_for
from _util import DURABILITIES

from pyactors import Kind, SegmentStore, StoreError, StoreLockedError

if TYPE_CHECKING:
    from collections.abc import Iterator

CHILD = Path(__file__).with_name("_crash_child.py")
ITERATIONS = 8


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _try_open_in_child(path: Path) -> str:
    done = subprocess.run([sys.executable, str(CHILD), "try", str(path)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


def _acks(lines: Iterator[bytes]) -> Iterator[tuple[str, int]]:
    for line in lines:
        if line.endswith(b"\n"):  # a line cut by the kill was not acknowledged
            stream, seq = line.decode().split()
            yield stream, int(seq)


def _run_and_kill(store_path: Path, durability: str, seed: int, target: int, pause: float) -> list[tuple[str, int]]:
    """Run an appending child, SIGKILL it after `target` acks plus `pause` s; return every ack."""
    acked: list[tuple[str, int]] = []
    with _spawn("append", str(store_path), durability, str(seed)) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            first = proc.stdout.readline()
            if first != b"ready\n":
                proc.wait(timeout=30)
                pytest.fail(f"child did not start: {first!r} {proc.stderr.read().decode()}")
            while len(acked) < target:
                line = proc.stdout.readline()
                if not line.endswith(b"\n"):
                    proc.wait(timeout=30)
                    pytest.fail(f"child ended early (rc {proc.returncode}): {proc.stderr.read().decode()}")
                acked.extend(_acks(iter([line])))
            time.sleep(pause)  # a random moment, somewhere inside an append
        finally:
            if proc.returncode is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        acked.extend(_acks(iter(proc.stdout.read().splitlines(keepends=True))))
        stderr = proc.stderr.read().decode()
    assert proc.returncode == -signal.SIGKILL, f"child was not killed but exited {proc.returncode}: {stderr}"
    return acked


def _check_recovered(store: SegmentStore, acked: dict[str, int], context: str) -> None:
    """Every acked record is there and intact; seqs are gap-free; nothing unknown appears."""
    assert set(store.streams()) <= set(STREAMS), context
    for stream in STREAMS:
        records = list(store.read(stream))
        seqs = [r.seq for r in records]
        assert seqs == list(range(1, len(seqs) + 1)), f"{context}: {stream} has gaps: {seqs}"
        assert len(seqs) >= acked.get(stream, 0), f"{context}: {stream} lost acknowledged appends"
        assert store.last_seq(stream) == len(seqs), context
        for r in records:
            assert (r.stream, r.kind) == (stream, kind_for(r.seq)), context
            assert r.payload == expected_payload(stream, r.seq), f"{context}: {stream}#{r.seq} payload differs"
        snapshots = [r for r in records if r.kind == Kind.SNAPSHOT]
        latest = store.latest(stream)
        assert (latest.seq if latest else None) == (snapshots[-1].seq if snapshots else None), context
    report = store.verify()
    assert report.ok, f"{context}: {report.damaged}"


@pytest.mark.parametrize("durability", DURABILITIES)
def test_every_acknowledged_append_survives_sigkill(store_path: Path, durability: str) -> None:
    rng = random.Random(f"sigkill/{durability}")
    acked: dict[str, int] = {}  # highest acknowledged seq per stream
    for iteration in range(ITERATIONS):
        seed = rng.randrange(2**32)
        target = rng.choice([0, rng.randint(1, 60), rng.randint(60, 300)])
        pause = rng.uniform(0, 0.003)
        context = f"{durability} iteration {iteration} seed {seed} target {target}"
        for stream, seq in _run_and_kill(store_path, durability, seed, target, pause):
            acked[stream] = max(acked.get(stream, 0), seq)
        with SegmentStore(store_path, durability=durability, segment_bytes=SEGMENT_BYTES) as store:  # type: ignore[arg-type]
            _check_recovered(store, acked, context)
    # The store still takes appends after all those crashes, and keeps them.
    with SegmentStore(store_path, durability=durability, segment_bytes=SEGMENT_BYTES) as store:  # type: ignore[arg-type]
        for stream in STREAMS:
            seq = store.last_seq(stream) + 1
            assert store.append(stream, expected_payload(stream, seq), kind=kind_for(seq)) == seq
            acked[stream] = seq
    with SegmentStore(store_path) as store:
        _check_recovered(store, acked, f"{durability} after the final appends")
        assert store.open_report.truncated_bytes == 0
        assert store.open_report.damaged == ()


def test_a_second_process_gets_store_locked_error_until_the_holder_is_sigkilled(store_path: Path) -> None:
    with _spawn("hold", str(store_path)) as holder:
        assert holder.stdout is not None
        assert holder.stderr is not None
        try:
            line = holder.stdout.readline()
            assert line == b"locked\n", line or holder.stderr.read().decode()
            with pytest.raises(StoreLockedError) as excinfo:
                SegmentStore(store_path)
            assert isinstance(excinfo.value, StoreError)
            assert _try_open_in_child(store_path) == "StoreLockedError"
        finally:
            if holder.returncode is None:
                os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    with SegmentStore(store_path) as store:
        assert [r.payload for r in store.read("holder")] == [b"written by the holder"]
        assert store.append("holder", b"after the holder died") == 2


def test_a_child_process_gets_store_locked_error_while_this_process_holds_the_store(store_path: Path) -> None:
    with SegmentStore(store_path) as store:
        store.append("a", b"x")
        assert _try_open_in_child(store_path) == "StoreLockedError"
    assert _try_open_in_child(store_path) == "opened"


def test_a_second_open_in_the_same_process_gets_store_locked_error_and_keeps_the_first_lock(
    store_path: Path,
) -> None:
    with SegmentStore(store_path) as first:
        first.append("a", b"1")
        for _ in range(2):
            with pytest.raises(StoreLockedError):
                SegmentStore(store_path)
        # The refused opens released nothing: the first store still holds the lock and works.
        assert _try_open_in_child(store_path) == "StoreLockedError"
        assert first.append("a", b"2") == 2
    with SegmentStore(store_path) as again:
        assert [r.payload for r in again.read("a")] == [b"1", b"2"]
