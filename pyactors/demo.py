"""Crash-recovery demo of the segment store (``python -m pyactors.demo``, ``make demo``).

Until the actor layer exists, the demo shows the store surviving ``kill -9``:

1. A child process (``python -m pyactors.demo --child DIR``) opens a store with
   durability ``"process"`` and appends records to a few streams as fast as it
   can, writing one acknowledgement line (``stream seq``) to stdout after each
   `SegmentStore.append` returns.
2. The parent lets it run for about half a second, then SIGKILLs it.
3. The parent reopens the store, times the open (the recovery), and checks that
   every acknowledged record is there, in order, with the payload the child
   wrote.

Exit status: 0 when every acknowledged record was recovered, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, TYPE_CHECKING

from pyactors.store import Kind, SegmentStore

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

STREAMS = ("counter-1", "counter-2", "orders/eu", "orders/us")
"""The streams the child appends to, round robin."""
SNAPSHOT_EVERY = 100
"""Every this many records of a stream, the child appends a snapshot instead of a message."""
SEGMENT_BYTES = 1 << 20
"""Small segments, so that the store the child leaves has sealed ones too."""


def expected(stream: str, seq: int) -> tuple[int, bytes]:
    """Return the kind and payload the child writes as record `seq` of `stream`.

    Args:
        stream: The stream id.
        seq: The record's sequence number (1, 2, 3, ...).

    Returns:
        ``(kind, payload)``: a snapshot (a pickled dict) every `SNAPSHOT_EVERY`
        records, otherwise a small message.
    """
    if seq % SNAPSHOT_EVERY == 0:
        state = {"stream": stream, "count": seq, "recent": list(range(seq - 20, seq))}
        return Kind.SNAPSHOT, pickle.dumps(state, protocol=5)
    return Kind.MESSAGE, f"{stream}:{seq}:".encode() + b"increment " * (seq % 16)


def child(path: str) -> int:
    """Append records to `STREAMS` until killed, acknowledging each on stdout.

    Writes ``ready`` once the store is open, then ``<stream> <seq>`` after each
    append has returned. Each line is one `os.write` to a pipe (atomic), so the
    parent never sees half a line.

    Args:
        path: The store directory.

    Returns:
        1 if the store assigned an unexpected sequence number (it never returns
        otherwise: the parent kills it).
    """
    out = sys.stdout.fileno()
    with SegmentStore(path, durability="process", segment_bytes=SEGMENT_BYTES) as store:
        next_seq = {s: store.last_seq(s) + 1 for s in STREAMS}
        os.write(out, b"ready\n")
        while True:
            for stream in STREAMS:
                seq = next_seq[stream]
                kind, payload = expected(stream, seq)
                got = store.append(stream, payload, kind=kind)
                if got != seq:
                    sys.stderr.write(f"{stream}: append returned seq {got}, expected {seq}\n")
                    return 1
                os.write(out, f"{stream} {seq}\n".encode())
                next_seq[stream] = seq + 1


class AckReader(threading.Thread):
    """Reads the child's stdout and keeps the highest acknowledged seq per stream."""

    def __init__(self, pipe: IO[bytes]) -> None:
        """Start reading `pipe` on a daemon thread.

        Args:
            pipe: The child's stdout.
        """
        super().__init__(daemon=True)
        self.pipe = pipe
        self.ready = threading.Event()
        self.acked: dict[str, int] = {}
        self.lines = 0
        self.start()

    def run(self) -> None:
        """Parse lines until EOF (the child died)."""
        for line in self.pipe:
            parts = line.split()
            if parts == [b"ready"]:
                self.ready.set()
            elif len(parts) == 2:  # noqa: PLR2004 - 'stream seq'
                self.acked[parts[0].decode()] = int(parts[1])
                self.lines += 1
        self.ready.set()  # EOF: wake a waiter even if "ready" never came


def run_child(path: str, seconds: float) -> tuple[dict[str, int], float] | None:
    """Run the child for `seconds`, SIGKILL it, and collect its acknowledgements.

    Args:
        path: The store directory.
        seconds: How long the child appends before it is killed.

    Returns:
        The highest acknowledged seq per stream and how long the child ran, or
        None if it failed before the kill (its stderr is printed).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyactors.demo", "--child", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    reader = AckReader(proc.stdout)
    try:
        reader.ready.wait(timeout=30)
        started = time.perf_counter()
        if proc.poll() is None and reader.ready.is_set():
            time.sleep(seconds)
        ran = time.perf_counter() - started
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join()
        err = proc.stderr.read().decode(errors="replace")
        proc.stdout.close()
        proc.stderr.close()
    if not alive:
        print(f"the child exited on its own with status {proc.returncode} before the kill:")
        print(err.rstrip() or "(no stderr)")
        return None
    print(
        f"child pid {proc.pid}: appended to {len(STREAMS)} streams (durability 'process') for "
        f"{ran:.2f} s, then SIGKILL; {reader.lines:,} appends acknowledged"
    )
    return reader.acked, ran


def check(store: SegmentStore, acked: dict[str, int]) -> tuple[bool, list[str]]:
    """Compare the reopened store with the child's acknowledgements.

    Args:
        store: The reopened store.
        acked: Highest acknowledged seq per stream.

    Returns:
        Whether every acknowledged record is there, and one table row per stream.
    """
    ok = True
    rows = [f"  {'stream':<10} {'acknowledged':>12} {'recovered':>10} {'latest snapshot':>16}  status"]
    for stream in STREAMS:
        want = acked.get(stream, 0)
        seqs_ok = payloads_ok = True
        count = 0
        for rec in store.read(stream):
            count += 1
            if rec.seq != count:
                seqs_ok = False
                break
            if (rec.kind, rec.payload) != expected(stream, rec.seq):
                payloads_ok = False
        snap = store.latest(stream, Kind.SNAPSHOT)
        snap_ok = snap is None or (snap.kind, snap.payload) == expected(stream, snap.seq)
        good = seqs_ok and payloads_ok and snap_ok and count >= want
        ok &= good
        if good:
            status = "OK"
        elif count < want:
            status = f"LOST {want - count:,}"
        else:
            status = (
                "LOST ("
                + ", ".join(
                    what
                    for what, bad in (
                        ("seq gap", not seqs_ok),
                        ("bad payload", not payloads_ok),
                        ("bad snapshot", not snap_ok),
                    )
                    if bad
                )
                + ")"
            )
        latest = f"seq {snap.seq:,}" if snap else "-"
        rows.append(f"  {stream:<10} {want:>12,} {count:>10,} {latest:>16}  {status}")
    return ok, rows


def parent(path: str, seconds: float) -> int:
    """Run the whole demo on the store at `path`.

    Args:
        path: The store directory (must not hold a store yet for exact counts).
        seconds: How long the child appends before it is killed.

    Returns:
        The exit status: 0 if every acknowledged record was recovered, else 1.
    """
    print("pyactors demo: a child process appends to a segment store and is killed with SIGKILL")
    result = run_child(path, seconds)
    if result is None:
        return 1
    acked, _ = result
    t0 = time.perf_counter_ns()
    store = SegmentStore(path, segment_bytes=SEGMENT_BYTES)
    open_ms = (time.perf_counter_ns() - t0) / 1e6
    with store:
        rep = store.open_report
        print(f"reopened {path}")
        print(f"  recovery (open) took {open_ms:.2f} ms wall ({rep.elapsed_ms:.2f} ms inside the store)")
        print(
            f"  open report: {rep.segments} segments, {rep.records:,} records, "
            f"torn tail truncated: {rep.truncated_bytes} bytes ({rep.dropped_records} records), "
            f"damaged ranges: {len(rep.damaged)}, rebuilt indexes: {len(rep.rebuilt_indexes)}"
        )
        for d in rep.damaged:
            print(f"    damaged: {d.path} at {d.offset} ({d.length} bytes): {d.reason}")
        for name in rep.rebuilt_indexes:
            print(f"    rebuilt index: {name}")
        ok, rows = check(store, acked)
        print("\n".join(rows))
        total_acked = sum(acked.values())
        total_rec = sum(store.last_seq(s) for s in STREAMS)
        verify = store.verify()
        print(
            f"  verify: {verify.segments} segments, {verify.records:,} records, "
            f"{'no damage' if verify.ok else f'{len(verify.damaged)} damaged ranges'}"
        )
    if ok:
        extra = total_rec - total_acked
        note = f" (+{extra} written but not yet acknowledged when killed)" if extra else ""
        print(f"OK: all {total_acked:,} acknowledged records recovered{note}")
        return 0
    print(f"LOST: acknowledged records are missing or wrong ({total_acked:,} acknowledged, {total_rec:,} found)")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the demo (or, with ``--child``, the child).

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m pyactors.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.5, help="how long the child runs (default 0.5)")
    parser.add_argument("--dir", help="put the store here and keep it (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    if args.dir:
        return parent(os.path.join(args.dir, "store"), args.seconds)
    tmp = tempfile.mkdtemp(prefix="pyactors-demo-")
    try:
        return parent(os.path.join(tmp, "store"), args.seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
